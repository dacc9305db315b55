"""irsa_lab.web, the stack's HTTP/1.1 server, at the byte level: framing, keep-alive,
100-continue, limits, errors and WebSockets. The stand-ins built on it are judged by
the real clients elsewhere (kubectl, the kubernetes client, boto3, the aws CLI)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import closing

import pytest

from irsa_lab import web
from irsa_lab.httpd import ServerLoop


def _app() -> web.Application:
    app = web.Application(client_max_size=1024)

    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "raw": request.raw_path,
                "query": request.query.getall("a", []),
                "len": len(body),
                "ctype": request.content_type,
                "name": request.match_info.get("name"),
            }
        )

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for i in range(3):
            await resp.write(f'{{"n":{i}}}\n'.encode())
        await resp.write_eof()
        return resp

    async def boom(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("a bug")

    async def ws(request: web.Request) -> web.StreamResponse:
        sock = web.WebSocketResponse(protocols=("v5.channel.k8s.io",))
        await sock.prepare(request)
        async for msg in sock:
            await sock.send_bytes(b"echo:" + msg.data)
        return sock

    app.router.add_get("/stream", stream)
    app.router.add_get("/boom", boom)
    app.router.add_get("/ws", ws)
    app.router.add_post("/items/{name}", echo)
    app.router.add_route("*", "/echo/{tail:.*}", echo)
    return app


@pytest.fixture
def conn(port: int) -> Iterator[http.client.HTTPConnection]:
    with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=5)) as c:
        yield c


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    loop = ServerLoop("test-web").start()
    try:
        yield loop.serve("t", _app()).port
    finally:
        loop.stop()


def _raw(port: int, data: bytes, *, until_closed: bool = True) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        if not until_closed:
            return s.recv(65536)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_keep_alive_serves_several_requests_on_one_connection(
    conn: http.client.HTTPConnection,
) -> None:
    for i in range(3):
        conn.request("POST", f"/items/n{i}?a=1&a=%20x+y", body=b"abc")
        resp = conn.getresponse()
        got = json.loads(resp.read())
        assert resp.status == 200
        assert got["name"] == f"n{i}" and got["len"] == 3 and got["query"] == ["1", " x y"]


def test_the_path_is_matched_decoded_and_kept_raw(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", "/echo/a%2Fb%20c?x=1")
    got = json.loads(conn.getresponse().read())
    assert got["path"] == "/echo/a/b c" and got["raw"] == "/echo/a%2Fb%20c?x=1"


def test_chunked_request_bodies_are_read(port: int) -> None:
    req = (
        b"POST /items/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n"
    )
    out = _raw(port, req)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert json.loads(out.split(b"\r\n\r\n", 1)[1])["len"] == 5


def test_expect_100_continue_is_answered_before_the_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            b"POST /items/e HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert s.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        s.sendall(b"body")
        assert b'"len": 4' in s.recv(65536)


def test_a_body_over_the_limit_is_413_and_closes(port: int) -> None:
    out = _raw(port, b"POST /items/big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 413 Request Entity Too Large\r\n")
    assert b"Maximum request body size 1024 exceeded, actual body size 5000" in out


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/2.0\r\n\r\n",
        b"GET /echo/x HTTP/1.1\r\n bad: fold\r\n\r\n",
        b"POST /items/x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"POST /items/x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_requests_get_400_and_the_connection_closes(
    port: int, request_bytes: bytes
) -> None:
    out = _raw(port, request_bytes)
    assert out.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in out


def test_routes_give_404_and_405_with_allow(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", "/nowhere")
    resp = conn.getresponse()
    assert (resp.status, resp.read()) == (404, b"404: Not Found")
    conn.request("DELETE", "/items/x")
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 405 and resp.getheader("Allow") == "POST"


def test_a_handler_bug_is_a_500_not_a_dropped_connection(
    conn: http.client.HTTPConnection, capsys: pytest.CaptureFixture[str]
) -> None:
    conn.request("GET", "/boom")
    resp = conn.getresponse()
    assert resp.status == 500 and b"Server got itself in trouble" in resp.read()


def test_head_sends_the_headers_without_the_body(port: int) -> None:
    out = _raw(port, b"HEAD /stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b"\r\n\r\n")


def test_streams_are_chunked_and_end_with_the_last_chunk(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", "/stream")
    resp = conn.getresponse()
    assert resp.getheader("Transfer-Encoding") == "chunked"
    assert resp.read().splitlines() == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    conn.request("GET", "/stream")  # the connection is still usable
    assert conn.getresponse().read().count(b"\n") == 3


def test_http_1_0_closes_after_the_answer(port: int) -> None:
    out = _raw(port, b"GET /stream HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b'{"n":2}\n' in out


def _ws_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return struct.pack("!BB", 0x80 | opcode, 0x80 | len(payload)) + mask + masked


def test_websocket_handshake_subprotocol_echo_ping_and_close(port: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            (
                "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                "Sec-WebSocket-Protocol: v4.channel.k8s.io, v5.channel.k8s.io\r\n\r\n"
            ).encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()  # noqa: S324
        ).decode()
        assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
        assert f"Sec-WebSocket-Accept: {accept}".encode() in head
        assert b"Sec-WebSocket-Protocol: v5.channel.k8s.io" in head
        s.sendall(_ws_frame(b"ping!", opcode=0x9))
        assert s.recv(2 + 5) == b"\x8a\x05ping!"  # a pong with the same data
        s.sendall(_ws_frame(b"\x00hi"))
        assert s.recv(2 + 8) == b"\x82\x08echo:\x00hi"
        s.sendall(_ws_frame(struct.pack("!H", 1000), opcode=0x8))
        assert s.recv(4) == b"\x88\x02\x03\xe8"  # the close is answered


def test_websocket_without_the_upgrade_headers_is_400(conn: http.client.HTTPConnection) -> None:
    conn.request("GET", "/ws")
    resp = conn.getresponse()
    assert resp.status == 400 and b"No WebSocket UPGRADE hdr" in resp.read()


def test_stopping_a_server_with_idle_keep_alive_connections_logs_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Notebook 01 stops the webhook while the API server holds a keep-alive connection.
    loop = ServerLoop("test-web-stop").start()
    try:
        port = loop.serve("t", _app()).port
        with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=5)) as c:
            c.request("POST", "/items/x", body=b"a")
            assert c.getresponse().read()
            with caplog.at_level("ERROR", logger="asyncio"):
                loop.unserve("t")
    finally:
        loop.stop()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_a_connection_still_before_its_tls_handshake_is_closed_with_the_server() -> None:
    from irsa_lab.pki import LabCA

    ca = LabCA.create()
    loop = ServerLoop("test-web-tls").start()
    try:
        served = loop.serve("t", _app(), tls=ca.issue().server_context())
        # A client that connects and never starts TLS (a port probe, a plain-HTTP client).
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as idle:
            loop.unserve("t")
            assert idle.recv(1) == b""  # the server ended it, not the client
        # The same server answers a real TLS client with HTTP.
        served = loop.serve("t2", _app(), tls=ca.issue().server_context())
        conn = http.client.HTTPSConnection(
            "127.0.0.1", served.port, context=ca.client_context(), timeout=5
        )
        with closing(conn):
            conn.request("POST", "/items/x", body=b"abc")
            assert json.loads(conn.getresponse().read())["len"] == 3
    finally:
        loop.stop()


def test_connections_send_small_writes_at_once(port: int) -> None:
    """TCP_NODELAY on every accepted connection, though ``httpd.bind_socket`` makes the
    listening socket with proto 0 (asyncio then leaves Nagle on): with Nagle, a TLS
    server's session tickets and first answer go out as two segments and the answer
    waits for the client's delayed ACK, 40 ms on Linux, on every new connection."""
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    assert listening.proto == 0  # what bind_socket makes, and what asyncio skips
    listening.close()
    loop = ServerLoop("test-web-nodelay").start()
    try:
        served = loop.serve("t", _app())
        with closing(http.client.HTTPConnection("127.0.0.1", served.port, timeout=5)) as c:
            c.request("POST", "/items/x", body=b"a")
            assert c.getresponse().read()

            async def nodelay() -> list[int]:
                return [
                    w.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                    for w in served.server.writers
                ]

            assert loop.call(nodelay()) == [1]
    finally:
        loop.stop()
