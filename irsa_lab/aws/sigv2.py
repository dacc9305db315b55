"""S3's legacy presigned URLs, signed with Signature Version 2 in the query string.

botocore presigns S3 URLs with Signature Version 2 (``AWSAccessKeyId``,
``Signature``, ``Expires``) when no signature version is configured and the region
still supports it, as ``eu-west-1`` does; so ``aws s3 presign`` and boto3's
``generate_presigned_url`` hand a learner such a URL by default. The signature is an
HMAC-SHA1 over the method, ``Content-MD5``, ``Content-Type``, the expiry time, the
``x-amz-*`` parameters and the path (S3 User Guide, "Authenticating Requests Using
Query Parameters", Signature Version 2); botocore's ``HmacV1QueryAuth`` computes it
here with the found secret, so the check agrees with the client by construction.

A URL past its ``Expires`` is S3's ``AccessDenied``, "Request has expired", with the
``Expires`` and ``ServerTime`` elements.
"""

from __future__ import annotations

import functools
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

from .model import Account
from .sigv4 import UNSIGNED_PAYLOAD, SigV4Failure, Verified, session_credential

__all__ = ["ALGORITHM", "is_presigned_v2", "verify_presigned_v2"]

ALGORITHM = "AWS"  # what S3 calls Signature Version 2 (s3:signatureversion)
_V2_PARAMS = ("AWSAccessKeyId", "Signature", "Expires")


def _params(raw_query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            params.setdefault(unquote(key), unquote(value))
    return params


def is_presigned_v2(raw_query: str, headers: Mapping[str, str]) -> bool:
    """Whether a request carries a Signature Version 2 signature in its query string."""
    if any(k.lower() == "authorization" for k in headers):
        return False
    params = _params(raw_query)
    return "AWSAccessKeyId" in params and "X-Amz-Algorithm" not in params


@functools.cache
def _signer_class() -> type[Any]:
    from botocore.auth import HmacV1QueryAuth

    class Verifier(HmacV1QueryAuth):
        """botocore's SigV2 query signer, dated by the URL's own ``Expires``."""

        def __init__(self, credentials: Any, expires_at: str) -> None:
            super().__init__(credentials)
            self._expires_at = expires_at

        def _get_date(self) -> str:
            return self._expires_at

    return Verifier


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def verify_presigned_v2(
    account: Account, *, method: str, path: str, query: str, now: float
) -> Verified:
    """The checked request, or :class:`~.sigv4.SigV4Failure` worded for S3."""
    from botocore.compat import HTTPHeaders
    from botocore.compat import urlsplit as split_url

    params = _params(query)
    if any(not params.get(name) for name in _V2_PARAMS):
        raise SigV4Failure(
            "missing", "A Signature Version 2 URL needs AWSAccessKeyId, Signature and Expires."
        )
    key_id, signature, expires_at = (params[name] for name in _V2_PARAMS)
    if not expires_at.isdigit():
        raise SigV4Failure("missing", f"Expires {expires_at!r} is not a time in epoch seconds.")
    cred = session_credential(
        account, key_id, params.get("x-amz-security-token"), now, header="x-amz-security-token"
    )
    if now > int(expires_at):
        raise SigV4Failure(
            "expired_request",
            f"The URL expired at {_iso(int(expires_at))}; the server's time is {_iso(now)}.",
            expires_at=_iso(int(expires_at)),
            server_time=_iso(now),
            version=ALGORITHM,
        )
    headers = HTTPHeaders()
    for name, value in params.items():
        low = name.lower()
        if low.startswith("x-amz-") or low in ("content-md5", "content-type"):
            headers[low] = value
    credentials = SimpleNamespace(access_key=key_id, secret_key=cred.secret_access_key, token=None)
    signer = _signer_class()(credentials, expires_at)
    expected = signer.get_signature(method.upper(), split_url(f"https://h{path}?{query}"), headers)
    if not hmac.compare_digest(str(expected).encode(), signature.encode()):
        raise SigV4Failure(
            "bad_signature",
            f"The signature does not match one made with the secret of {key_id}: wrong "
            "secret key, or the URL changed after signing.",
            access_key_id=key_id,
        )
    return Verified(cred, "", "", signature, UNSIGNED_PAYLOAD, True, ALGORITHM)
