"""A small S3: ListBuckets, ListObjects(V2), Get/Head/Put/DeleteObject, HeadBucket.

Requests are path-style (``https://127.0.0.1:PORT/<bucket>/<key>``), which is what
botocore sends for an IP endpoint URL. Every request is SigV4-verified (service
``s3``) and then authorised the way the lab teaches: the account administrator
may do anything; an assumed-role session may do what its role's permission
policies allow, judged by :func:`~irsa_lab.aws.policy.evaluate`. A refusal is S3's
``AccessDenied`` with the message S3 has sent for same-account requests since
August 2024 ("User: <arn> is not authorized to perform: s3:PutObject on resource:
"<arn>" because no identity-based policy allows the s3:PutObject action"), so the
learner sees which permission was missing; boto3 still raises code ``AccessDenied``.

Upload bodies: botocore >= 1.36 sends PutObject over HTTPS as ``aws-chunked``
with ``x-amz-content-sha256: STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and the CRC32 in
a trailer; :func:`decode_aws_chunked` unwraps that and the checksum is verified.
Chunk signatures (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``) are parsed but not
verified.

The pure core (:func:`route`, :func:`authorize_s3`, :func:`list_objects`,
:func:`put_object`, ...) works on an :class:`Account`; :func:`make_app` is the
thin HTTP layer. Buckets live in ``account.buckets[name]`` as
``{"created": epoch, "objects": {key: (bytes, last_modified)}, "content_types": {key: str}}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import string
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, quote, unquote
from xml.sax.saxutils import escape

from aiohttp import web

from ..clock import Clock, iso8601_ms
from ..constants import REGION, S3_NS, S3_OWNER_DISPLAY_NAME, S3_OWNER_ID
from ..trace import Trace
from .errors import AwsError, s3_error_xml
from .model import Account, Credential
from .policy import RequestContext, evaluate
from .sigv4 import SigV4Failure, authenticate, to_aws_error

__all__ = [
    "ListPage",
    "S3Call",
    "StoredObject",
    "authorize_s3",
    "decode_aws_chunked",
    "decode_upload",
    "delete_object",
    "get_object",
    "list_buckets",
    "list_objects",
    "make_app",
    "put_object",
    "route",
]

MAX_BODY = 16 * 1024 * 1024  # the lab's objects are small; bigger uploads are refused
DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what S3 stores when none is given


# --- routing ---------------------------------------------------------------------------
@dataclass(frozen=True)
class S3Call:
    """One S3 request, understood: the API operation and the IAM action it needs."""

    operation: str  # "ListObjectsV2"
    action: str  # "s3:ListBucket"
    resource: str  # "arn:aws:s3:::bucket" or "arn:aws:s3:::bucket/key" or "*"
    bucket: str | None = None
    key: str | None = None


# Query names that select another API on the same path (?acl, ?policy, ...). Only
# ?location is answered; the others get a clear "not implemented here".
_BUCKET_QUERY_OK = {
    "list-type",
    "prefix",
    "delimiter",
    "max-keys",
    "continuation-token",
    "start-after",
    "encoding-type",
    "fetch-owner",
    "marker",
    "location",
    "x-id",
}
_OBJECT_QUERY_OK = {"x-id", "versionId", "partNumber"} | {
    f"response-{h}"
    for h in (
        "cache-control",
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-type",
        "expires",
    )
}
_ROOT_QUERY_OK = {"max-buckets", "continuation-token", "prefix", "bucket-region", "x-id"}


def _not_here(what: str) -> AwsError:
    return AwsError("InvalidRequest", f"The irsa-lab S3 stand-in does not implement {what}.", 400)


def _method_not_allowed() -> AwsError:
    return AwsError(
        "MethodNotAllowed", "The specified method is not allowed against this resource.", 405
    )


def route(method: str, raw_path: str, query: Mapping[str, str]) -> S3Call:
    """Which S3 operation a path-style request is, or the error S3 gives."""
    path = raw_path.split("?", 1)[0]
    trimmed = path[1:] if path.startswith("/") else path
    bucket_raw, slash, key_raw = trimmed.partition("/")
    bucket = unquote(bucket_raw)
    key = unquote(key_raw)
    method = method.upper()
    if not bucket:
        unknown = set(query) - _ROOT_QUERY_OK
        if unknown:
            raise _not_here(f"?{sorted(unknown)[0]} on the service endpoint")
        if method == "GET":
            return S3Call("ListBuckets", "s3:ListAllMyBuckets", "*")
        raise _method_not_allowed()
    bucket_arn = f"arn:aws:s3:::{bucket}"
    if not key:
        unknown = set(query) - _BUCKET_QUERY_OK
        if unknown:
            raise _not_here(f"?{sorted(unknown)[0]} on a bucket")
        if method == "GET" and "location" in query:
            return S3Call("GetBucketLocation", "s3:GetBucketLocation", bucket_arn, bucket)
        if method == "GET":
            op = "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
            return S3Call(op, "s3:ListBucket", bucket_arn, bucket)
        if method == "HEAD":
            return S3Call("HeadBucket", "s3:ListBucket", bucket_arn, bucket)
        if method in ("PUT", "DELETE"):
            raise _not_here(f"{'CreateBucket' if method == 'PUT' else 'DeleteBucket'}")
        raise _method_not_allowed()
    unknown = set(query) - _OBJECT_QUERY_OK
    if unknown:
        raise _not_here(f"?{sorted(unknown)[0]} on an object")
    object_arn = f"{bucket_arn}/{key}"
    ops = {
        "GET": ("GetObject", "s3:GetObject"),
        "HEAD": ("HeadObject", "s3:GetObject"),
        "PUT": ("PutObject", "s3:PutObject"),
        "DELETE": ("DeleteObject", "s3:DeleteObject"),
    }
    if method not in ops:
        raise _method_not_allowed()
    op, action = ops[method]
    return S3Call(op, action, object_arn, bucket, key)


# --- authorisation -----------------------------------------------------------------------
def authorize_s3(
    account: Account, cred: Credential, call: S3Call, keys: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Allow the administrator; judge a role session by its role's permission policies.

    Returns the facts the trace shows (which statement allowed it); raises S3's
    ``AccessDenied`` naming the caller, the action and the resource otherwise.
    """
    if cred.kind == "user":
        return {"decision": "allowed", "why": "account administrator (long-term user keys)"}
    policies = account.policies_of_role(cred.role_name) if cred.role_name else []
    ctx = RequestContext(action=call.action, resource=call.resource, keys=dict(keys or {}))
    decision = evaluate(policies, ctx)
    if decision.allowed:
        return {"decision": "allowed", "why": decision.verdict()}
    resource = call.resource if call.resource != "*" else "*"
    if decision.reason == "ExplicitDeny":
        tail = "with an explicit deny in an identity-based policy"
    else:
        tail = f"because no identity-based policy allows the {call.action} action"
    raise AwsError(
        "AccessDenied",
        f'User: {cred.arn} is not authorized to perform: {call.action} on resource: "{resource}" {tail}',
        403,
        explanation=decision.explain(),
        detail={"reason": decision.reason, "verdict": decision.verdict()},
    )


# --- objects -----------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredObject:
    """An object with the metadata S3 reports for it."""

    key: str
    data: bytes
    last_modified: float
    content_type: str

    @property
    def etag(self) -> str:
        """The quoted MD5 hex digest, as S3 gives for single-part uploads."""
        return f'"{hashlib.md5(self.data, usedforsecurity=False).hexdigest()}"'

    @property
    def crc32(self) -> str:
        """base64 of the big-endian CRC32, the form of ``x-amz-checksum-crc32``."""
        return base64.b64encode(zlib.crc32(self.data).to_bytes(4, "big")).decode()


def _no_such_bucket(bucket: str) -> AwsError:
    return AwsError(
        "NoSuchBucket",
        "The specified bucket does not exist",
        404,
        detail={"resource": f"/{bucket}"},
    )


def _bucket(account: Account, name: str) -> dict[str, Any]:
    b = account.buckets.get(name)
    if b is None:
        raise _no_such_bucket(name)
    return b


def _stored(b: dict[str, Any], key: str) -> StoredObject | None:
    entry = b["objects"].get(key)
    if entry is None:
        return None
    data, modified = entry[0], entry[1]
    ctype = b.get("content_types", {}).get(key, DEFAULT_CONTENT_TYPE)
    return StoredObject(key, bytes(data), float(modified), ctype)


def list_buckets(account: Account, prefix: str = "") -> list[tuple[str, float]]:
    """(name, creation time) of every bucket, by name."""
    with account.lock:
        return sorted(
            (n, float(b["created"])) for n, b in account.buckets.items() if n.startswith(prefix)
        )


def get_object(account: Account, bucket: str, key: str) -> StoredObject | None:
    """The object, or None when the key does not exist (NoSuchBucket if the bucket does not)."""
    with account.lock:
        return _stored(_bucket(account, bucket), key)


def put_object(
    account: Account, bucket: str, key: str, data: bytes, content_type: str | None = None
) -> StoredObject:
    """Store ``data`` under ``key`` (replacing any object there)."""
    if len(key.encode()) > 1024:
        raise AwsError("KeyTooLongError", "Your key is too long", 400)
    with account.lock:
        b = _bucket(account, bucket)
        now = account.clock.now()
        b["objects"][key] = (bytes(data), now)
        b.setdefault("content_types", {})[key] = content_type or DEFAULT_CONTENT_TYPE
        stored = _stored(b, key)
    assert stored is not None
    return stored


def delete_object(account: Account, bucket: str, key: str) -> None:
    """Remove ``key``; deleting a missing key succeeds, as in S3."""
    with account.lock:
        b = _bucket(account, bucket)
        b["objects"].pop(key, None)
        b.get("content_types", {}).pop(key, None)


@dataclass(frozen=True)
class ListPage:
    """One page of a listing: objects, common prefixes, and where to go on."""

    contents: list[StoredObject]
    common_prefixes: list[str]
    truncated: bool
    next_token: str | None  # continuation token (V2)
    next_marker: str | None  # last key or prefix on the page (V1 NextMarker)


def _encode_token(kind: str, value: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}{value}".encode()).decode()


def _decode_token(token: str) -> tuple[str, str]:
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text or text[0] not in "KP":
        raise AwsError("InvalidArgument", "The continuation token provided is incorrect", 400)
    return text[0], text[1:]


def list_objects(
    account: Account,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    max_keys: int = 1000,
    start_after: str = "",
    continuation_token: str | None = None,
) -> ListPage:
    """Keys in UTF-8 byte order, rolled up at ``delimiter`` into common prefixes."""
    after_kind, after = "K", start_after
    if continuation_token is not None:
        after_kind, after = _decode_token(continuation_token)
    with account.lock:
        b = _bucket(account, bucket)
        keys = sorted(b["objects"], key=lambda k: k.encode())
        objects = {k: _stored(b, k) for k in keys}
    contents: list[StoredObject] = []
    prefixes: list[str] = []
    last: tuple[str, str] | None = None
    truncated = False
    for key in keys:
        if not key.startswith(prefix):
            continue
        if after and key.encode() <= after.encode():
            continue
        if after_kind == "P" and after and key.startswith(after):
            continue
        rolled = None
        if delimiter:
            rest = key[len(prefix) :]
            if delimiter in rest:
                rolled = prefix + rest.split(delimiter, 1)[0] + delimiter
        if rolled is not None and prefixes and prefixes[-1] == rolled:
            continue
        if len(contents) + len(prefixes) >= max_keys:
            truncated = True
            break
        if rolled is not None:
            prefixes.append(rolled)
            last = ("P", rolled)
        else:
            obj = objects[key]
            assert obj is not None
            contents.append(obj)
            last = ("K", key)
    next_token = _encode_token(*last) if truncated and last else None
    next_marker = last[1] if truncated and last else None
    return ListPage(contents, prefixes, truncated, next_token, next_marker)


# --- aws-chunked ---------------------------------------------------------------------------
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


# --- XML ----------------------------------------------------------------------------------
def _el(name: str, value: object) -> str:
    return f"<{name}>{escape(str(value))}</{name}>"


def _owner() -> str:
    return f"<Owner>{_el('ID', S3_OWNER_ID)}{_el('DisplayName', S3_OWNER_DISPLAY_NAME)}</Owner>"


def _xml(root: str, inner: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{S3_NS}">{inner}</{root}>'
    ).encode()


def _enc(value: str, url: bool) -> str:
    # With encoding-type=url botocore unquotes Key, Prefix, Delimiter, StartAfter.
    return quote(value, safe="/") if url else value


def _list_buckets_xml(account: Account, query: Mapping[str, str]) -> bytes:
    prefix = query.get("prefix", "")
    names = list_buckets(account, prefix)
    token = query.get("continuation-token")
    if token:
        names = [n for n in names if n[0] > token]
    limit = _int_arg(query, "max-buckets", 10000, 1, 10000)
    page, more = names[:limit], len(names) > limit
    buckets = "".join(
        f"<Bucket>{_el('Name', n)}{_el('CreationDate', iso8601_ms(created))}"
        f"{_el('BucketRegion', REGION)}</Bucket>"
        for n, created in page
    )
    inner = _owner() + f"<Buckets>{buckets}</Buckets>"
    if more:
        inner += _el("ContinuationToken", page[-1][0])
    if prefix:
        inner += _el("Prefix", prefix)
    return _xml("ListAllMyBucketsResult", inner)


def _int_arg(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise AwsError(
            "InvalidArgument", f"Provided {name} not an integer or within integer range", 400
        )
    return int(raw)


def _list_objects_xml(account: Account, bucket: str, query: Mapping[str, str], v2: bool) -> bytes:
    encoding = query.get("encoding-type")
    if encoding is not None and encoding != "url":
        raise AwsError("InvalidArgument", "Invalid Encoding Method specified in Request", 400)
    url = encoding == "url"
    prefix = query.get("prefix", "")
    delimiter = query.get("delimiter", "")
    max_keys = _int_arg(query, "max-keys", 1000, 0, 2**31 - 1)
    token = query.get("continuation-token") if v2 else None
    start_after = query.get("start-after", "") if v2 else query.get("marker", "")
    page = list_objects(
        account,
        bucket,
        prefix=prefix,
        delimiter=delimiter,
        max_keys=min(max_keys, 1000),
        start_after=start_after,
        continuation_token=token or None,
    )
    show_owner = (not v2) or query.get("fetch-owner") == "true"
    contents = "".join(
        "<Contents>"
        + _el("Key", _enc(o.key, url))
        + _el("LastModified", iso8601_ms(o.last_modified))
        + _el("ETag", o.etag)
        + _el("ChecksumAlgorithm", "CRC32")
        + _el("ChecksumType", "FULL_OBJECT")
        + _el("Size", len(o.data))
        + (_owner() if show_owner else "")
        + _el("StorageClass", "STANDARD")
        + "</Contents>"
        for o in page.contents
    )
    common = "".join(
        f"<CommonPrefixes>{_el('Prefix', _enc(p, url))}</CommonPrefixes>"
        for p in page.common_prefixes
    )
    inner = (
        _el("IsTruncated", "true" if page.truncated else "false")
        + contents
        + _el("Name", bucket)
        + _el("Prefix", _enc(prefix, url))
        + (_el("Delimiter", _enc(delimiter, url)) if delimiter else "")
        + _el("MaxKeys", max_keys)
        + common
        + (_el("EncodingType", "url") if url else "")
    )
    if v2:
        inner += _el("KeyCount", len(page.contents) + len(page.common_prefixes))
        if token:
            inner += _el("ContinuationToken", token)
        if page.next_token:
            inner += _el("NextContinuationToken", page.next_token)
        if start_after:
            inner += _el("StartAfter", _enc(start_after, url))
    else:
        inner += _el("Marker", _enc(start_after, url))
        if page.truncated and delimiter and page.next_marker:
            inner += _el("NextMarker", _enc(page.next_marker, url))
    return _xml("ListBucketResult", inner)


# --- the HTTP layer -----------------------------------------------------------------------------
def _http_date(ts: float) -> str:
    return formatdate(ts, usegmt=True)


def _object_headers(obj: StoredObject) -> dict[str, str]:
    return {
        "Content-Type": obj.content_type,
        "ETag": obj.etag,
        "Last-Modified": _http_date(obj.last_modified),
        "Accept-Ranges": "bytes",
    }


def _range(spec: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single ``bytes=a-b`` range; None to send everything."""
    if not spec.startswith("bytes=") or "," in spec:
        return None
    first_text, dash, last_text = spec[6:].partition("-")
    if not dash or not (first_text.isdigit() or last_text.isdigit()):
        return None
    if not first_text:
        n = int(last_text)
        if n == 0:
            raise AwsError("InvalidRange", "The requested range is not satisfiable", 416)
        return max(0, size - n), size - 1
    first = int(first_text)
    last = int(last_text) if last_text.isdigit() else size - 1
    if first >= size or last < first:
        raise AwsError("InvalidRange", "The requested range is not satisfiable", 416)
    return first, min(last, size - 1)


def _error_response(err: AwsError, request_id: str, resource: str) -> web.Response:
    # s3_error_xml replaces what XML cannot hold (a path may carry %01-style characters).
    body = s3_error_xml(err, request_id, resource)
    return web.Response(body=body, status=err.status, content_type="application/xml")


def _source_of(cred: Credential | None) -> str:
    if cred is None:
        return "sdk"
    return "learner" if cred.kind == "user" else "pod"


def _condition_keys(
    cred: Credential, call: S3Call, query: Mapping[str, str], remote: str | None
) -> dict[str, Any]:
    keys: dict[str, Any] = {
        "aws:SecureTransport": "true",
        "aws:PrincipalArn": cred.arn,
        "aws:userid": cred.user_id,
        "aws:PrincipalAccount": cred.arn.split(":")[4] if cred.arn.count(":") >= 5 else "",
        "s3:authType": "REST-HEADER",
        "s3:signatureversion": "AWS4-HMAC-SHA256",
    }
    if remote:
        keys["aws:SourceIp"] = remote
    if call.action == "s3:ListBucket":
        for name in ("prefix", "delimiter", "max-keys"):
            if name in query:
                keys[f"s3:{name}"] = query[name]
    return keys


def make_app(account: Account, *, trace: Trace, wall_clock: Clock) -> web.Application:
    """The S3 REST API as an aiohttp app (serve it over HTTPS with ``ServerLoop``).

    ``wall_clock`` judges signature freshness and session expiry; ``account.clock``
    stamps what is stored.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = account.ids.hex(16)
        base_headers = {
            "x-amz-request-id": request_id,
            "x-amz-id-2": request_id,
            "Server": "AmazonS3",
        }
        cred: Credential | None = None
        call: S3Call | None = None
        detail: dict[str, Any] = {}
        raw_path = request.raw_path.split("?", 1)[0]
        try:
            try:
                body = await request.read()
            except web.HTTPException:
                raise AwsError(
                    "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", 400
                ) from None
            query = dict(
                parse_qsl(request.query_string, keep_blank_values=True, max_num_fields=200)
            )
            try:
                cred = authenticate(
                    account,
                    method=request.method,
                    path=raw_path,
                    query=request.query_string,
                    headers=request.headers,
                    body=body,
                    now=wall_clock.now(),
                    service="s3",
                )
            except SigV4Failure as failure:
                raise to_aws_error(failure, "s3") from None
            call = route(request.method, raw_path, query)
            detail.update(bucket=call.bucket, key=call.key, action=call.action)
            if call.bucket is not None:
                with account.lock:
                    _bucket(account, call.bucket)
            keys = _condition_keys(cred, call, query, request.remote)
            detail.update(authorize_s3(account, cred, call, keys))
            response = _execute(account, call, request, query, body, cred, keys)
            outcome = "ok"
        except AwsError as err:
            outcome = err.code
            detail["message"] = err.message
            if "verdict" in err.detail:
                detail.update(decision="denied", why=err.detail["verdict"])
            resource = err.detail.get("resource") or unquote(raw_path)
            response = _error_response(err, request_id, resource)
        except ValueError as exc:  # malformed query strings and the like
            outcome = "InvalidArgument"
            bad = AwsError("InvalidArgument", f"Invalid request: {exc}", 400)
            response = _error_response(bad, request_id, "")
        response.headers.update(base_headers)
        trace.record(
            _source_of(cred),
            "s3",
            call.operation if call else f"{request.method} {raw_path[:80]}",
            outcome,
            duration_ms=(time.perf_counter() - started) * 1000,
            caller=cred.arn if cred else None,
            **{k: v for k, v in detail.items() if v is not None},
        )
        return response

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def _execute(
    account: Account,
    call: S3Call,
    request: web.Request,
    query: Mapping[str, str],
    body: bytes,
    cred: Credential,
    keys: Mapping[str, Any],
) -> web.Response:
    op = call.operation
    if op == "ListBuckets":
        return web.Response(body=_list_buckets_xml(account, query), content_type="application/xml")
    assert call.bucket is not None
    if op in ("ListObjectsV2", "ListObjects"):
        xml = _list_objects_xml(account, call.bucket, query, v2=op == "ListObjectsV2")
        return web.Response(body=xml, content_type="application/xml")
    if op == "GetBucketLocation":
        return web.Response(
            body=_xml("LocationConstraint", escape(REGION)), content_type="application/xml"
        )
    if op == "HeadBucket":
        return web.Response(
            status=200,
            headers={"x-amz-bucket-region": REGION, "x-amz-access-point-alias": "false"},
        )
    assert call.key is not None
    if op == "PutObject":
        data = decode_upload(request.headers, body)
        ctype = request.headers.get("Content-Type")
        obj = put_object(account, call.bucket, call.key, data, ctype)
        headers = {
            "ETag": obj.etag,
            "x-amz-checksum-crc32": obj.crc32,
            "x-amz-checksum-type": "FULL_OBJECT",
        }
        return web.Response(status=200, headers=headers)
    if op == "DeleteObject":
        delete_object(account, call.bucket, call.key)
        return web.Response(status=204)
    found = get_object(account, call.bucket, call.key)
    if found is None:
        # S3 answers NoSuchKey only to callers who may list the bucket; anyone else
        # gets AccessDenied, so keys cannot be probed for.
        listing = S3Call(
            "ListObjectsV2", "s3:ListBucket", f"arn:aws:s3:::{call.bucket}", call.bucket
        )
        authorize_s3(account, cred, listing, keys)
        raise AwsError(
            "NoSuchKey",
            "The specified key does not exist.",
            404,
            detail={"resource": f"/{call.bucket}/{call.key}"},
        )
    obj = found
    headers = _object_headers(obj)
    data = obj.data
    status = 200
    spec = request.headers.get("Range")
    span = _range(spec, len(data)) if spec else None
    if span is not None:
        first, last = span
        data = data[first : last + 1]
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{len(obj.data)}"
    elif request.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
        headers["x-amz-checksum-crc32"] = obj.crc32
        headers["x-amz-checksum-type"] = "FULL_OBJECT"
    return web.Response(body=data, status=status, headers=headers)
