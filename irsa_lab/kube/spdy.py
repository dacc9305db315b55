"""SPDY/3.1 framing, the part the kubelet's streaming API uses.

A kube-apiserver reaches a kubelet's ``/exec`` (and ``/attach``, ``/portforward``)
by upgrading an HTTPS request to ``SPDY/3.1`` and then multiplexing one stream per
``streamType`` (error, stdin, stdout, stderr, resize) over that connection, as
client-go's ``httpstream/spdy`` does on top of moby/spdystream. No maintained Python
SPDY library exists, so this module implements the frames from the SPDY/3 draft
(draft-mbelshe-httpbis-spdy-00 and the 3.1 changes):

- a **data frame**: ``0 | stream id (31) | flags (8) | length (24) | data``; flag
  ``FIN`` (0x01) half-closes the stream;
- a **control frame**: ``1 | version (15) = 3 | type (16) | flags (8) | length (24)``,
  with types ``SYN_STREAM`` (1), ``SYN_REPLY`` (2), ``RST_STREAM`` (3), ``SETTINGS``
  (4), ``PING`` (6), ``GOAWAY`` (7), ``HEADERS`` (8), ``WINDOW_UPDATE`` (9);
- **header blocks** (in SYN_STREAM, SYN_REPLY, HEADERS): ``count (32)`` then, per
  header, ``len (32) name len (32) value`` (several values joined by NUL), names in
  lower case, compressed with zlib primed with :data:`HEADER_DICTIONARY`; each
  direction of a connection is one zlib stream, flushed (``Z_SYNC_FLUSH``) after
  every block.

spdystream does no flow control (it ignores WINDOW_UPDATE), so neither does this.
:class:`FrameReader` parses an ``asyncio.StreamReader``; :class:`FrameWriter` encodes.
"""

from __future__ import annotations

import asyncio
import struct
import zlib
from dataclasses import dataclass, field

__all__ = [
    "DATA_FLAG_FIN",
    "FLAG_FIN",
    "FLAG_UNIDIRECTIONAL",
    "HEADER_DICTIONARY",
    "SPDY_VERSION",
    "ControlFrame",
    "DataFrame",
    "Frame",
    "FrameReader",
    "FrameWriter",
    "GoAway",
    "Ping",
    "ProtocolError",
    "RstStream",
    "SynReply",
    "SynStream",
    "decode_header_block",
    "encode_header_block",
]

SPDY_VERSION = 3
FLAG_FIN = 0x01  # control frames (SYN_STREAM, SYN_REPLY, HEADERS)
FLAG_UNIDIRECTIONAL = 0x02  # SYN_STREAM
DATA_FLAG_FIN = 0x01
TYPE_SYN_STREAM = 1
TYPE_SYN_REPLY = 2
TYPE_RST_STREAM = 3
TYPE_SETTINGS = 4
TYPE_PING = 6
TYPE_GOAWAY = 7
TYPE_HEADERS = 8
TYPE_WINDOW_UPDATE = 9
RST_PROTOCOL_ERROR = 1
RST_CANCEL = 5
GOAWAY_OK = 0
MAX_FRAME = 1 << 24

# The SPDY/3 header dictionary (draft section 2.6.10.1): the common names, each with
# a 4-byte length ("_" stands for the space of "200 OK"), then common values as one
# string.
_DICTIONARY_NAMES = (
    "options head post put delete trace accept accept-charset accept-encoding "
    "accept-language accept-ranges age allow authorization cache-control connection "
    "content-base content-encoding content-language content-length content-location "
    "content-md5 content-range content-type date etag expect expires from host if-match "
    "if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after "
    "server te trailer transfer-encoding upgrade user-agent vary via warning "
    "www-authenticate method get status 200_OK version HTTP/1.1 url public set-cookie "
    "keep-alive origin"
).split(" ")
_DICTIONARY_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417"
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently"
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error"
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct "
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,"
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,"
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)


def _dictionary() -> bytes:
    out = bytearray()
    for name in _DICTIONARY_NAMES:
        word = name.replace("_", " ").encode()
        out += struct.pack(">I", len(word)) + word
    return bytes(out) + _DICTIONARY_TAIL.encode()


HEADER_DICTIONARY = _dictionary()

Headers = dict[str, list[str]]


class ProtocolError(Exception):
    """Raised when the peer sends something that is not SPDY/3."""


@dataclass(frozen=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & DATA_FLAG_FIN)


@dataclass(frozen=True)
class SynStream:
    stream_id: int
    headers: Headers
    flags: int = 0
    associated_to: int = 0
    priority: int = 0


@dataclass(frozen=True)
class SynReply:
    stream_id: int
    headers: Headers = field(default_factory=dict)
    flags: int = 0


@dataclass(frozen=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True)
class Ping:
    id: int


@dataclass(frozen=True)
class GoAway:
    last_good_stream_id: int
    status: int = GOAWAY_OK


@dataclass(frozen=True)
class ControlFrame:
    """Any other control frame (SETTINGS, HEADERS, WINDOW_UPDATE), kept raw."""

    type: int
    flags: int
    data: bytes


Frame = DataFrame | SynStream | SynReply | RstStream | Ping | GoAway | ControlFrame


def encode_header_block(headers: Headers) -> bytes:
    """The uncompressed header block (names lower-cased, values joined by NUL)."""
    out = bytearray(struct.pack(">I", len(headers)))
    for name, values in headers.items():
        key = name.lower().encode()
        value = "\x00".join(values).encode()
        out += struct.pack(">I", len(key)) + key + struct.pack(">I", len(value)) + value
    return bytes(out)


def decode_header_block(block: bytes) -> Headers:
    """The headers of an uncompressed header block."""
    try:
        (count,) = struct.unpack_from(">I", block, 0)
        pos = 4
        headers: Headers = {}
        for _ in range(count):
            (n,) = struct.unpack_from(">I", block, pos)
            name = block[pos + 4 : pos + 4 + n].decode().lower()
            pos += 4 + n
            (n,) = struct.unpack_from(">I", block, pos)
            value = block[pos + 4 : pos + 4 + n].decode()
            pos += 4 + n
            headers.setdefault(name, []).extend(value.split("\x00"))
    except (struct.error, UnicodeDecodeError) as exc:
        raise ProtocolError(f"bad header block: {exc}") from None
    return headers


class FrameReader:
    """Frames from one connection; its header blocks share one zlib stream."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self._inflate = zlib.decompressobj(zdict=HEADER_DICTIONARY)

    def _headers(self, compressed: bytes) -> Headers:
        try:
            return decode_header_block(self._inflate.decompress(compressed))
        except zlib.error as exc:
            raise ProtocolError(f"bad header compression: {exc}") from None

    async def read(self) -> Frame | None:
        """The next frame; None at the end of the connection."""
        try:
            head = await self.reader.readexactly(8)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise ProtocolError("connection ended inside a frame header") from None
            return None
        first, flags_length = struct.unpack(">II", head)
        flags, length = flags_length >> 24, flags_length & 0xFFFFFF
        try:
            data = await self.reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise ProtocolError("connection ended inside a frame") from None
        if not first & 0x80000000:
            return DataFrame(first & 0x7FFFFFFF, data, flags)
        version, kind = (first >> 16) & 0x7FFF, first & 0xFFFF
        if version != SPDY_VERSION:
            raise ProtocolError(f"unsupported SPDY version {version}")
        if kind == TYPE_SYN_STREAM:
            sid, assoc = struct.unpack_from(">II", data, 0)
            return SynStream(
                sid & 0x7FFFFFFF,
                self._headers(data[10:]),
                flags,
                assoc & 0x7FFFFFFF,
                data[8] >> 5,
            )
        if kind == TYPE_SYN_REPLY:
            (sid,) = struct.unpack_from(">I", data, 0)
            return SynReply(sid & 0x7FFFFFFF, self._headers(data[4:]), flags)
        if kind == TYPE_HEADERS:
            # Decompressed to keep the zlib stream in step; the lab needs no trailers.
            self._headers(data[4:])
            return ControlFrame(kind, flags, data)
        if kind == TYPE_RST_STREAM:
            sid, status = struct.unpack(">II", data[:8])
            return RstStream(sid & 0x7FFFFFFF, status)
        if kind == TYPE_PING:
            return Ping(struct.unpack(">I", data[:4])[0])
        if kind == TYPE_GOAWAY:
            last, status = struct.unpack(">II", data[:8])
            return GoAway(last & 0x7FFFFFFF, status)
        return ControlFrame(kind, flags, data)


class FrameWriter:
    """Encodes frames for one connection; its header blocks share one zlib stream."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=HEADER_DICTIONARY)

    def _compressed(self, headers: Headers) -> bytes:
        block = encode_header_block(headers)
        return self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)

    @staticmethod
    def _control(kind: int, flags: int, payload: bytes) -> bytes:
        head = struct.pack(">HHI", 0x8000 | SPDY_VERSION, kind, (flags << 24) | len(payload))
        return head + payload

    def encode(self, frame: Frame) -> bytes:
        if isinstance(frame, DataFrame):
            if len(frame.data) >= MAX_FRAME:
                raise ValueError("a data frame holds less than 16 MiB")
            head = struct.pack(">II", frame.stream_id, (frame.flags << 24) | len(frame.data))
            return head + frame.data
        if isinstance(frame, SynStream):
            payload = struct.pack(
                ">IIBB", frame.stream_id, frame.associated_to, frame.priority << 5, 0
            )
            return self._control(
                TYPE_SYN_STREAM, frame.flags, payload + self._compressed(frame.headers)
            )
        if isinstance(frame, SynReply):
            payload = struct.pack(">I", frame.stream_id) + self._compressed(frame.headers)
            return self._control(TYPE_SYN_REPLY, frame.flags, payload)
        if isinstance(frame, RstStream):
            return self._control(
                TYPE_RST_STREAM, 0, struct.pack(">II", frame.stream_id, frame.status)
            )
        if isinstance(frame, Ping):
            return self._control(TYPE_PING, 0, struct.pack(">I", frame.id))
        if isinstance(frame, GoAway):
            return self._control(
                TYPE_GOAWAY, 0, struct.pack(">II", frame.last_good_stream_id, frame.status)
            )
        return self._control(frame.type, frame.flags, frame.data)
