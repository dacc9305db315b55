"""The S3 stand-in served over HTTPS: authenticate, route, authorise, answer.

Every request is SigV4-verified (service ``s3``, region ``REGION``; in its header,
or in the query string of a presigned URL, which may also be S3's legacy Signature
Version 2), an ``aws-chunked`` body's chunk signatures too, and then authorised the
way the lab teaches: the account administrator may do anything; an assumed-role session may do
what its role's permission policies allow (:func:`~irsa_lab.aws.endpoint.authorize_by_role`).
A refusal is S3's ``AccessDenied`` with the message S3 has sent for same-account
requests since August 2024 ("User: <arn> is not authorized to perform: s3:PutObject
on resource: "<arn>" because no identity-based policy allows the s3:PutObject
action"), so the learner sees which permission was missing; boto3 still raises code
``AccessDenied``. Every request is recorded in the trace. A bug answers S3's
``InternalError`` (HTTP 500) in S3's error shape, and the server goes on serving.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qsl, unquote

from ... import web
from ...clock import Clock
from ...constants import REGION
from ...trace import Trace
from ..endpoint import (
    authorize_by_role,
    record_call,
    refusal_facts,
    unexpected,
    verify_request,
)
from ..errors import AwsError, s3_error_xml, s3_internal_error
from ..model import Account, Credential
from .documents import list_buckets_xml, list_objects_xml, location_xml
from .objects import StoredObject, delete_object, get_object, put_object, require_bucket
from .routing import S3Call, bucket_arn, route
from .uploads import ChunkSigning, decode_upload

__all__ = ["MAX_BODY", "authorize_s3", "make_app"]

MAX_BODY = 16 * 1024 * 1024  # the lab's objects are small; bigger uploads are refused
_XML = "application/xml"


def authorize_s3(
    account: Account, cred: Credential, call: S3Call, keys: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Allow the administrator; judge a role session by its role's permission policies.

    Returns the facts the trace shows (which statement allowed it); raises S3's
    ``AccessDenied`` naming the caller, the action and the (quoted) resource otherwise.
    """
    return authorize_by_role(
        account,
        cred,
        call.action,
        call.resource,
        keys=keys,
        administrator="account administrator (long-term user keys)",
        shown_resource=f'"{call.resource}"',
    )


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
    return web.Response(body=body, status=err.status, content_type=_XML)


def _is_auth_parameter(name: str) -> bool:
    # X-Amz-Algorithm, X-Amz-Credential, ... (SigV4); AWSAccessKeyId, Signature,
    # Expires, x-amz-security-token (SigV2): a presigned URL's, not an S3 API's.
    return name.lower().startswith("x-amz-") or name in ("AWSAccessKeyId", "Signature", "Expires")


def _condition_keys(
    cred: Credential, call: S3Call, query: Mapping[str, str], remote: str | None
) -> dict[str, Any]:
    # S3's own keys; the global ones (aws:PrincipalArn ...) come from endpoint.caller_keys.
    keys: dict[str, Any] = {
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
    """The S3 REST API as an irsa_lab.web app (serve it over HTTPS with ``ServerLoop``).

    ``wall_clock`` judges signature freshness and session expiry; ``account.clock``
    stamps what is stored.
    """

    async def handle(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        request_id = account.ids.hex(16)
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
                parse_qsl(
                    request.rel_url.raw_query_string, keep_blank_values=True, max_num_fields=200
                )
            )
            signed = verify_request(account, request, body, wall_clock.now(), "s3")
            cred = signed.credential
            if signed.presigned:  # a presigned URL's own parameters select no S3 API
                query = {k: v for k, v in query.items() if not _is_auth_parameter(k)}
            call = route(request.method, raw_path, query)
            detail.update(bucket=call.bucket, key=call.key, action=call.action)
            if call.bucket is not None:
                with account.lock:
                    require_bucket(account, call.bucket)
            keys = _condition_keys(cred, call, query, request.remote)
            if signed.presigned:
                keys["s3:authType"] = "REST-QUERY-STRING"
                keys["s3:signatureversion"] = signed.version
            detail.update(authorize_s3(account, cred, call, keys))
            chunks = ChunkSigning(
                signed.signature, signed.signing_key(), signed.amz_date, signed.scope
            )
            response = _execute(account, call, request, query, body, cred, keys, chunks)
            outcome = "ok"
        except AwsError as err:
            outcome = err.code
            detail.update(refusal_facts(err))
            resource = err.detail.get("resource") or unquote(raw_path)
            response = _error_response(err, request_id, resource)
        except ValueError as exc:  # malformed query strings and the like
            outcome = "InvalidArgument"
            bad = AwsError("InvalidArgument", f"Invalid request: {exc}", 400)
            response = _error_response(bad, request_id, "")
        except Exception as exc:  # a bug must still answer in S3's shape, not as an HTML 500
            what = call.operation if call else f"{request.method} {raw_path[:80]}"
            bug = unexpected("s3", what, exc, s3_internal_error)
            outcome = bug.code
            detail.update(refusal_facts(bug), explanation=bug.explanation)
            response = _error_response(bug, request_id, unquote(raw_path))
        response.headers.update(
            {"x-amz-request-id": request_id, "x-amz-id-2": request_id, "Server": "AmazonS3"}
        )
        record_call(
            trace,
            "s3",
            call.operation if call else f"{request.method} {raw_path[:80]}",
            outcome,
            caller=cred,
            started=started,
            **detail,
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
    chunks: ChunkSigning | None = None,
) -> web.Response:
    op = call.operation
    if op == "ListBuckets":
        return web.Response(body=list_buckets_xml(account, query), content_type=_XML)
    assert call.bucket is not None
    if op in ("ListObjectsV2", "ListObjects"):
        xml = list_objects_xml(account, call.bucket, query, v2=op == "ListObjectsV2")
        return web.Response(body=xml, content_type=_XML)
    if op == "GetBucketLocation":
        return web.Response(body=location_xml(), content_type=_XML)
    if op == "HeadBucket":
        return web.Response(
            status=200,
            headers={"x-amz-bucket-region": REGION, "x-amz-access-point-alias": "false"},
        )
    assert call.key is not None
    if op == "PutObject":
        data = decode_upload(request.headers, body, chunks)
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
        listing = S3Call("ListObjectsV2", "s3:ListBucket", bucket_arn(call.bucket), call.bucket)
        authorize_s3(account, cred, listing, keys)
        raise AwsError(
            "NoSuchKey",
            "The specified key does not exist.",
            404,
            detail={"resource": f"/{call.bucket}/{call.key}"},
            elements=(("Key", call.key),),  # S3 names the key in <Key>
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
