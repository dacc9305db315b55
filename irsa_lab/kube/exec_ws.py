"""``kubectl exec`` at the API stand-in: the WebSocket remote-command protocol.

kubectl (1.31 and later) opens ``GET /api/v1/namespaces/{ns}/pods/{name}/exec`` with
``command``, ``container``, ``stdin``, ``stdout``, ``stderr`` and ``tty`` in the query,
as a WebSocket offering the subprotocols ``v5.channel.k8s.io``, ``v4.channel.k8s.io``,
... (k8s.io/client-go/tools/remotecommand, websocket.go). Every binary message starts
with its channel byte (k8s.io/apimachinery/pkg/util/remotecommand):

- ``0`` stdin (client to server), ``1`` stdout, ``2`` stderr;
- ``3`` error: once, at the end, a ``metav1.Status``: ``Success``, or ``Failure`` with
  reason ``NonZeroExitCode`` and a ``details.causes`` entry of reason ``ExitCode``
  whose message is the code; kubectl prints ``command terminated with exit code N``
  and exits with N;
- ``4`` resize (``{"Width":..,"Height":..}``) for a terminal;
- ``255`` close (v5 only): ``[255, id]`` half-closes stream ``id``, which is how
  ``echo hi | kubectl exec -i`` ends the command's stdin.

As the kubelet does, an empty message on the lowest open output channel tells the
client the streams are set up. The command runs as ``irsa-lab exec`` runs it
(:func:`irsa_lab.kube.container.run`, the one exec path) in a child Python process
whose stdin, stdout and stderr are pipes, or a pseudo-terminal when ``tty=true``
(stderr then shares stdout, as in a container with a terminal): a
:class:`CommandSession`, which the SPDY kubelet API of the ``k8s`` backend
(:mod:`irsa_lab.kube.kubelet_server`) shares.
:class:`EmbeddedExec` knows the lab's state directory, where the child finds the
endpoints and the kubelet's folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import signal
import struct
import sys
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import web
from ..web import WSMsgType
from .status import bad_request, not_found

__all__ = [
    "CHANNEL_CLOSE",
    "CHANNEL_ERROR",
    "CHANNEL_RESIZE",
    "CHANNEL_STDERR",
    "CHANNEL_STDIN",
    "CHANNEL_STDOUT",
    "PROTOCOL_V4",
    "PROTOCOL_V5",
    "CommandSession",
    "EmbeddedExec",
    "ExecOptions",
    "child_main",
    "exec_options",
    "exit_status",
    "parse_resize",
    "serve_exec",
]

Obj = dict[str, Any]

PROTOCOL_V5 = "v5.channel.k8s.io"
PROTOCOL_V4 = "v4.channel.k8s.io"
CHANNEL_STDIN = 0
CHANNEL_STDOUT = 1
CHANNEL_STDERR = 2
CHANNEL_ERROR = 3
CHANNEL_RESIZE = 4
CHANNEL_CLOSE = 255
_READ_SIZE = 32 * 1024
# How long output may still arrive after the command exited (a grandchild holding it).
_DRAIN_S = 2.0
_TRUE = ("1", "true", "t")

_CHILD = (
    "import sys\nfrom irsa_lab.kube.exec_ws import child_main\nsys.exit(child_main(sys.argv[1]))\n"
)


@dataclass(frozen=True)
class ExecOptions:
    """The query of an exec request (``PodExecOptions``)."""

    command: list[str]
    container: str
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


def _flag(query: Any, name: str) -> bool:
    return str(query.get(name, "")).lower() in _TRUE


def exec_options(query: Any, pod: Obj, *, upgraded: bool = True) -> ExecOptions:
    """Validate the query against ``pod`` with the real server's messages (400s).

    In the real server's order: the container and the pod's node first, then a request
    that does not upgrade the connection (``upgraded`` False) is refused, then the
    command and the streams.
    """
    opts = ExecOptions(
        command=list(query.getall("command", [])),
        container=str(query.get("container", "")),
        stdin=_flag(query, "stdin"),
        stdout=_flag(query, "stdout"),
        stderr=_flag(query, "stderr"),
        tty=_flag(query, "tty"),
    )
    name = pod["metadata"]["name"]
    containers = [c.get("name", "") for c in pod.get("spec", {}).get("containers") or []]
    others = [
        c.get("name", "")
        for key in ("initContainers", "ephemeralContainers")
        for c in pod.get("spec", {}).get(key) or []
    ]
    if not opts.container:
        if len(containers) != 1:
            raise bad_request(
                f"a container name must be specified for pod {name}, "
                f"choose one of: [{' '.join(containers)}]"
            )
        opts = replace(opts, container=containers[0])
    elif opts.container not in containers + others:
        raise bad_request(f"container {opts.container} is not valid for pod {name}")
    if not pod.get("spec", {}).get("nodeName"):
        raise bad_request(f"pod {name} does not have a host assigned")
    phase = pod.get("status", {}).get("phase", "")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(
            f"cannot exec into a container in a completed pod; current phase is {phase}"
        )
    if not upgraded:
        raise bad_request("Upgrade request required")
    if not opts.command:
        raise bad_request("you must specify at least 1 command")
    if not (opts.stdin or opts.stdout or opts.stderr):
        raise bad_request("you must specify at least one of stdin, stdout, stderr")
    if opts.tty and opts.stderr:
        # kubectl never asks for both; the kubelet merges stderr into the terminal.
        opts = replace(opts, stderr=False)
    return opts


def exit_status(code: int, command: list[str] | None = None) -> Obj:
    """The error channel's Status for an exit code.

    With ``command``, as the kubelet writes it; without, as the API server writes it to
    a WebSocket client (it rewraps the kubelet's error, so the message differs).
    """
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    inner = (
        f"error executing command [{' '.join(command)}], exit code {code}"
        if command is not None
        else f"command terminated with exit code {code}"
    )
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: {inner}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


@dataclass(frozen=True)
class EmbeddedExec:
    """Runs exec commands for the embedded lab whose state directory is ``state_dir``."""

    state_dir: Path

    def child_argv(self, pod: Obj, opts: ExecOptions) -> list[str]:
        spec = {
            "state_dir": str(self.state_dir),
            "pod": pod,
            "container": opts.container,
            "argv": opts.command,
            "tty": opts.tty,
        }
        return [sys.executable, "-c", _CHILD, json.dumps(spec)]


def child_main(spec_json: str) -> int:
    """In the child: run the command as ``irsa-lab exec`` would; its exit code."""
    from ..in_pod import exec_plan, node_region_env, pod_aws_env
    from ..trace import facts_path
    from .container import run

    spec = json.loads(spec_json)
    if spec.get("tty"):
        # The terminal becomes the controlling one of a new session, as in a container.
        os.setsid()
        with contextlib.suppress(OSError):
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        # ^C, ^\ and ^Z are for the command alone (a container's process gets them);
        # a handler, unlike SIG_IGN, is reset to the default when the command starts.
        for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
            signal.signal(sig, _ignore)
    state = Path(spec["state_dir"])
    endpoints = json.loads((state / "endpoints.json").read_text())
    pod = spec["pod"]
    argv = spec["argv"]
    root = Path(endpoints.get("kubelet_root") or state / "kubelet")
    plan = exec_plan(pod, root, spec["container"])
    region, _ = node_region_env(plan, endpoints, {})
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    meta = pod.get("metadata", {})
    try:
        done = run(
            plan,
            argv,
            extra_env={**pod_aws_env(endpoints), **region},
            base_env={"PATH": path, "LANG": os.environ.get("LANG", "C.UTF-8")},
            capture=False,
            facts=facts_path(state),
            context={
                "pod": str(meta.get("name", "")),
                "namespace": str(meta.get("namespace", "")),
                "uid": str(meta.get("uid", "")),
                "container": plan.container,
            },
        )
    except OSError as exc:
        # What runc answers through containerd when the executable cannot be started.
        why = "executable file not found in $PATH" if exc.errno == 2 else exc.strerror
        print(
            "OCI runtime exec failed: exec failed: unable to start container process: "
            f'exec: "{argv[0]}": {why}: unknown',
            flush=True,
        )
        return 127 if exc.errno == 2 else 126
    # A command killed by a signal exits 128+N, as a container's shell reports it.
    return done.returncode if done.returncode >= 0 else 128 - done.returncode


def _ignore(signum: int, frame: object) -> None:
    """A handler that does nothing (see :func:`child_main`)."""


# --- the server side ------------------------------------------------------------------

Send = Callable[[int, bytes], Awaitable[None]]


class CommandSession:
    """One exec'd command: its child process and our ends of its stdin, stdout, stderr.

    Shared by the WebSocket server here and the SPDY kubelet API
    (:mod:`irsa_lab.kube.kubelet_server`): output goes to ``send(channel, data)``.
    """

    def __init__(self, runner: EmbeddedExec, pod: Obj, opts: ExecOptions, send: Send) -> None:
        self.runner = runner
        self.pod = pod
        self.opts = opts
        self.send = send
        self.tty = opts.tty
        self.proc: asyncio.subprocess.Process | None = None
        self._child: list[int] = []  # fds handed to the child, closed once it started
        self._outputs: dict[int, int] = {}  # our fd -> channel
        self._pumps: list[asyncio.Future[None]] = []
        self.stdin_fd: int | None = None
        # Made now: stdin and a resize that arrive before the command starts are kept.
        self._fds = self._make_fds()

    def _make_fds(self) -> tuple[int, int, int]:
        opts = self.opts
        if opts.tty:
            master, slave = os.openpty()
            self._child = [slave]
            self._outputs[master] = CHANNEL_STDOUT
            self.stdin_fd = master
            os.set_blocking(master, False)
            return slave, slave, slave
        null = os.open(os.devnull, os.O_RDWR)
        self._child.append(null)
        fds = [null, null, null]
        if opts.stdin:
            r, w = os.pipe()
            fds[0], self.stdin_fd = r, w
            self._child.append(r)
            os.set_blocking(w, False)
        for index, wanted, channel in (
            (1, opts.stdout, CHANNEL_STDOUT),
            (2, opts.stderr, CHANNEL_STDERR),
        ):
            if wanted:
                r, w = os.pipe()
                fds[index] = w
                self._child.append(w)
                self._outputs[r] = channel
        return fds[0], fds[1], fds[2]

    async def start(self) -> None:
        """Start the command and the copies of its output."""
        fds = self._fds
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.runner.child_argv(self.pod, self.opts),
                stdin=fds[0],
                stdout=fds[1],
                stderr=fds[2],
                start_new_session=not self.tty,
            )
        finally:
            for fd in self._child:
                os.close(fd)
            self._child = []
        self._pumps = [
            asyncio.ensure_future(_pump_output(fd, ch, self.send))
            for fd, ch in self._outputs.items()
        ]

    async def write_stdin(self, data: bytes) -> None:
        if self.stdin_fd is not None and data:
            await _write_all(self.stdin_fd, data)

    def close_stdin(self) -> None:
        """The client's stdin ended (a terminal has no end of its own: nothing to do)."""
        if self.stdin_fd is not None and not self.tty:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
            self.stdin_fd = None

    def resize(self, width: int, height: int) -> None:
        if self.tty and self.stdin_fd is not None:
            with contextlib.suppress(OSError):
                packed = struct.pack("HHHH", height, width, 0, 0)
                fcntl.ioctl(self.stdin_fd, termios.TIOCSWINSZ, packed)

    async def wait(self, abandoned: asyncio.Future[Any] | None = None) -> int:
        """The exit code, once the output is copied; the command is killed if the
        client goes (``abandoned`` done) first."""
        assert self.proc is not None
        exited = asyncio.ensure_future(self.proc.wait())
        waits: list[asyncio.Future[Any]] = [exited, *([abandoned] if abandoned else [])]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if not exited.done():
            # The client went away: end the command rather than leave it running.
            self.kill()
        code = await exited
        if self._pumps:
            _, pending = await asyncio.wait(self._pumps, timeout=_DRAIN_S)
            for task in pending:
                task.cancel()
        return code if code >= 0 else 128 - code

    def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Kill a command still running and close every descriptor."""
        self.kill()
        if self.proc is not None:
            await self.proc.wait()
        for task in self._pumps:
            task.cancel()
        for fd in [*self._child, *self._outputs]:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._child, self._outputs = [], {}
        if self.stdin_fd is not None and not self.tty:
            with contextlib.suppress(OSError):
                os.close(self.stdin_fd)
        self.stdin_fd = None


async def _pump_output(fd: int, channel: int, send: Send) -> None:
    """Copy ``fd`` to ``channel`` until EOF (EIO on a terminal whose child side closed)."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    ready = asyncio.Event()
    loop.add_reader(fd, ready.set)
    try:
        while True:
            await ready.wait()
            ready.clear()
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not data:
                return
            await send(channel, data)
    finally:
        loop.remove_reader(fd)


async def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            await asyncio.sleep(0.01)
            continue
        view = view[n:]


def parse_resize(body: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of a resize message (``{"Width":..,"Height":..}``)."""
    try:
        size = json.loads(body)
        return int(size["Width"]), int(size["Height"])
    except (ValueError, KeyError, TypeError):
        return None


async def serve_exec(
    request: web.Request, runner: EmbeddedExec | None, pod: Obj
) -> web.StreamResponse:
    """Answer an exec request for ``pod`` (already authorized and read from the store)."""
    # The client's answer to the close frame is waited for briefly (a client that never
    # answers does not hold the connection for aiohttp's default 10 s).
    ws = web.WebSocketResponse(protocols=(PROTOCOL_V5, PROTOCOL_V4), autoping=True, timeout=1.0)
    # A request that does not upgrade to a WebSocket (or asks for SPDY, which only the
    # kubelet stand-in of the k8s backend speaks) is refused; kubectl reports it.
    upgraded = (
        request.headers.get("Upgrade", "").lower() == "websocket" and ws.can_prepare(request).ok
    )
    opts = exec_options(request.query, pod, upgraded=upgraded)
    if runner is None:
        raise not_found("nodes", pod.get("spec", {}).get("nodeName", ""))
    await ws.prepare(request)
    if ws.ws_protocol not in (PROTOCOL_V5, PROTOCOL_V4):
        await ws.close()
        return ws
    lock = asyncio.Lock()

    async def send(channel: int, data: bytes) -> None:
        async with lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_bytes(bytes([channel]) + data)

    session = CommandSession(runner, pod, opts, send)
    try:
        await session.start()
        # As the kubelet does: an empty message on the lowest output channel says the
        # streams are set up.
        first = CHANNEL_STDOUT if opts.stdout else CHANNEL_STDERR if opts.stderr else CHANNEL_ERROR
        await send(first, b"")
        reader = asyncio.ensure_future(_read_client(ws, session))
        code = await session.wait(reader)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        status = exit_status(code)
        await send(CHANNEL_ERROR, json.dumps(status, separators=(",", ":")).encode())
        await ws.close()
    finally:
        await session.close()
    return ws


async def _read_client(ws: web.WebSocketResponse, session: CommandSession) -> None:
    """Feed stdin, resizes and v5 closes from the client; close stdin when it leaves."""
    try:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY or not msg.data:
                continue
            channel, body = msg.data[0], msg.data[1:]
            if channel == CHANNEL_STDIN:
                await session.write_stdin(body)
            elif channel == CHANNEL_RESIZE:
                size = parse_resize(body)
                if size is not None:
                    session.resize(*size)
            elif channel == CHANNEL_CLOSE and body[:1] == bytes([CHANNEL_STDIN]):
                session.close_stdin()
    except OSError:
        pass
    session.close_stdin()
