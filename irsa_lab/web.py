"""The stack's HTTP/1.1 server: the part of ``aiohttp.web``'s interface the stand-ins use.

Every stand-in is a small application of routes and handlers. They were written for
``aiohttp.web``, whose import costs a Python process about 0.25-0.45 s (its client,
which creates two TLS contexts from the system's CA bundle at import, and its
dependencies) - more than a third of ``irsa-lab up``. This module serves the same
handlers on ``asyncio`` streams and imports nothing outside the standard library.
aiohttp stays the lab's HTTP *client* (webhook calls, JWKS fetches), imported when
first used.

What it implements, and no more:

* HTTP/1.1 requests with ``Content-Length`` or chunked bodies, keep-alive (75 s idle,
  as aiohttp), ``Expect: 100-continue`` (answered before the handler runs, as aiohttp
  does), HEAD, and ``Connection: close``;
* :class:`Response`, :class:`StreamResponse` (chunked streams: the API server's
  watches), :func:`json_response`, :class:`HTTPException` and the statuses raised;
* :class:`Application`: routes ``/literal``, ``{name}`` and ``{name:regex}`` matched on
  the percent-decoded path, middlewares, ``on_shutdown`` / ``on_cleanup``;
* :class:`WebSocketResponse`: RFC 6455 on the server side, for ``kubectl exec``.

Malformed requests get ``400 Bad Request`` and the connection is closed, as Go's
net/http (the real API server) and aiohttp do; a body above the application's
``client_max_size`` raises :class:`HTTPRequestEntityTooLarge` from :meth:`Request.read`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import hashlib
import http
import json
import re
import socket
import ssl
import struct
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

__all__ = [
    "Application",
    "HTTPException",
    "HTTPRequestEntityTooLarge",
    "Headers",
    "Request",
    "Response",
    "Server",
    "StreamResponse",
    "WSMessage",
    "WSMsgType",
    "WebSocketResponse",
    "json_response",
    "middleware",
    "serve",
]

Handler = Callable[["Request"], Awaitable["StreamResponse"]]
Middleware = Callable[["Request", Handler], Awaitable["StreamResponse"]]

KEEPALIVE_S = 75.0  # aiohttp's keepalive_timeout
MAX_HEAD = 64 * 1024  # request line and headers together
TLS_HANDSHAKE_TIMEOUT_S = 10.0
_REQUEST_LINE = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP/1\.([01])")


_last_activity = 0.0


def note_activity() -> None:
    """Mark now as busy (every request does; so does the stack when it starts)."""
    global _last_activity
    _last_activity = time.monotonic()


def quiet_for() -> float:
    """Seconds since any server of this process last began or ended a request."""
    return time.monotonic() - _last_activity


# --- headers and query ----------------------------------------------------------------
class Headers(MutableMapping[str, str]):
    """Case-insensitive headers that keep every value and their order (a multidict:
    iteration and ``items()`` give every pair, ``[name]`` and ``get`` the first)."""

    def __init__(
        self, items: Iterable[tuple[str, str]] | Mapping[str, str] | Headers | None = None
    ) -> None:
        self._items: list[tuple[str, str]] = []
        if isinstance(items, Mapping | Headers):
            items = items.items()
        for k, v in items or ():
            self._items.append((str(k), str(v)))

    def get(self, name: str, default: Any = None) -> Any:
        low = name.lower()
        for k, v in self._items:
            if k.lower() == low:
                return v
        return default

    def getall(self, name: str, default: Any = None) -> list[str]:
        low = name.lower()
        found = [v for k, v in self._items if k.lower() == low]
        if not found and default is None:
            raise KeyError(name)
        return found or default

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return str(value)

    def __setitem__(self, name: str, value: str) -> None:
        low = name.lower()
        kept = [(k, v) for k, v in self._items if k.lower() != low]
        self._items = [*kept, (name, str(value))]

    def __delitem__(self, name: str) -> None:
        low = name.lower()
        if not any(k.lower() == low for k, _ in self._items):
            raise KeyError(name)
        self._items = [(k, v) for k, v in self._items if k.lower() != low]

    def add(self, name: str, value: str) -> None:
        self._items.append((name, str(value)))

    def setdefault(self, name: str, value: str = "") -> str:
        if name not in self:
            self.add(name, value)
        return str(self[name])

    def pop(self, name: str, *default: Any) -> Any:
        value = self.get(name)
        if value is None:
            if default:
                return default[0]
            raise KeyError(name)
        del self[name]
        return value

    def update(self, other: Any = (), /, **kwargs: str) -> None:
        pairs = other.items() if isinstance(other, Mapping) else other
        for k, v in [*pairs, *kwargs.items()]:
            self[k] = v

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def keys(self) -> list[str]:  # type: ignore[override]
        return [k for k, _ in self._items]

    def values(self) -> list[str]:  # type: ignore[override]
        return [v for _, v in self._items]

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        if isinstance(other, Mapping):
            return dict(self._items) == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"<Headers({self._items!r})>"


class Query(Headers):
    """The parsed query string (case-sensitive keys, every value kept)."""

    def get(self, name: str, default: Any = None) -> Any:
        for k, v in self._items:
            if k == name:
                return v
        return default

    def getall(self, name: str, default: Any = None) -> list[str]:
        found = [v for k, v in self._items if k == name]
        if not found and default is None:
            raise KeyError(name)
        return found or default


class URL(NamedTuple):
    """The request target, the few parts handlers read (``request.rel_url``)."""

    raw_path: str  # as sent, without the query
    raw_query_string: str
    path: str  # percent-decoded
    query: Query


def _split_target(target: str) -> URL:
    raw_path, _, raw_query = target.partition("?")
    raw_path = raw_path.partition("#")[0]
    query = Query(parse_qsl(raw_query, keep_blank_values=True))
    return URL(raw_path, raw_query, unquote(raw_path), query)


# --- responses ------------------------------------------------------------------------
def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


class StreamResponse:
    """A response whose body is written in parts after :meth:`prepare` (chunked)."""

    def __init__(
        self,
        *,
        status: int = 200,
        reason: str | None = None,
        headers: Mapping[str, str] | Headers | None = None,
    ) -> None:
        self.status = status
        self.reason = reason or _reason(status)
        self.headers = Headers(headers)
        self._conn: _Connection | None = None
        self._chunked = False
        self._eof = False
        self.prepared = False

    # what aiohttp lets a handler set before prepare()
    @property
    def content_type(self) -> str:
        return str(self.headers.get("Content-Type", "application/octet-stream")).split(";")[0]

    @content_type.setter
    def content_type(self, value: str) -> None:
        self.headers["Content-Type"] = value

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("Content-Length")
        return int(value) if value is not None else None

    @content_length.setter
    def content_length(self, value: int | None) -> None:
        if value is None:
            self.headers.pop("Content-Length", None)
        else:
            self.headers["Content-Length"] = str(value)

    def enable_chunked_encoding(self) -> None:
        self._chunked = True

    def force_close(self) -> None:
        self.headers["Connection"] = "close"

    async def prepare(self, request: Request) -> None:
        if self.prepared:
            return
        self._conn = request._conn
        if "Content-Length" not in self.headers:
            self._chunked = True
        if self._chunked and request.version >= 1:
            self.headers["Transfer-Encoding"] = "chunked"
        elif self._chunked:
            self.force_close()  # HTTP/1.0: the body ends when the connection does
        await self._conn.send_head(self, request)
        self.prepared = True

    async def write(self, data: bytes) -> None:
        if self._conn is None or not self.prepared:
            raise RuntimeError("Cannot call write() before prepare()")
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data:
            return
        if self.headers.get("Transfer-Encoding") == "chunked":
            data = b"%x\r\n%s\r\n" % (len(data), data)
        await self._conn.send(data)

    async def write_eof(self, data: bytes = b"") -> None:
        if self._eof:
            return
        if data:
            await self.write(data)
        self._eof = True
        if self._conn is not None and self.headers.get("Transfer-Encoding") == "chunked":
            await self._conn.send(b"0\r\n\r\n")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status} {self.reason}>"


class Response(StreamResponse):
    """A response with its whole body (``text`` is UTF-8, ``content_type`` text/plain)."""

    def __init__(
        self,
        *,
        body: bytes | bytearray | str | None = None,
        status: int = 200,
        reason: str | None = None,
        text: str | None = None,
        headers: Mapping[str, str] | Headers | None = None,
        content_type: str | None = None,
        charset: str | None = None,
    ) -> None:
        super().__init__(status=status, reason=reason, headers=headers)
        if body is not None and text is not None:
            raise ValueError("body and text are not allowed together")
        if content_type is not None and "Content-Type" in self.headers:
            raise ValueError("passing both Content-Type header and content_type is not allowed")
        if text is not None:
            if content_type is None and "Content-Type" not in self.headers:
                content_type = "text/plain"
            body = text.encode(charset or "utf-8")
            if content_type is not None:
                charset = charset or "utf-8"
        elif isinstance(body, str):
            body = body.encode(charset or "utf-8")
        if content_type is not None:
            self.headers["Content-Type"] = (
                f"{content_type}; charset={charset}" if charset else content_type
            )
        elif body is not None and "Content-Type" not in self.headers:
            self.headers["Content-Type"] = "application/octet-stream"
        self.body: bytes = bytes(body or b"")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    async def prepare(self, request: Request) -> None:
        if self.prepared:
            return
        self._conn = request._conn
        self.headers["Content-Length"] = str(len(self.body))
        await self._conn.send_head(self, request, self.body)
        self.prepared = True
        self._eof = True

    async def write_eof(self, data: bytes = b"") -> None:
        self._eof = True


def json_response(
    data: Any = None,
    *,
    status: int = 200,
    reason: str | None = None,
    headers: Mapping[str, str] | Headers | None = None,
    content_type: str = "application/json",
    dumps: Callable[[Any], str] = json.dumps,
    text: str | None = None,
) -> Response:
    return Response(
        text=dumps(data) if text is None else text,
        status=status,
        reason=reason,
        headers=headers,
        content_type=content_type,
    )


class HTTPException(Response, Exception):  # noqa: N818 - aiohttp's name, kept for the handlers
    """A response raised (404 for no route, 405 for a wrong method, 413 for a big body)."""

    status_code = 500

    def __init__(self, *, text: str | None = None, headers: Any = None, reason: str | None = None):
        Response.__init__(
            self,
            status=self.status_code,
            reason=reason,
            text=text if text is not None else f"{self.status_code}: {_reason(self.status_code)}",
            headers=headers,
        )
        Exception.__init__(self, self.reason)


class HTTPBadRequest(HTTPException):
    status_code = 400


class HTTPNotFound(HTTPException):
    status_code = 404


class HTTPMethodNotAllowed(HTTPException):
    status_code = 405

    def __init__(self, method: str, allowed: Iterable[str]) -> None:
        super().__init__(headers={"Allow": ",".join(sorted(allowed))})
        self.method = method


class HTTPRequestEntityTooLarge(HTTPException):
    status_code = 413

    def __init__(self, max_size: int, actual_size: int | None = None) -> None:
        super().__init__(
            text=f"Maximum request body size {max_size} exceeded, "
            f"actual body size {actual_size if actual_size is not None else 'unknown'}"
        )
        self.max_size, self.actual_size = max_size, actual_size


# --- the application --------------------------------------------------------------------
def middleware(fn: Middleware) -> Middleware:
    """Marks a middleware, as ``aiohttp.web.middleware`` does (nothing else to do here)."""
    return fn


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::((?:[^{}]|\{[^{}]*\})+))?\}")


@dataclass
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler


def _compile(path: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[pos : m.start()]))
        out.append(f"(?P<{m[1]}>{m[2] or '[^{}/]+'})")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("".join(out))


class Router:
    def __init__(self) -> None:
        self.routes: list[_Route] = []

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        self.routes.append(_Route(method.upper(), _compile(path), handler))

    def add_get(self, path: str, handler: Handler, *, allow_head: bool = True) -> None:
        self.add_route("GET", path, handler)
        if allow_head:
            self.add_route("HEAD", path, handler)

    def add_post(self, path: str, handler: Handler) -> None:
        self.add_route("POST", path, handler)

    def add_put(self, path: str, handler: Handler) -> None:
        self.add_route("PUT", path, handler)

    def resolve(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        allowed: set[str] = set()
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m is None:
                continue
            if route.method in ("*", method):
                return route.handler, m.groupdict()
            allowed.add(route.method)
        if allowed:
            raise HTTPMethodNotAllowed(method, allowed)
        raise HTTPNotFound()


Hook = Callable[["Application"], Awaitable[None]]


class Application:
    """Routes, middlewares and shutdown hooks; ``app[key]`` holds shared state."""

    def __init__(
        self, *, client_max_size: int = 1024**2, middlewares: Iterable[Middleware] = ()
    ) -> None:
        self.client_max_size = client_max_size
        self.middlewares = list(middlewares)
        self.router = Router()
        self.on_shutdown: list[Hook] = []
        self.on_cleanup: list[Hook] = []
        self._state: dict[Any, Any] = {}

    def __getitem__(self, key: Any) -> Any:
        return self._state[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._state[key] = value

    def __contains__(self, key: Any) -> bool:
        return key in self._state

    def get(self, key: Any, default: Any = None) -> Any:
        return self._state.get(key, default)

    async def handle(self, request: Request) -> StreamResponse:
        try:
            handler, request.match_info = self.router.resolve(request.method, request.path)
        except HTTPException as exc:
            # As in aiohttp, the middlewares run for a 404 or 405 too (the admin
            # endpoint's token check answers 401 before either).
            handler = _raiser(exc)
        call: Handler = handler
        for mw in reversed(self.middlewares):
            call = _bind(mw, call)
        return await call(request)


def _raiser(exc: HTTPException) -> Handler:
    async def call(request: Request) -> StreamResponse:
        raise exc

    return call


def _bind(mw: Middleware, inner: Handler) -> Handler:
    async def call(request: Request) -> StreamResponse:
        return await mw(request, inner)

    return call


# --- requests ---------------------------------------------------------------------------
class Request:
    """One request: method, target, headers, and the body read on demand."""

    def __init__(
        self,
        conn: _Connection,
        method: str,
        target: str,
        version: int,
        headers: Headers,
        app: Application,
    ) -> None:
        self._conn = conn
        self.method = method
        self.version = version  # the minor version: 1 for HTTP/1.1, 0 for HTTP/1.0
        self.headers = headers
        self.app = app
        self.rel_url = _split_target(target)
        self.raw_path = target
        self.path = self.rel_url.path
        self.query = self.rel_url.query
        self.query_string = self.rel_url.raw_query_string
        self.match_info: dict[str, str] = {}
        self._body: bytes | None = None
        self._state: dict[str, Any] = {}

    # request-scoped storage, as aiohttp's Request is a mapping
    def __getitem__(self, key: str) -> Any:
        return self._state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._conn.writer.transport  # type: ignore[return-value]

    @property
    def remote(self) -> str | None:
        peer = self._conn.writer.get_extra_info("peername")
        return str(peer[0]) if peer else None

    @property
    def host(self) -> str:
        return str(self.headers.get("Host") or self._conn.local_host)

    @property
    def content_type(self) -> str:
        raw = self.headers.get("Content-Type")
        if not raw:
            return "application/octet-stream"
        return str(raw).split(";", 1)[0].strip().lower()

    async def read(self) -> bytes:
        if self._body is None:
            self._body = await self._conn.read_body(self.app.client_max_size)
        return self._body

    async def json(self) -> Any:
        return json.loads(await self.read())

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path}>"


# --- the connection ---------------------------------------------------------------------
class _BadRequest(Exception):
    pass


class _Connection:
    """One client connection: reads requests one after the other and answers them."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        self.reader, self.writer, self.server = reader, writer, server
        sock = writer.get_extra_info("sockname")
        self.local_host = f"{sock[0]}:{sock[1]}" if sock else ""
        self._length: int | None = 0  # bytes of body left; None: chunked
        self._chunked_done = True
        self.upgraded = False

    async def send(self, data: bytes) -> None:
        if self.writer.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        self.writer.write(data)
        await self.writer.drain()

    async def send_head(self, resp: StreamResponse, request: Request, body: bytes = b"") -> None:
        keep = self.keep_alive(request) and resp.headers.get("Connection", "") != "close"
        if not keep:
            resp.headers["Connection"] = "close"
        elif request.version == 0:
            resp.headers["Connection"] = "keep-alive"
        if resp.status == 101:
            resp.headers.pop("Content-Length", None)
        lines = [f"HTTP/1.1 {resp.status} {resp.reason}"]
        if "Date" not in resp.headers:
            lines.append("Date: " + formatdate(usegmt=True))
        lines += [f"{k}: {v}" for k, v in resp.headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", errors="replace")
        if request.method == "HEAD":
            body = b""
        await self.send(head + body)
        if not keep:
            self.close_after = True

    close_after = False

    def keep_alive(self, request: Request) -> bool:
        conn = str(request.headers.get("Connection", "")).lower()
        if request.version == 0:
            return "keep-alive" in conn
        return "close" not in conn

    async def read_body(self, limit: int) -> bytes:
        if self._length is None:
            return await self._read_chunked(limit)
        if self._length > limit:
            self.close_after = True
            raise HTTPRequestEntityTooLarge(limit, self._length)
        data = await self.reader.readexactly(self._length) if self._length else b""
        self._length = 0
        return data

    async def _read_chunked(self, limit: int) -> bytes:
        parts, total = [], 0
        while not self._chunked_done:
            line = await self.reader.readuntil(b"\r\n")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.close_after = True
                raise HTTPBadRequest(text="400: Bad Request (chunk size)") from None
            if size == 0:
                while (await self.reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers, ignored
                self._chunked_done = True
                break
            total += size
            if total > limit:
                self.close_after = True
                raise HTTPRequestEntityTooLarge(limit, total)
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        return b"".join(parts)

    async def _discard_body(self) -> None:
        """Read what the handler left of the body, so the next request starts clean."""
        if self.close_after:
            return
        if self._length is None and not self._chunked_done:
            await self._read_chunked(1 << 30)
        elif self._length:
            await self.reader.readexactly(self._length)
            self._length = 0

    async def _read_head(self) -> tuple[str, str, int, Headers] | None:
        try:
            raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), KEEPALIVE_S)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            return None
        except asyncio.LimitOverrunError:
            raise _BadRequest("Got more than 65536 bytes when reading the request head") from None
        lines = raw[:-4].split(b"\r\n")
        while lines and lines[0] == b"":  # a stray CRLF between requests is allowed
            lines.pop(0)
        if not lines:
            return None
        m = _REQUEST_LINE.fullmatch(lines[0])
        if m is None:
            raise _BadRequest(f"Invalid request line: {lines[0][:100]!r}")
        headers = Headers()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip() or line[:1] in b" \t":
                raise _BadRequest(f"Invalid header line: {line[:100]!r}")
            headers.add(name.decode("latin-1"), value.strip(b" \t").decode("latin-1"))
        return m[1].decode(), m[2].decode("latin-1"), int(m[3]), headers

    def _frame_body(self, headers: Headers) -> None:
        te = str(headers.get("Transfer-Encoding", "")).lower()
        cl = headers.getall("Content-Length", [])
        if te:
            if te != "chunked" or cl:
                raise _BadRequest("Unsupported Transfer-Encoding or both framings given")
            self._length, self._chunked_done = None, False
            return
        if len(set(cl)) > 1 or (cl and not cl[0].isdigit()):
            raise _BadRequest("Invalid Content-Length")
        self._length = int(cl[0]) if cl else 0
        self._chunked_done = True

    async def serve(self) -> None:
        try:
            while not self.close_after and not self.upgraded:
                try:
                    head = await self._read_head()
                    if head is None:
                        return
                    method, target, version, headers = head
                    self._frame_body(headers)
                except _BadRequest as err:
                    await self._answer_bad_request(str(err))
                    return
                note_activity()
                request = Request(self, method, target, version, headers, self.server.app)
                if str(headers.get("Expect", "")).lower() == "100-continue" and version == 1:
                    await self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                await self._answer(request)
                note_activity()
                if not self.upgraded:
                    await self._discard_body()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            if not self.writer.is_closing():
                self.writer.close()

    async def _answer_bad_request(self, why: str) -> None:
        body = f"400 Bad Request: {why}".encode()  # Go's net/http answers in this shape
        head = (
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        with contextlib.suppress(ConnectionError):
            await self.send(head.encode() + body)

    async def _answer(self, request: Request) -> None:
        try:
            resp = await self.server.app.handle(request)
        except HTTPException as exc:
            resp = exc
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:  # noqa: BLE001 - a handler's bug is a 500, as in aiohttp
            traceback.print_exc()
            resp = Response(
                status=500,
                text="500 Internal Server Error\n\nServer got itself in trouble",
            )
            self.close_after = True
        if self.upgraded:
            return
        if not resp.prepared:
            await resp.prepare(request)
        await resp.write_eof()


# --- serving ----------------------------------------------------------------------------
def _no_delay(writer: asyncio.StreamWriter) -> None:
    """Send small writes at once (TCP_NODELAY), as asyncio does for the sockets it makes.

    asyncio sets it only on sockets whose ``proto`` is IPPROTO_TCP, and a socket made with
    ``socket.socket(AF_INET, SOCK_STREAM)`` (``httpd.bind_socket``, kind's listeners) has
    proto 0, as have the connections it accepts. Without it, after a TLS handshake the
    server's session tickets and its answer go out as two segments, Nagle holds the second
    until the client's delayed ACK, and each new connection's first answer comes 40 ms late.
    """
    sock = writer.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Server:
    """An application served on one listening socket."""

    def __init__(self, app: Application) -> None:
        self.app = app
        self.connections: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()
        self._servers: list[asyncio.Server] = []
        self._closing = False

    @property
    def addresses(self) -> list[Any]:
        return [sock.getsockname() for srv in self._servers for sock in srv.sockets]

    async def add_socket(self, sock: Any, tls: ssl.SSLContext | None = None) -> None:
        """Serve the same application on one more listening socket too.

        With ``tls`` the handshake is made inside the connection's task, not by the
        listener: a connection still shaking hands is then one :meth:`close` ends, where
        asyncio's own TLS listener would leave it open (Python 3.11 tracks none).
        """

        async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connected(reader, writer, tls)

        srv = await asyncio.start_server(connected, sock=sock, limit=MAX_HEAD)
        self._servers.append(srv)

    async def _connected(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        if self._closing:  # accepted just as the server closed
            writer.transport.abort()
            return
        _no_delay(writer)
        task = asyncio.current_task()
        assert task is not None
        self.connections.add(task)
        self.writers.add(writer)
        try:
            if tls is not None:
                try:
                    await writer.start_tls(tls, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S)
                except (OSError, ssl.SSLError, TimeoutError, ConnectionError):
                    # A client that is not TLS, or left: nothing to answer.
                    writer.transport.abort()
                    return
            await _Connection(reader, writer, self).serve()
        except asyncio.CancelledError:
            # Only close() cancels a connection, and the task ends here: asyncio (3.11)
            # would otherwise print the cancelled task as an error in its stream callback.
            writer.transport.abort()
        finally:
            self.connections.discard(task)
            self.writers.discard(writer)

    async def close(self) -> None:
        """Stop listening, run the shutdown hooks, then end every connection."""
        self._closing = True
        # Stop accepting first, and let the connections asyncio has just accepted get
        # their transports (in tasks of their own) and reach _connected, which ends them.
        # Closing the listener at once would leave such a socket open and never answered:
        # Python 3.11 fails to attach it to a closed server and does not close it.
        loop = asyncio.get_running_loop()
        for srv in self._servers:
            for sock in srv.sockets:
                loop.remove_reader(sock.fileno())
        for _ in range(5):
            await asyncio.sleep(0)
        for srv in self._servers:
            srv.close()
        for hook in self.app.on_shutdown:
            await hook(self.app)
        if self.connections:  # give finishing answers a moment, as aiohttp's 0.5 s
            await asyncio.wait(list(self.connections), timeout=0.5)
        for task in list(self.connections):
            task.cancel()
        for writer in list(self.writers):
            writer.transport.abort()
        if self.connections:
            await asyncio.gather(*self.connections, return_exceptions=True)
        for hook in self.app.on_cleanup:
            await hook(self.app)
        self._servers = []


async def serve(app: Application, sock: Any, tls: ssl.SSLContext | None = None) -> Server:
    """Serve ``app`` on the listening socket ``sock`` (HTTPS when ``tls`` is given)."""
    server = Server(app)
    await server.add_socket(sock, tls)
    return server


# --- WebSockets (RFC 6455, server side) ---------------------------------------------------
class WSMsgType(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    PING = 0x9
    PONG = 0xA
    CLOSE = 0x8
    CLOSED = 0x101
    ERROR = 0x102


class WSMessage(NamedTuple):
    type: WSMsgType
    data: Any
    extra: Any = None


_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class _Ready:
    ok: bool
    protocol: str | None


class WebSocketResponse(StreamResponse):
    """The server end of a WebSocket, with the subprotocol chosen from ``protocols``."""

    def __init__(
        self,
        *,
        protocols: Iterable[str] = (),
        autoping: bool = True,
        timeout: float = 10.0,
        max_msg_size: int = 4 * 1024 * 1024,
    ) -> None:
        super().__init__(status=101)
        self.protocols = tuple(protocols)
        self.autoping = autoping
        self.timeout = timeout
        self.max_msg_size = max_msg_size
        self.ws_protocol: str | None = None
        self.closed = False
        self.close_code: int | None = None
        self._reader: asyncio.StreamReader | None = None
        self._fragments: list[bytes] = []
        self._kind = WSMsgType.BINARY

    def can_prepare(self, request: Request) -> _Ready:
        h = request.headers
        ok = (
            request.method == "GET"
            and str(h.get("Upgrade", "")).lower() == "websocket"
            and "upgrade" in str(h.get("Connection", "")).lower()
            and h.get("Sec-WebSocket-Version") == "13"
            and bool(h.get("Sec-WebSocket-Key"))
        )
        offered = [p.strip() for p in str(h.get("Sec-WebSocket-Protocol", "")).split(",")]
        chosen = next((p for p in self.protocols if p in offered), None)
        return _Ready(ok, chosen)

    async def prepare(self, request: Request) -> None:
        if self.prepared:
            return
        ready = self.can_prepare(request)
        if not ready.ok:
            raise HTTPBadRequest(text="No WebSocket UPGRADE hdr or bad handshake")
        key = str(request.headers["Sec-WebSocket-Key"]).encode()
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest()).decode()  # noqa: S324
        self.headers.update(
            {"Upgrade": "websocket", "Connection": "upgrade", "Sec-WebSocket-Accept": accept}
        )
        if ready.protocol:
            self.headers["Sec-WebSocket-Protocol"] = ready.protocol
        self.ws_protocol = ready.protocol
        request._conn.upgraded = True
        self._conn = request._conn
        self._reader = request._conn.reader
        await self._conn.send_head(self, request)
        self.prepared = True

    async def _send_frame(self, opcode: int, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", 0x80 | opcode, n)
        elif n < 1 << 16:
            head = struct.pack("!BBH", 0x80 | opcode, 126, n)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
        assert self._conn is not None
        await self._conn.send(head + payload)

    async def send_bytes(self, data: bytes) -> None:
        if self.closed:
            raise ConnectionResetError("Cannot write to closing transport")
        await self._send_frame(WSMsgType.BINARY, bytes(data))

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        if self.closed or self._conn is None:
            return False
        self.closed = True
        self.close_code = code
        with contextlib.suppress(ConnectionError):
            await self._send_frame(WSMsgType.CLOSE, struct.pack("!H", code) + message)
        self._conn.writer.close()
        return True

    async def _read_frame(self) -> tuple[bool, int, bytes]:
        assert self._reader is not None
        b1, b2 = await self._reader.readexactly(2)
        n = b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self._reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self._reader.readexactly(8))
        if n > self.max_msg_size:
            raise ValueError(f"message of {n} bytes is over the limit")
        mask = await self._reader.readexactly(4) if b2 & 0x80 else b""
        data = await self._reader.readexactly(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return bool(b1 & 0x80), b1 & 0x0F, data

    async def receive(self) -> WSMessage:
        while True:
            if self.closed:
                return WSMessage(WSMsgType.CLOSED, None)
            try:
                fin, opcode, data = await self._read_frame()
            except (asyncio.IncompleteReadError, ConnectionError):
                self.closed = True
                return WSMessage(WSMsgType.CLOSED, None)
            except ValueError as err:
                await self.close(code=1009)
                return WSMessage(WSMsgType.ERROR, err)
            if opcode == WSMsgType.PING:
                if self.autoping:
                    with contextlib.suppress(ConnectionError):
                        await self._send_frame(WSMsgType.PONG, data)
                    continue
                return WSMessage(WSMsgType.PING, data)
            if opcode == WSMsgType.PONG:
                continue
            if opcode == WSMsgType.CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                await self.close(code=1000)
                self.close_code = code
                return WSMessage(WSMsgType.CLOSE, code, data[2:].decode(errors="replace"))
            self._fragments.append(data)
            if opcode != WSMsgType.CONTINUATION:
                self._kind = WSMsgType(opcode)
            if not fin:
                continue
            whole, self._fragments = b"".join(self._fragments), []
            if self._kind == WSMsgType.TEXT:
                return WSMessage(WSMsgType.TEXT, whole.decode(errors="replace"))
            return WSMessage(WSMsgType.BINARY, whole)

    def __aiter__(self) -> WebSocketResponse:
        return self

    async def __anext__(self) -> WSMessage:
        msg = await self.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
            raise StopAsyncIteration
        return msg
