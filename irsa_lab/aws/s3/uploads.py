"""PutObject bodies: ``aws-chunked`` unwrapped and checksums verified.

botocore >= 1.36 sends PutObject over HTTPS as ``aws-chunked`` with
``x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and the CRC32 in a
trailer; :func:`decode_aws_chunked` unwraps that and :func:`decode_upload` checks
every checksum the request declares. Chunk signatures
(``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``) are parsed but not verified.
"""

from __future__ import annotations

import base64
import hashlib
import string
import zlib
from collections.abc import Mapping

from ..errors import AwsError

__all__ = ["decode_aws_chunked", "decode_upload"]


def _incomplete() -> AwsError:
    return AwsError(
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length HTTP header",
        400,
    )


def decode_aws_chunked(body: bytes) -> tuple[bytes, dict[str, str]]:
    """Unwrap an ``aws-chunked`` body: ``<hex size>[;chunk-signature=..]\\r\\n<data>\\r\\n``
    repeated, a ``0`` chunk, then trailer lines ``name:value``. Returns (data, trailers)."""
    out = bytearray()
    pos = 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise _incomplete()
        size_text = body[pos:eol].split(b";", 1)[0].strip()
        if (
            not size_text
            or len(size_text) > 16
            or any(chr(c) not in string.hexdigits for c in size_text)
        ):
            raise AwsError(
                "InvalidChunkSizeError",
                "Only the last chunk is allowed to have a size less than 8192 bytes",
                400,
            )
        size = int(size_text, 16)
        pos = eol + 2
        if size == 0:
            break
        if pos + size + 2 > len(body) or body[pos + size : pos + size + 2] != b"\r\n":
            raise _incomplete()
        out += body[pos : pos + size]
        pos += size + 2
    trailers: dict[str, str] = {}
    for line in body[pos:].split(b"\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise _incomplete()
        trailers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return bytes(out), trailers


_CHECKSUMS = {
    "x-amz-checksum-crc32": ("CRC32", lambda d: zlib.crc32(d).to_bytes(4, "big")),
    "x-amz-checksum-sha1": ("SHA1", lambda d: hashlib.sha1(d, usedforsecurity=False).digest()),
    "x-amz-checksum-sha256": ("SHA256", lambda d: hashlib.sha256(d).digest()),
}


def decode_upload(headers: Mapping[str, str], body: bytes) -> bytes:
    """The object bytes of a PutObject, with aws-chunked removed and checksums checked.

    ``headers`` may be any mapping; names are compared without regard to case.
    """
    headers = {k.lower(): v for k, v in headers.items()}
    sha = headers.get("x-amz-content-sha256", "")
    encoding = headers.get("content-encoding", "")
    checks: dict[str, str] = {k: v for k, v in headers.items() if k in _CHECKSUMS}
    data = body
    if sha.startswith("STREAMING-") or "aws-chunked" in encoding.lower():
        data, trailers = decode_aws_chunked(body)
        checks.update({k: v for k, v in trailers.items() if k in _CHECKSUMS})
        declared = headers.get("x-amz-decoded-content-length")
        if declared is not None and (not declared.isdigit() or int(declared) != len(data)):
            raise _incomplete()
    for name, value in checks.items():
        label, digest = _CHECKSUMS[name]
        if base64.b64encode(digest(data)).decode() != value.strip():
            raise AwsError(
                "BadDigest",
                f"The {label} you specified did not match the calculated checksum.",
                400,
            )
    md5 = headers.get("content-md5")
    if md5 is not None:
        if (
            base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            != md5.strip()
        ):
            raise AwsError(
                "BadDigest", "The Content-MD5 you specified did not match what we received.", 400
            )
    return data
