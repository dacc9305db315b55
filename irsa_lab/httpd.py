"""The one thin place that binds ports and speaks TLS.

Every server of the stack is an :class:`irsa_lab.web.Application` built by its own
module; :class:`ServerLoop` runs them all on one asyncio event loop in one
background thread, each on a free port of 127.0.0.1, with or without TLS. asyncio
sets ``TCP_NODELAY`` on every accepted connection, so keep-alive clients never wait
for the 40 ms Nagle/delayed-ACK stall when headers and body go out separately.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from . import web
from .pki import LOOPBACK

__all__ = ["Served", "ServerLoop", "bind_socket", "free_port"]

T = TypeVar("T")


@dataclass
class Served:
    """A running server: where it listens and how to stop it."""

    name: str
    url: str
    port: int
    server: web.Server


async def _close(served: Served) -> None:
    """Stop a server and drop its connections, keep-alive ones included (a TLS
    transport would otherwise wait for the peer's close_notify after the loop ends)."""
    await served.server.close()


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (for configs that need one up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def bind_socket(port: int = 0) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 (port 0: any free port).

    Raises ``OSError`` with errno EADDRINUSE when a fixed port is taken.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(512)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class ServerLoop:
    """An asyncio loop in a daemon thread that hosts the stack's servers."""

    def __init__(self, name: str = "irsa-lab") -> None:
        self._name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._served: list[Served] = []

    # -- lifecycle ------------------------------------------------------------
    def start(self) -> ServerLoop:
        if self._thread is not None:
            return self
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self.loop = loop
            asyncio.set_event_loop(loop)
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"{self._name}-loop", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop every server, cancel leftover tasks, end the thread."""
        if self._thread is None or self.loop is None:
            return
        loop = self.loop

        async def shutdown() -> None:
            for served in reversed(self._served):
                await _close(served)
            self._served.clear()
            me = asyncio.current_task()
            rest = [t for t in asyncio.all_tasks() if t is not me]
            for t in rest:
                t.cancel()
            if rest:
                await asyncio.gather(*rest, return_exceptions=True)

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(timeout)
            self._thread = None
            self.loop = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    # -- running work on the loop ---------------------------------------------
    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the loop from another thread and wait for its result."""
        return self.submit(coro).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self.loop is None:
            coro.close()
            raise RuntimeError("the server loop is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    # -- serving ----------------------------------------------------------------
    def serve(
        self,
        name: str,
        app: web.Application,
        *,
        tls: ssl.SSLContext | None = None,
        port: int = 0,
    ) -> Served:
        """Serve ``app`` on 127.0.0.1 (HTTPS when ``tls`` is given) and return its URL."""
        sock = bind_socket(port)

        async def go() -> Served:
            server = await web.serve(app, sock, tls)
            bound = sock.getsockname()[1]
            scheme = "https" if tls is not None else "http"
            served = Served(name, f"{scheme}://{LOOPBACK}:{bound}", bound, server)
            self._served.append(served)
            return served

        try:
            return self.call(go())
        except BaseException:
            sock.close()
            raise

    def unserve(self, name: str) -> None:
        """Stop one server (the others keep running): used to break the chain on purpose."""

        async def go() -> None:
            for served in list(self._served):
                if served.name == name:
                    await _close(served)
                    self._served.remove(served)

        self.call(go())

    def served(self) -> dict[str, Served]:
        return {s.name: s for s in self._served}
