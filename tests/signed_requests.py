"""Raw requests signed by botocore's own signers, for any region and any payload mode.

The signing tests need what a boto3 client will not send on its own: a scope for
another region, an ``X-Amz-Content-SHA256`` the body does not match, a body swapped
after signing, chunk signatures chained by hand. :func:`signed` signs with botocore
(``SigV4Auth``, or ``S3SigV4Auth`` when ``s3=True``); :func:`send` puts the bytes on
the wire as they are; :func:`get` fetches a (presigned) URL.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ssl
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from irsa_lab.aws.model import Credential

__all__ = ["Reply", "chunk_signature", "get", "send", "signed", "signed_chunks"]

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class Reply:
    """An HTTP answer: status, lower-case headers, body, and the S3/STS error fields."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def error(self, name: str) -> str | None:
        """The text of element ``name`` of an S3 ``Error`` or a query ``ErrorResponse``."""
        root = ET.fromstring(self.body)  # noqa: S314 - the lab's own reply
        found = root.find(f".//{{*}}{name}")
        if found is None:
            found = root.find(f".//{name}")
        return None if found is None else found.text

    @property
    def code(self) -> str | None:
        return self.error("Code")

    @property
    def message(self) -> str | None:
        return self.error("Message")


def signed(
    cred: Credential,
    *,
    service: str,
    region: str,
    method: str,
    url: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    s3: bool = False,
) -> AWSRequest:
    """``method url`` signed by botocore for ``service`` in ``region``."""
    req = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer = (S3SigV4Auth if s3 else SigV4Auth)(
        Credentials(cred.access_key_id, cred.secret_access_key, cred.session_token),
        service,
        region,
    )
    signer.add_auth(req)
    return req


def send(req: AWSRequest, ca_file: Path, body: bytes | None = None) -> Reply:
    """Send ``req`` as signed, with ``body`` in place of the signed body when given."""
    parts = urlsplit(req.url)
    data = req.body if body is None else body
    if isinstance(data, str):
        data = data.encode()
    data = data or b""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=ctx, timeout=10)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.putrequest(req.method, target, skip_host=False, skip_accept_encoding=True)
        for name, value in req.headers.items():
            if name.lower() not in ("host", "content-length"):
                conn.putheader(name, value)
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def get(url: str, ca_file: Path, headers: dict[str, str] | None = None) -> Reply:
    """GET ``url`` (a presigned URL) as a browser or ``curl`` would."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - https only
    try:
        with urllib.request.urlopen(request, context=ctx, timeout=10) as resp:  # noqa: S310
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return Reply(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read())


def chunk_signature(key: bytes, amz_date: str, scope: str, previous: str, chunk: bytes) -> str:
    """A chunk signature as the S3 API Reference ("Transferring Payload in Multiple
    Chunks") defines it, computed on the client's side of the test."""
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256-PAYLOAD",
            amz_date,
            scope,
            previous,
            EMPTY_SHA256,
            hashlib.sha256(chunk).hexdigest(),
        ]
    )
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signed_chunks(
    cred: Credential,
    *,
    region: str,
    url: str,
    chunks: list[bytes],
    signatures: list[str] | None = None,
) -> tuple[AWSRequest, bytes]:
    """A PutObject sent as ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``: the request signed by
    botocore (the seed) and the ``aws-chunked`` body, each chunk signed in turn and a
    final empty chunk. ``signatures`` replaces the chunk signatures (to forge them)."""
    data_length = sum(len(c) for c in chunks)
    req = signed(
        cred,
        service="s3",
        region=region,
        method="PUT",
        url=url,
        headers={
            "X-Amz-Content-SHA256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "Content-Encoding": "aws-chunked",
            "X-Amz-Decoded-Content-Length": str(data_length),
        },
    )
    seed = req.headers["Authorization"].rsplit("Signature=", 1)[1]
    amz_date = req.headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{region}/s3/aws4_request"
    key = _signing_key(cred.secret_access_key, amz_date[:8], region, "s3")
    body = b""
    previous = seed
    for number, chunk in enumerate([*chunks, b""]):
        signature = chunk_signature(key, amz_date, scope, previous, chunk)
        previous = signature
        if signatures is not None:
            signature = signatures[number]
        body += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n"
    return req, body
