"""Server-side verification of AWS Signature Version 4 (docs/reference/sts.md §5).

The client (botocore) builds a *canonical request* from the method, path, query,
the headers it chose to sign and a hash of the body, hashes it into a *string to
sign* and HMACs that with a key derived from the secret access key, the date, the
region and the service. The server holds the same secret, so it rebuilds the same
canonical request from what arrived and compares signatures. :func:`authenticate`
does that and returns the :class:`~irsa_lab.aws.model.Credential` that signed the
request, or raises :class:`SigV4Failure`; :func:`to_aws_error` turns a failure into
the error each service sends (STS/IAM and S3 word them differently).

Two quirks of botocore's signer matter and are reproduced:

* for every service except S3 the path is normalised (dot segments, repeated
  slashes) and percent-encoded *again* on top of its wire encoding, so ``%20`` is
  signed as ``%2520``; S3 signs the path exactly as sent;
* a request carrying ``X-Amz-Content-SHA256`` signs that header's value as the
  payload hash (S3 sends ``UNSIGNED-PAYLOAD`` or ``STREAMING-...`` there); other
  requests sign the hex SHA-256 of the body.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, unquote

from .errors import AwsError
from .model import Account, Credential

__all__ = [
    "EMPTY_SHA256",
    "MAX_SKEW_S",
    "FailureKind",
    "SigV4Failure",
    "authenticate",
    "canonical_query",
    "canonical_uri",
    "signing_key",
    "to_aws_error",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_S = 15 * 60  # AWS refuses a request whose X-Amz-Date is more than 15 min off
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

FailureKind = Literal[
    "missing",
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired_token",
    "invalid_token",
    "skewed",
    "content_mismatch",
]

_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_S3_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SigV4Failure(Exception):
    """Raised when a request's SigV4 signature cannot be accepted.

    ``kind`` says which check failed (``missing``, ``malformed``, ``unknown_key``,
    ``bad_signature``, ``expired_token``, ``invalid_token``, ``skewed``,
    ``content_mismatch``); ``message`` explains it to a learner; ``detail`` holds
    the non-secret facts :func:`to_aws_error` words the wire message from.
    """

    def __init__(self, kind: FailureKind, message: str, **detail: Any) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: FailureKind = kind
        self.message = message
        self.detail = detail


# --- canonical request pieces -----------------------------------------------------
def _remove_dot_segments(path: str) -> str:
    # RFC 3986 §5.2.4, plus dropping empty segments, as botocore does for non-S3.
    out: list[str] = []
    for seg in path.split("/"):
        if not seg or seg == ".":
            continue
        if seg == "..":
            if out:
                out.pop()
        else:
            out.append(seg)
    first = "/" if path.startswith("/") else ""
    last = "/" if path.endswith("/") and out else ""
    return first + "/".join(out) + last


def canonical_uri(raw_path: str, *, s3: bool) -> str:
    """The path as the signer saw it: S3 as sent, others normalised and re-encoded."""
    if not raw_path:
        return "/"
    if s3:
        return raw_path
    return quote(_remove_dot_segments(raw_path) or "/", safe="/~")


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


def canonical_query(raw_query: str, *, exclude: frozenset[str] = frozenset()) -> str:
    """RFC 3986-encoded ``key=value`` pairs sorted by key then value.

    Each part is decoded then re-encoded with only ``A-Za-z0-9-_.~`` left bare, so a
    client that encoded differently (``+`` for space) still canonicalises the same.
    """
    pairs = []
    for key, value in _query_pairs(raw_query):
        if unquote(key) in exclude:
            continue
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _raw_sorted_query(raw_query: str) -> str:
    # botocore sorts the wire pairs without re-encoding them; for botocore's own
    # encoding this equals canonical_query, for other clients it may not.
    return "&".join(f"{k}={v}" for k, v in sorted(_query_pairs(raw_query)))


def _trim(value: str) -> str:
    return " ".join(value.split())


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The HMAC chain ``AWS4+secret -> date -> region -> service -> aws4_request``."""
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


# --- header access ------------------------------------------------------------------
def _header_map(headers: Mapping[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    getall = getattr(headers, "getall", None)
    for name in list(headers.keys()):
        low = name.lower()
        if low in out:
            continue
        values = list(getall(name)) if getall is not None else [headers[name]]
        out[low] = [str(v) for v in values]
    return out


def _parse_authorization(value: str) -> tuple[str, list[str], str]:
    """(Credential, SignedHeaders, Signature) from an ``Authorization`` header."""
    if not value.startswith(ALGORITHM + " "):
        algorithm = value.split(" ", 1)[0]
        raise SigV4Failure(
            "malformed", f"Unsupported authorization type {algorithm!r}", field="Algorithm"
        )
    fields: dict[str, str] = {}
    for part in value[len(ALGORITHM) + 1 :].split(","):
        name, sep, val = part.strip().partition("=")
        if sep:
            fields[name.strip()] = val.strip()
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not fields.get(required):
            raise SigV4Failure(
                "malformed",
                f"Authorization header requires '{required}' parameter.",
                field=required,
            )
    signed = fields["SignedHeaders"].split(";")
    return fields["Credential"], signed, fields["Signature"]


def _amz_time(stamp: str) -> float:
    try:
        return datetime.strptime(stamp, AMZ_DATE_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise SigV4Failure(
            "malformed", f"X-Amz-Date {stamp!r} is not of the form YYYYMMDD'T'HHMMSS'Z'"
        ) from None


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime(AMZ_DATE_FORMAT)


# --- the check ----------------------------------------------------------------------
def authenticate(
    account: Account,
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    service: str | None = None,
) -> Credential:
    """The credential that signed this request, or :class:`SigV4Failure`.

    ``path`` is the raw (still percent-encoded) path and ``query`` the raw query
    string, as received; ``headers`` may be any case-insensitive or lower-case
    mapping; ``now`` is wall-clock epoch seconds (both the skew check and session
    expiry compare against it). ``service``, when given, is the service the request
    reached; a credential scope naming another service is refused. Checks, in
    order: header shape, access key, session token, session expiry, clock skew,
    signature, then the body against a hex ``X-Amz-Content-SHA256``.
    """
    hdrs = _header_map(headers)
    auth = hdrs.get("authorization", [""])[0]
    if not auth:
        raise SigV4Failure("missing", "The request carries no Authorization header.")
    credential, signed_headers, signature = _parse_authorization(auth)

    scope = credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not scope[0]:
        raise SigV4Failure(
            "malformed",
            f"Credential {credential!r} is not <key>/<date>/<region>/<service>/aws4_request",
            field="Credential",
        )
    access_key_id, scope_date, region, scope_service, _ = scope

    with account.lock:
        cred = account.credentials.get(access_key_id)
    if cred is None:
        raise SigV4Failure(
            "unknown_key",
            f"No access key {access_key_id} exists in this account.",
            access_key_id=access_key_id,
        )

    token = hdrs.get("x-amz-security-token", [None])[0]
    if cred.session_token is not None or token is not None:
        if (
            token is None
            or cred.session_token is None
            or not hmac.compare_digest(token.encode(), cred.session_token.encode())
        ):
            raise SigV4Failure(
                "invalid_token",
                f"The X-Amz-Security-Token sent with {access_key_id} is not the session "
                "token issued with that key.",
                access_key_id=access_key_id,
            )
    if cred.expiration is not None and now >= cred.expiration:
        raise SigV4Failure(
            "expired_token",
            f"The session of {access_key_id} expired at {_stamp(cred.expiration)}.",
            access_key_id=access_key_id,
        )

    amz_date = hdrs.get("x-amz-date", [None])[0]
    if amz_date is None:
        raise SigV4Failure("malformed", "The request carries no X-Amz-Date header.")
    request_time = _amz_time(amz_date)
    if abs(request_time - now) > MAX_SKEW_S:
        raise SigV4Failure(
            "skewed",
            f"The request was signed at {amz_date}, more than 15 minutes from the "
            f"server's time {_stamp(now)}.",
            request_time=amz_date,
            server_time=_stamp(now),
            earliest=_stamp(now - MAX_SKEW_S),
            latest=_stamp(now + MAX_SKEW_S),
        )
    if scope_date != amz_date[:8]:
        raise SigV4Failure(
            "bad_signature",
            f"The credential scope date {scope_date} is not the date of X-Amz-Date {amz_date}.",
        )
    if service is not None and scope_service != service:
        raise SigV4Failure(
            "bad_signature",
            f"Credential should be scoped to correct service: '{service}'.",
        )

    is_s3 = scope_service == "s3"
    missing = [h for h in signed_headers if h not in hdrs]
    if missing or "host" not in signed_headers:
        raise SigV4Failure(
            "bad_signature",
            "Signed headers are missing from the request: " + ", ".join(missing or ["host"]),
        )
    canonical_headers = "".join(
        f"{name}:{','.join(_trim(v) for v in hdrs[name])}\n" for name in signed_headers
    )
    content_sha = hdrs.get("x-amz-content-sha256", [None])[0]
    payload_hash = content_sha if content_sha is not None else hashlib.sha256(body).hexdigest()

    uris = [canonical_uri(path, s3=is_s3)]
    if is_s3:
        reencoded = quote(unquote(path), safe="/~") or "/"
        if reencoded not in uris:
            uris.append(reencoded)
    queries = [_raw_sorted_query(query)]
    if (cq := canonical_query(query)) not in queries:
        queries.append(cq)

    key = signing_key(cred.secret_access_key, scope_date, region, scope_service)
    scope_str = f"{scope_date}/{region}/{scope_service}/aws4_request"
    matched = False
    for uri in uris:
        for q in queries:
            creq = "\n".join(
                [method.upper(), uri, q, canonical_headers, ";".join(signed_headers), payload_hash]
            )
            to_sign = "\n".join(
                [ALGORITHM, amz_date, scope_str, hashlib.sha256(creq.encode()).hexdigest()]
            )
            expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
            if hmac.compare_digest(expected.encode(), signature.encode()):
                matched = True
    if not matched:
        raise SigV4Failure(
            "bad_signature",
            f"The signature does not match one made with the secret of {access_key_id}: "
            "wrong secret key, or the request changed after signing.",
            access_key_id=access_key_id,
        )
    if content_sha is not None and _HEX64.fullmatch(content_sha):
        if hashlib.sha256(body).hexdigest() != content_sha:
            raise SigV4Failure(
                "content_mismatch",
                "The body's SHA-256 differs from X-Amz-Content-SHA256.",
                client=content_sha,
                server=hashlib.sha256(body).hexdigest(),
            )
    return cred


def to_aws_error(f: SigV4Failure, service: Literal["sts", "iam", "s3"]) -> AwsError:
    """The error ``service`` answers a failed signature with, worded as AWS words it."""
    detail = {"kind": f.kind, **f.detail}
    if service == "s3":
        s3: dict[str, tuple[str, int, str]] = {
            "missing": ("AccessDenied", 403, "Access Denied"),
            "malformed": (
                "AuthorizationHeaderMalformed",
                400,
                "The authorization header is malformed; " + f.message,
            ),
            "unknown_key": (
                "InvalidAccessKeyId",
                403,
                "The AWS Access Key Id you provided does not exist in our records.",
            ),
            "bad_signature": ("SignatureDoesNotMatch", 403, _S3_SIGNATURE_MISMATCH),
            "expired_token": ("ExpiredToken", 400, "The provided token has expired."),
            "invalid_token": (
                "InvalidToken",
                400,
                "The provided token is malformed or otherwise invalid.",
            ),
            "skewed": (
                "RequestTimeTooSkewed",
                403,
                "The difference between the request time and the current time is too large.",
            ),
            "content_mismatch": (
                "XAmzContentSHA256Mismatch",
                400,
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ),
        }
        code, status, message = s3[f.kind]
        return AwsError(code, message, status, explanation=f.message, detail=detail)

    if f.kind == "skewed":
        d = f.detail
        if d["request_time"] < d["server_time"]:
            wire = (
                f"Signature expired: {d['request_time']} is now earlier than "
                f"{d['earliest']} ({d['server_time']} - 15 min.)"
            )
        else:
            wire = (
                f"Signature not yet current: {d['request_time']} is still later than "
                f"{d['latest']} ({d['server_time']} + 15 min.)"
            )
        return AwsError("SignatureDoesNotMatch", wire, 403, explanation=f.message, detail=detail)
    query: dict[str, tuple[str, int, str]] = {
        "missing": ("MissingAuthenticationToken", 403, "Request is missing Authentication Token"),
        "malformed": ("IncompleteSignature", 400, f.message),
        "unknown_key": (
            "InvalidClientTokenId",
            403,
            "The security token included in the request is invalid.",
        ),
        "invalid_token": (
            "InvalidClientTokenId",
            403,
            "The security token included in the request is invalid.",
        ),
        "bad_signature": ("SignatureDoesNotMatch", 403, _SIGNATURE_MISMATCH),
        "content_mismatch": ("SignatureDoesNotMatch", 403, _SIGNATURE_MISMATCH),
        "expired_token": (
            "ExpiredToken",
            403,
            "The security token included in the request is expired",
        ),
    }
    code, status, message = query[f.kind]
    if f.kind == "bad_signature" and f.message.startswith("Credential should be scoped"):
        message = f.message
    return AwsError(code, message, status, explanation=f.message, detail=detail)
