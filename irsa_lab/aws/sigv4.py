"""Server-side verification of AWS Signature Version 4 (docs/reference/sts.md §5).

The client (botocore) builds a *canonical request* from the method, path, query,
the headers it chose to sign and a hash of the body, hashes it into a *string to
sign* and HMACs that with a key derived from the secret access key, the date, the
region and the service. The server holds the same secret, so it rebuilds the same
canonical request from what arrived and compares signatures.

The signature is computed by botocore's own signer classes (``SigV4Auth``,
``S3SigV4Auth``, ``SigV4QueryAuth``, ``S3SigV4QueryAuth``) fed with the request as
received, the secret found for its access key and its own timestamp, so the
verifier agrees with the clients by construction. What stays here is what a server
decides and a client does not: which region and payload hash the service accepts,
how long a signature lives, and which check failed (:class:`SigV4Failure`, worded
for each service by :func:`~.sigv4_errors.to_aws_error`).

:func:`verify` does the checks and returns a :class:`Verified` request (its
credential and what an ``aws-chunked`` body's chunk signatures chain from);
:func:`authenticate` returns just the credential. A request may be signed in its
``Authorization`` header or in its query string (a presigned URL,
docs/reference/sts.md §5 step 7).

Which payload hash is signed:

* STS and IAM always hash the body they received, whatever ``X-Amz-Content-SHA256``
  says, so a body swapped after signing is a signature mismatch;
* S3 signs the ``X-Amz-Content-SHA256`` it is given (``UNSIGNED-PAYLOAD``, a
  ``STREAMING-...`` mode or a hex SHA-256), then checks a hex value against the
  body (``XAmzContentSHA256Mismatch``); a presigned S3 URL signs
  ``UNSIGNED-PAYLOAD``.

botocore is imported inside the functions that need it: ``import botocore.auth``
costs a few hundred milliseconds, and the unsigned STS call never needs it.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

from .model import Account, Credential
from .sigv4_errors import FailureKind, SigV4Failure, to_aws_error

__all__ = [
    "EMPTY_SHA256",
    "MAX_PRESIGNED_EXPIRES_S",
    "MAX_SKEW_S",
    "STREAMING_SIGNED",
    "STREAMING_SIGNED_TRAILER",
    "STREAMING_UNSIGNED_TRAILER",
    "UNSIGNED_PAYLOAD",
    "FailureKind",
    "SigV4Failure",
    "Verified",
    "session_credential",
    "signing_key",
    "to_aws_error",
    "verify",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_S = 15 * 60  # AWS refuses a request whose X-Amz-Date is more than 15 min off
MAX_PRESIGNED_EXPIRES_S = 7 * 24 * 3600  # S3: X-Amz-Expires is at most a week
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_S3_PAYLOAD_MODES = frozenset(
    {UNSIGNED_PAYLOAD, STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER}
)
_QUERY_AUTH = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature")
_QUERY_PARAMETERS_REQUIRED = (
    "Query-string authentication version 4 requires the X-Amz-Algorithm, "
    "X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, "
    "and X-Amz-Expires parameters."
)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True)
class Verified:
    """A request whose signature checked out.

    ``payload`` is the payload hash that was signed (a hex SHA-256,
    ``UNSIGNED-PAYLOAD`` or a ``STREAMING-...`` mode); an ``aws-chunked`` body's
    chunk signatures chain from ``signature`` under ``scope`` and ``amz_date``.
    """

    credential: Credential
    amz_date: str
    scope: str  # "<yyyymmdd>/<region>/<service>/aws4_request"
    signature: str
    payload: str
    presigned: bool
    version: str = ALGORITHM  # "AWS" for S3's legacy Signature Version 2

    def signing_key(self) -> bytes:
        """The key this request was signed with (what chunk signatures use too)."""
        if not self.scope:  # Signature Version 2 has no scope and no signing key
            return b""
        date, region, service, _ = self.scope.split("/")
        return signing_key(self.credential.secret_access_key, date, region, service)


def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The HMAC chain ``AWS4+secret -> date -> region -> service -> aws4_request``."""
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


# --- reading what arrived ----------------------------------------------------------------
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


def _query_pairs(raw_query: str) -> list[tuple[str, str]]:
    pairs = []
    for part in raw_query.split("&"):
        if part:
            key, _, value = part.partition("=")
            pairs.append((key, value))
    return pairs


@dataclass
class _Signed:
    """What the client says it signed, from the header or from the query string."""

    credential: str
    signed_headers: list[str]
    signature: str
    amz_date: str | None
    token: str | None
    presigned: bool
    expires: str | None = None


def _from_header(value: str, hdrs: dict[str, list[str]]) -> _Signed:
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
    return _Signed(
        fields["Credential"],
        fields["SignedHeaders"].split(";"),
        fields["Signature"],
        hdrs.get("x-amz-date", [None])[0],
        hdrs.get("x-amz-security-token", [None])[0],
        presigned=False,
    )


def _from_query(pairs: list[tuple[str, str]], *, s3: bool) -> _Signed:
    params: dict[str, str] = {}
    for key, value in pairs:
        params.setdefault(unquote(key), unquote(value))
    required = ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date"]
    required += ["X-Amz-SignedHeaders"] + (["X-Amz-Expires"] if s3 else [])
    if any(not params.get(name) for name in required):
        raise SigV4Failure("malformed", _QUERY_PARAMETERS_REQUIRED, presigned=True)
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise SigV4Failure(
            "malformed",
            'X-Amz-Algorithm only supports "AWS4-HMAC-SHA256"',
            presigned=True,
        )
    return _Signed(
        params["X-Amz-Credential"],
        params["X-Amz-SignedHeaders"].split(";"),
        params["X-Amz-Signature"],
        params["X-Amz-Date"],
        params.get("X-Amz-Security-Token"),
        presigned=True,
        expires=params.get("X-Amz-Expires"),
    )


def _amz_time(stamp: str, presigned: bool) -> float:
    try:
        return datetime.strptime(stamp, AMZ_DATE_FORMAT).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise SigV4Failure(
            "malformed",
            f"X-Amz-Date {stamp!r} is not of the form YYYYMMDD'T'HHMMSS'Z'",
            presigned=presigned,
        ) from None


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime(AMZ_DATE_FORMAT)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the signature, by botocore's signers --------------------------------------------------
@functools.cache
def _signer_class(s3: bool, presigned: bool) -> type[Any]:
    """botocore's signer for this kind of request, told exactly what the client signed.

    Two things differ from signing: the headers are the ones named in SignedHeaders
    (the client chose them), and the payload hash is the one the service decided on.
    """
    from botocore import auth
    from botocore.compat import HTTPHeaders

    base = {
        (False, False): auth.SigV4Auth,
        (True, False): auth.S3SigV4Auth,
        (False, True): auth.SigV4QueryAuth,
        (True, True): auth.S3SigV4QueryAuth,
    }[s3, presigned]

    class Verifier(base):  # type: ignore[valid-type, misc]
        def __init__(
            self,
            credentials: Any,
            service: str,
            region: str,
            headers: Sequence[tuple[str, str]],
            payload_hash: str | None,
        ) -> None:
            super().__init__(credentials, service, region)
            self._received = headers
            self._payload_hash = payload_hash

        def headers_to_sign(self, request: Any) -> Any:
            header_map = HTTPHeaders()
            for name, value in self._received:
                header_map[name] = value
            return header_map

        def payload(self, request: Any) -> str:
            if self._payload_hash is not None:
                return self._payload_hash
            return str(super().payload(request))

    return Verifier


def _expected_signature(
    cred: Credential,
    signed: _Signed,
    *,
    region: str,
    service: str,
    method: str,
    path: str,
    query: str,
    headers: Sequence[tuple[str, str]],
    payload_hash: str | None,
    reencode: bool,
) -> str:
    from botocore.awsrequest import AWSRequest

    cls = _signer_class(service == "s3", signed.presigned)
    credentials = SimpleNamespace(
        access_key=cred.access_key_id, secret_key=cred.secret_access_key, token=None
    )
    signer = cls(credentials, service, region, headers, payload_hash)
    pairs = _query_pairs(query)
    if signed.presigned:
        pairs = [(k, v) for k, v in pairs if unquote(k) != "X-Amz-Signature"]
    if reencode:
        # A client that encoded the path or query otherwise than botocore still
        # signed the canonical (RFC 3986) form; botocore's params path encodes that.
        path = _s3_reencoded(path) if service == "s3" else path
        request = AWSRequest(method=method, url=f"https://h{path}", data=b"")
        request.params = [(unquote(k), unquote(v)) for k, v in pairs]
    else:
        wire_query = "&".join(f"{k}={v}" for k, v in pairs)
        url = f"https://h{path}" + (f"?{wire_query}" if wire_query else "")
        request = AWSRequest(method=method, url=url, data=b"")
    request.context["timestamp"] = signed.amz_date
    canonical = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical), request))


def _s3_reencoded(path: str) -> str:
    from urllib.parse import quote

    return quote(unquote(path), safe="/~") or "/"


def session_credential(
    account: Account,
    access_key_id: str,
    token: str | None,
    now: float,
    *,
    presigned: bool = False,
    header: str = "X-Amz-Security-Token",
) -> Credential:
    """The credential of ``access_key_id``, if ``token`` is its session token (or both are
    absent) and its session has not expired; else the :class:`SigV4Failure` that says why.

    Signature Version 4 and S3's Version 2 URLs both end here; ``header`` is how the
    request named the token.
    """
    with account.lock:
        cred = account.credentials.get(access_key_id)
    if cred is None:
        raise SigV4Failure(
            "unknown_key",
            f"No access key {access_key_id} exists in this account.",
            access_key_id=access_key_id,
            presigned=presigned,
        )
    if (cred.session_token is not None or token is not None) and (
        token is None
        or cred.session_token is None
        or not hmac.compare_digest(token.encode(), cred.session_token.encode())
    ):
        raise SigV4Failure(
            "invalid_token",
            f"The {header} sent with {access_key_id} is not the session token issued with "
            "that key.",
            access_key_id=access_key_id,
            presigned=presigned,
        )
    if cred.expiration is not None and now >= cred.expiration:
        raise SigV4Failure(
            "expired_token",
            f"The session of {access_key_id} expired at {_stamp(cred.expiration)}.",
            access_key_id=access_key_id,
            presigned=presigned,
        )
    return cred


# --- the check ---------------------------------------------------------------------------
def verify(
    account: Account,
    *,
    method: str,
    path: str,
    query: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    service: str | None = None,
    regions: Collection[str] | None = None,
) -> Verified:
    """The checked request, or :class:`SigV4Failure`.

    ``path`` is the raw (still percent-encoded) path and ``query`` the raw query
    string, as received; ``headers`` may be any case-insensitive or lower-case
    mapping; ``now`` is wall-clock epoch seconds (skew, presigned expiry and session
    expiry compare against it). ``service``, when given, is the service the request
    reached; ``regions``, when given, the regions its credential scope may name (the
    first is the one S3 says it expected). Checks, in order: where the signature is
    and its shape, the scope's region and service, access key, session token,
    session expiry, time, the payload hash S3 was given, the signature, then the
    body against a hex ``X-Amz-Content-SHA256``.
    """
    hdrs = _header_map(headers)
    pairs = _query_pairs(query)
    to_s3 = service == "s3"
    auth = hdrs.get("authorization", [""])[0]
    in_query = any(unquote(k) in _QUERY_AUTH for k, _ in pairs)
    if auth and in_query and to_s3:
        raise SigV4Failure(
            "two_mechanisms",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, "
            "Signature query string parameter or the Authorization header should be specified",
        )
    if auth:
        signed = _from_header(auth, hdrs)
    elif in_query:
        signed = _from_query(pairs, s3=to_s3)
    else:
        raise SigV4Failure("missing", "The request carries no Authorization header.")
    presigned = signed.presigned

    scope = signed.credential.split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not scope[0]:
        raise SigV4Failure(
            "malformed",
            f"Credential {signed.credential!r} is not <key>/<date>/<region>/<service>/aws4_request",
            field="Credential",
            presigned=presigned,
        )
    access_key_id, scope_date, region, scope_service, _ = scope
    if regions is not None and region not in regions:
        expected = next(iter(regions))
        raise SigV4Failure(
            "wrong_region",
            f"The credential scope names region {region!r}; this endpoint serves "
            f"{' and '.join(repr(r) for r in regions)}.",
            region=region,
            expected=expected,
            presigned=presigned,
        )
    if service is not None and scope_service != service:
        raise SigV4Failure(
            "bad_signature",
            f"Credential should be scoped to correct service: '{service}'.",
            presigned=presigned,
        )

    cred = session_credential(
        account,
        access_key_id,
        signed.token,
        now,
        presigned=presigned,
        header="X-Amz-Security-Token",
    )

    if signed.amz_date is None:
        raise SigV4Failure("malformed", "The request carries no X-Amz-Date header.")
    amz_date = signed.amz_date
    request_time = _amz_time(amz_date, presigned)
    _check_time(signed, request_time, now, s3=scope_service == "s3")
    if scope_date != amz_date[:8]:
        raise SigV4Failure(
            "bad_signature",
            f"The credential scope date {scope_date} is not the date of X-Amz-Date {amz_date}.",
            presigned=presigned,
        )

    missing = [h for h in signed.signed_headers if h not in hdrs]
    if missing or "host" not in signed.signed_headers:
        raise SigV4Failure(
            "bad_signature",
            "Signed headers are missing from the request: " + ", ".join(missing or ["host"]),
            presigned=presigned,
        )
    content_sha = hdrs.get("x-amz-content-sha256", [None])[0]
    if "x-amz-content-sha256" not in signed.signed_headers and presigned:
        content_sha = None  # a presigned URL signs UNSIGNED-PAYLOAD unless told otherwise
    payload_hash = _payload_hash(scope_service, presigned, content_sha, body)

    received = [(name, value) for name in signed.signed_headers for value in hdrs[name]]
    matched = False
    for reencode in (False, True):
        expected = _expected_signature(
            cred,
            signed,
            region=region,
            service=scope_service,
            method=method.upper(),
            path=path or "/",
            query=query,
            headers=received,
            payload_hash=payload_hash,
            reencode=reencode,
        )
        if hmac.compare_digest(expected.encode(), signed.signature.encode()):
            matched = True
            break
    if not matched:
        raise SigV4Failure(
            "bad_signature",
            f"The signature does not match one made with the secret of {access_key_id}: "
            "wrong secret key, or the request changed after signing.",
            access_key_id=access_key_id,
            presigned=presigned,
        )
    signed_payload = payload_hash if payload_hash is not None else UNSIGNED_PAYLOAD
    if scope_service == "s3" and _HEX64.fullmatch(signed_payload):
        computed = hashlib.sha256(body).hexdigest()
        if computed != signed_payload.lower():
            raise SigV4Failure(
                "content_mismatch",
                "The body's SHA-256 differs from X-Amz-Content-SHA256: the body changed "
                "after signing.",
                client=signed_payload,
                server=computed,
            )
    return Verified(
        cred,
        amz_date,
        f"{scope_date}/{region}/{scope_service}/aws4_request",
        signed.signature,
        signed_payload,
        presigned,
    )


def _check_time(signed: _Signed, request_time: float, now: float, *, s3: bool) -> None:
    if signed.presigned and s3:
        _check_presigned_expiry(signed, request_time, now)
        return
    # A header signature, and a presigned STS URL: STS ignores X-Amz-Expires and
    # honours a presigned request for the same 15 minutes as any other
    # (aws/aws-sdk-go#2167, kubernetes-sigs/aws-iam-authenticator#160).
    if abs(request_time - now) > MAX_SKEW_S:
        raise SigV4Failure(
            "skewed",
            f"The request was signed at {signed.amz_date}, more than 15 minutes from the "
            f"server's time {_stamp(now)}.",
            request_time=signed.amz_date,
            server_time=_stamp(now),
            earliest=_stamp(now - MAX_SKEW_S),
            latest=_stamp(now + MAX_SKEW_S),
            presigned=signed.presigned,
        )


def _check_presigned_expiry(signed: _Signed, request_time: float, now: float) -> None:
    text = signed.expires or ""
    if not text.lstrip("-").isdigit():
        raise SigV4Failure("malformed", "X-Amz-Expires should be a number", presigned=True)
    expires = int(text)
    if expires < 0:
        raise SigV4Failure("malformed", "X-Amz-Expires must be non-negative", presigned=True)
    if expires > MAX_PRESIGNED_EXPIRES_S:
        raise SigV4Failure(
            "malformed",
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
            presigned=True,
        )
    if request_time - now > MAX_SKEW_S:
        raise SigV4Failure(
            "not_yet_valid",
            f"The URL was signed for {signed.amz_date}, later than the server's time "
            f"{_stamp(now)} by more than 15 minutes.",
            amz_date_ms=str(int(request_time * 1000)),
            expires_at=_iso(request_time + expires),
            server_time=_iso(now),
        )
    if now > request_time + expires:
        raise SigV4Failure(
            "expired_request",
            f"The URL was signed at {signed.amz_date} for {expires} s: it expired at "
            f"{_iso(request_time + expires)}, and the server's time is {_iso(now)}.",
            expires=str(expires),
            expires_at=_iso(request_time + expires),
            server_time=_iso(now),
        )


def _payload_hash(
    service: str, presigned: bool, content_sha: str | None, body: bytes
) -> str | None:
    """The payload hash the service puts in the canonical request (None: botocore's own)."""
    if service != "s3":
        # STS and IAM hash the body they received: an X-Amz-Content-SHA256 of
        # UNSIGNED-PAYLOAD (or any other value) does not unbind the body.
        return hashlib.sha256(body).hexdigest()
    if content_sha is None:
        if presigned:
            return None  # S3SigV4QueryAuth: UNSIGNED-PAYLOAD
        raise SigV4Failure(
            "missing_content_sha",
            "An S3 request signed in its header must carry X-Amz-Content-SHA256.",
        )
    if content_sha in _S3_PAYLOAD_MODES or _HEX64.fullmatch(content_sha):
        return content_sha
    raise SigV4Failure(
        "bad_content_sha",
        f"X-Amz-Content-SHA256 {content_sha[:80]!r} is neither a hex SHA-256 nor a payload "
        "mode S3 knows.",
        value=content_sha,
        presigned=presigned,
    )
