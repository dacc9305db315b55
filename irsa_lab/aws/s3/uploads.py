"""PutObject bodies: ``aws-chunked`` unwrapped, chunk signatures and checksums verified.

botocore >= 1.36 sends PutObject over HTTPS as ``aws-chunked`` with
``x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and the CRC32 in a
trailer; :func:`decode_aws_chunked` unwraps that and :func:`decode_upload` checks
every checksum the request declares.

Other clients sign every chunk (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``, S3 API
Reference, "Signature Calculations for the Authorization Header: Transferring Payload
in Multiple Chunks"): the first chunk's signature chains from the request's own
signature (the *seed*), each next one from the one before, and the final empty chunk
closes the chain, so no chunk can be changed, dropped or reordered. botocore has no
signer for this, so :func:`chunk_signature` is the lab's own, checked against the
published example. With ``-TRAILER`` the trailing headers are signed last
("Signature calculations for trailing headers").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
import zlib
from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import AwsError
from ..sigv4 import (
    EMPTY_SHA256,
    STREAMING_SIGNED,
    STREAMING_SIGNED_TRAILER,
    SigV4Failure,
    to_aws_error,
)

__all__ = ["ChunkSigning", "chunk_signature", "decode_aws_chunked", "decode_upload"]


@dataclass(frozen=True)
class ChunkSigning:
    """What a signed ``aws-chunked`` body's signatures chain from.

    ``seed`` is the request's own signature, ``key`` its signing key, ``amz_date``
    its ``X-Amz-Date`` and ``scope`` its credential scope
    (``<yyyymmdd>/<region>/s3/aws4_request``).
    """

    seed: str
    key: bytes
    amz_date: str
    scope: str


def chunk_signature(signing: ChunkSigning, previous: str, chunk: bytes) -> str:
    """The signature of ``chunk`` following the one whose signature is ``previous``.

    String to sign: ``AWS4-HMAC-SHA256-PAYLOAD``, the date, the scope, the previous
    signature, the SHA-256 of nothing and the SHA-256 of the chunk, one per line.
    """
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            signing.amz_date,
            signing.scope,
            previous,
            EMPTY_SHA256,
            hashlib.sha256(chunk).hexdigest(),
        ]
    )
    return hmac.new(signing.key, to_sign.encode(), hashlib.sha256).hexdigest()


def _trailer_signature(signing: ChunkSigning, previous: str, trailers: str) -> str:
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-TRAILER",
            signing.amz_date,
            signing.scope,
            previous,
            hashlib.sha256(trailers.encode()).hexdigest(),
        ]
    )
    return hmac.new(signing.key, to_sign.encode(), hashlib.sha256).hexdigest()


def _signature_mismatch(why: str) -> AwsError:
    return to_aws_error(SigV4Failure("bad_signature", why), "s3")


def _incomplete() -> AwsError:
    return AwsError(
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length HTTP header",
        400,
    )


def decode_aws_chunked(body: bytes) -> tuple[bytes, dict[str, str]]:
    """Unwrap an ``aws-chunked`` body: ``<hex size>[;chunk-signature=..]\\r\\n<data>\\r\\n``
    repeated, a ``0`` chunk, then trailer lines ``name:value``. Returns (data, trailers)."""
    chunks, trailers, _ = _parse_aws_chunked(body)
    return b"".join(data for data, _ in chunks), trailers


def _chunk_signature_of(header: bytes) -> str | None:
    for ext in header.split(b";")[1:]:
        name, _, value = ext.partition(b"=")
        if name.strip() == b"chunk-signature":
            return value.strip().decode("latin-1")
    return None


def _parse_aws_chunked(
    body: bytes,
) -> tuple[list[tuple[bytes, str | None]], dict[str, str], str]:
    """Each chunk with its chunk-signature, the trailers, and the trailers' own text
    (``name:value\\n`` each, as the trailer signature covers them)."""
    out: list[tuple[bytes, str | None]] = []
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
        signature = _chunk_signature_of(body[pos:eol])
        pos = eol + 2
        if size == 0:
            out.append((b"", signature))
            break
        if pos + size + 2 > len(body) or body[pos + size : pos + size + 2] != b"\r\n":
            raise _incomplete()
        out.append((body[pos : pos + size], signature))
        pos += size + 2
    trailers: dict[str, str] = {}
    signed_text = ""
    for line in body[pos:].split(b"\r\n"):
        if not line.strip():
            continue
        name, sep, value = line.partition(b":")
        if not sep:
            raise _incomplete()
        key, text = name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")
        trailers[key] = text
        if key != "x-amz-trailer-signature":
            signed_text += f"{key}:{text}\n"
    return out, trailers, signed_text


def _verify_chunks(
    chunks: list[tuple[bytes, str | None]],
    trailers: dict[str, str],
    trailer_text: str,
    signing: ChunkSigning,
    *,
    with_trailer: bool,
) -> None:
    previous = signing.seed
    for number, (data, given) in enumerate(chunks, 1):
        expected = chunk_signature(signing, previous, data)
        if given is None or not hmac.compare_digest(expected, given):
            raise _signature_mismatch(
                f"Chunk {number} ({len(data)} bytes) carries "
                + ("no chunk-signature" if given is None else f"chunk-signature {given[:16]}...")
                + ", not the one that chains from the request's signature: the body "
                "changed after signing, or was signed with another key."
            )
        previous = expected
    if with_trailer:
        given = trailers.get("x-amz-trailer-signature")
        expected = _trailer_signature(signing, previous, trailer_text)
        if given is None or not hmac.compare_digest(expected, given):
            raise _signature_mismatch(
                "The trailing headers' x-amz-trailer-signature does not chain from the "
                "last chunk's signature."
            )


_CHECKSUMS = {
    "x-amz-checksum-crc32": ("CRC32", lambda d: zlib.crc32(d).to_bytes(4, "big")),
    "x-amz-checksum-sha1": ("SHA1", lambda d: hashlib.sha1(d, usedforsecurity=False).digest()),
    "x-amz-checksum-sha256": ("SHA256", lambda d: hashlib.sha256(d).digest()),
}


def decode_upload(
    headers: Mapping[str, str], body: bytes, signing: ChunkSigning | None = None
) -> bytes:
    """The object bytes of a PutObject, with aws-chunked removed and checksums checked.

    ``headers`` may be any mapping; names are compared without regard to case. A body
    sent as ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER]`` has every chunk signature
    checked against ``signing`` (S3's ``SignatureDoesNotMatch`` otherwise; without
    ``signing`` such a body is refused the same way).
    """
    headers = {k.lower(): v for k, v in headers.items()}
    sha = headers.get("x-amz-content-sha256", "")
    encoding = headers.get("content-encoding", "")
    checks: dict[str, str] = {k: v for k, v in headers.items() if k in _CHECKSUMS}
    data = body
    if sha.startswith("STREAMING-") or "aws-chunked" in encoding.lower():
        chunks, trailers, trailer_text = _parse_aws_chunked(body)
        if sha in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER):
            if signing is None:
                raise _signature_mismatch("Signed chunks arrived without a signed request.")
            with_trailer = sha == STREAMING_SIGNED_TRAILER
            _verify_chunks(chunks, trailers, trailer_text, signing, with_trailer=with_trailer)
        data = b"".join(chunk for chunk, _ in chunks)
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
