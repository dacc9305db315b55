"""The kubelet stand-in's own HTTPS API: ``/exec`` over SPDY/3.1, for a real API server.

On the ``k8s`` backend ``kubectl exec`` reaches the real kube-apiserver over a
WebSocket; the API server then dials the node's kubelet at the address and port the
Node advertises (``status.addresses`` in ``--kubelet-preferred-address-types`` order,
``status.daemonEndpoints.kubeletEndpoint.Port``), presents its
``apiserver-kubelet-client`` certificate and upgrades
``POST /exec/{namespace}/{pod}/{container}?command=..&input=1&output=1&error=1&tty=0``
to ``SPDY/3.1``, offering ``X-Stream-Protocol-Version: v4.channel.k8s.io`` (and
older ones). It then opens one SPDY stream per ``streamType`` header: ``error``,
``stdin``, ``stdout``, ``stderr``, ``resize``. This server:

1. requires a client certificate signed by the cluster CA (the kubelet's
   ``--client-ca-file``); its own serving certificate is self-signed, as a kubelet's
   is when no serving certificate is configured;
2. answers ``101 Switching Protocols`` with ``v4.channel.k8s.io``, replies to each
   stream, and once the streams the query asks for exist runs the command as
   ``kubectl exec`` on the embedded lab does (:class:`~irsa_lab.kube.exec_ws.CommandSession`);
3. at the end half-closes stdout and stderr, writes the v4 ``Status`` on the error
   stream, and sends ``GOAWAY``, as the kubelet's remotecommand server does.

``/containerLogs/{namespace}/{pod}/{container}`` answers the container's log, which
is empty: the lab's containers run nothing of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from multidict import MultiDict

from ..httpd import ServerLoop, bind_socket
from ..pki import LOOPBACK, LabCA
from . import spdy
from .exec_ws import (
    CHANNEL_STDERR,
    CHANNEL_STDOUT,
    PROTOCOL_V4,
    CommandSession,
    EmbeddedExec,
    ExecOptions,
    exec_options,
    exit_status,
    parse_resize,
)
from .status import ApiError

__all__ = ["KubeletServer", "kubelet_exec_query"]

Obj = dict[str, Any]
_MAX_HEAD = 64 * 1024
_STREAM_WAIT_S = 30.0
_TRUE = ("1", "true")


def kubelet_exec_query(query: str) -> MultiDict[str]:
    """The kubelet's exec query (``input``/``output``/``error``) as the API's names."""
    names = {"input": "stdin", "output": "stdout", "error": "stderr"}
    out: MultiDict[str] = MultiDict()
    for key, value in parse_qsl(query, keep_blank_values=True):
        out.add(names.get(key, key), value)
    return out


def _response(code: int, reason: str, body: str, headers: dict[str, str] | None = None) -> bytes:
    data = body.encode()
    lines = [f"HTTP/1.1 {code} {reason}", "Content-Type: text/plain; charset=utf-8"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    lines += [f"Content-Length: {len(data)}", "Connection: close", "", ""]
    return "\r\n".join(lines).encode() + data


@dataclass
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, list[str]]

    def header(self, name: str) -> str:
        return ", ".join(self.headers.get(name.lower(), []))

    def tokens(self, name: str) -> list[str]:
        return [t.strip() for v in self.headers.get(name.lower(), []) for t in v.split(",")]


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return None
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return None
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
    url = urlsplit(parts[1])
    return _Request(parts[0], url.path, url.query, headers)


@dataclass(eq=False)
class KubeletServer:
    """The node's kubelet API on its own :class:`ServerLoop` (the node agent runs threads)."""

    state_dir: Path
    ca_pem: bytes
    get_pod: Callable[[str, str], Obj | None]
    node_name: str
    port: int = 0
    loop: ServerLoop = field(default_factory=lambda: ServerLoop("irsa-lab-kubelet-api"))
    _server: asyncio.base_events.Server | None = None

    def tls_context(self) -> ssl.SSLContext:
        # Self-signed, as a kubelet without a configured serving certificate makes one.
        ctx = LabCA.create(f"{self.node_name}-ca").issue((LOOPBACK, "localhost")).server_context()
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(cadata=self.ca_pem.decode())
        return ctx

    def start(self) -> int:
        """Listen on loopback; the port."""
        self.loop.start()
        sock = bind_socket(self.port)
        self.port = int(sock.getsockname()[1])
        ctx = self.tls_context()

        async def serve() -> asyncio.base_events.Server:
            return await asyncio.start_server(self._handle, sock=sock, ssl=ctx)

        self._server = self.loop.call(serve())
        return self.port

    def stop(self) -> None:
        server = self._server
        if server is not None and self.loop.running:

            async def close() -> None:
                server.close()

            with contextlib.suppress(Exception):
                self.loop.call(close(), timeout=5)
        self._server = None
        self.loop.stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await _read_request(reader)
            if request is not None:
                await self._route(request, reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _route(
        self, request: _Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        parts = [unquote(p) for p in request.path.split("/") if p]
        if parts == ["healthz"]:
            writer.write(_response(200, "OK", "ok"))
        elif len(parts) in (4, 5) and parts[0] == "exec":
            ns, name, container = parts[1], parts[2], parts[-1]
            await self._exec(request, ns, name, container, reader, writer)
        elif len(parts) == 4 and parts[0] == "containerLogs":
            pod = await asyncio.get_running_loop().run_in_executor(
                None, self.get_pod, parts[1], parts[2]
            )
            if pod is None:
                writer.write(_response(404, "Not Found", f'pod "{parts[2]}" not found'))
            else:
                writer.write(_response(200, "OK", ""))
        else:
            writer.write(_response(404, "Not Found", "404 page not found\n"))
        await writer.drain()

    async def _exec(
        self,
        request: _Request,
        namespace: str,
        name: str,
        container: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        if "upgrade" not in [t.lower() for t in request.tokens("Connection")] or (
            request.header("Upgrade").lower() != "spdy/3.1"
        ):
            writer.write(
                _response(
                    400, "Bad Request", "unable to upgrade: missing upgrade headers in request"
                )
            )
            return
        offered = request.tokens("X-Stream-Protocol-Version")
        if PROTOCOL_V4 not in offered:
            writer.write(
                _response(
                    403,
                    "Forbidden",
                    f"unable to upgrade: unable to negotiate protocol: client supports "
                    f"{offered}, server supports [{PROTOCOL_V4}]",
                    {"X-Accepted-Stream-Protocol-Versions": PROTOCOL_V4},
                )
            )
            return
        pod = await asyncio.get_running_loop().run_in_executor(None, self.get_pod, namespace, name)
        if pod is None:
            writer.write(_response(404, "Not Found", "pod not found"))
            return
        query = kubelet_exec_query(request.query)
        query["container"] = container
        try:
            opts = exec_options(query, pod)
        except ApiError as err:
            writer.write(_response(400, "Bad Request", err.message))
            return
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
            + f"X-Stream-Protocol-Version: {PROTOCOL_V4}\r\n\r\n".encode()
        )
        await writer.drain()
        await _SpdyExec(EmbeddedExec(self.state_dir), pod, opts, reader, writer).run()


class _SpdyExec:
    """One upgraded exec connection (module docstring, steps 2 and 3)."""

    def __init__(
        self,
        runner: EmbeddedExec,
        pod: Obj,
        opts: ExecOptions,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.opts = opts
        self.frames = spdy.FrameReader(reader)
        self.encoder = spdy.FrameWriter()
        self.writer = writer
        self.streams: dict[str, int] = {}  # streamType -> id
        self.expected = {"error"}
        if opts.stdin:
            self.expected.add("stdin")
        if opts.stdout:
            self.expected.add("stdout")
        if opts.stderr:
            self.expected.add("stderr")
        if opts.tty:
            self.expected.add("resize")
        self.ready = asyncio.Event()
        self.last_id = 0
        self.resize_buffer = ""
        self.session = CommandSession(runner, pod, opts, self._send)

    async def _write(self, frame: spdy.Frame) -> None:
        if self.writer.is_closing():
            return
        self.writer.write(self.encoder.encode(frame))
        with contextlib.suppress(ConnectionError):
            await self.writer.drain()

    async def _send(self, channel: int, data: bytes) -> None:
        kind = {CHANNEL_STDOUT: "stdout", CHANNEL_STDERR: "stderr"}.get(channel)
        sid = self.streams.get(kind or "")
        if sid is not None and data:
            await self._write(spdy.DataFrame(sid, data))

    async def run(self) -> None:
        frames = asyncio.ensure_future(self._read_frames())
        try:
            await asyncio.wait(
                [frames, asyncio.ensure_future(self.ready.wait())],
                timeout=_STREAM_WAIT_S,
                return_when=asyncio.FIRST_COMPLETED,
            )
            if not self.ready.is_set():
                return
            await self.session.start()
            code = await self.session.wait(frames)
            for kind in ("stdout", "stderr"):
                if kind in self.streams:
                    await self._write(spdy.DataFrame(self.streams[kind], b"", spdy.DATA_FLAG_FIN))
            status = json.dumps(exit_status(code, self.opts.command), separators=(",", ":"))
            error_id = self.streams["error"]
            await self._write(spdy.DataFrame(error_id, status.encode()))
            await self._write(spdy.DataFrame(error_id, b"", spdy.DATA_FLAG_FIN))
            await self._write(spdy.GoAway(self.last_id))
        finally:
            frames.cancel()
            await self.session.close()

    async def _read_frames(self) -> None:
        try:
            while (frame := await self.frames.read()) is not None:
                await self._on_frame(frame)
        except (spdy.ProtocolError, ConnectionError, ssl.SSLError):
            pass
        self.session.close_stdin()

    async def _on_frame(self, frame: spdy.Frame) -> None:
        if isinstance(frame, spdy.SynStream):
            self.last_id = max(self.last_id, frame.stream_id)
            kind = (frame.headers.get("streamtype") or [""])[0]
            if kind not in self.expected or kind in self.streams:
                await self._write(spdy.RstStream(frame.stream_id, spdy.RST_PROTOCOL_ERROR))
                return
            self.streams[kind] = frame.stream_id
            await self._write(spdy.SynReply(frame.stream_id))
            if set(self.streams) == self.expected:
                self.ready.set()
        elif isinstance(frame, spdy.DataFrame):
            kind = next((k for k, v in self.streams.items() if v == frame.stream_id), "")
            if kind == "stdin":
                await self.session.write_stdin(frame.data)
                if frame.fin:
                    self.session.close_stdin()
            elif kind == "resize":
                self._resize(frame.data)
        elif isinstance(frame, spdy.RstStream):
            if frame.stream_id == self.streams.get("stdin"):
                self.session.close_stdin()
        elif isinstance(frame, spdy.Ping):
            if frame.id % 2 == 1:  # the client's (odd) pings are echoed
                await self._write(frame)

    def _resize(self, data: bytes) -> None:
        # A stream of JSON objects, one per resize, as json.Encoder writes them.
        self.resize_buffer += data.decode(errors="replace")
        decoder = json.JSONDecoder()
        while self.resize_buffer.strip():
            text = self.resize_buffer.lstrip()
            try:
                value, end = decoder.raw_decode(text)
            except ValueError:
                return
            self.resize_buffer = text[end:]
            size = parse_resize(json.dumps(value).encode())
            if size is not None:
                self.session.resize(*size)
