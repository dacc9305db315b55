"""Which S3 operation a path-style request is, and which IAM action it needs.

Requests are path-style (``https://127.0.0.1:PORT/<bucket>/<key>``), which is what
botocore sends for an IP endpoint URL. :func:`route` reads the method, the path and
the query names into an :class:`S3Call`; a request for an API this stand-in does
not implement (``?acl``, ``CreateBucket`` ...) gets a clear ``InvalidRequest``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from ..errors import AwsError

__all__ = ["S3Call", "bucket_arn", "route"]


def bucket_arn(bucket: str) -> str:
    """``arn:aws:s3:::<bucket>``: S3 ARNs carry neither region nor account."""
    return f"arn:aws:s3:::{bucket}"


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
    whole_bucket = bucket_arn(bucket)
    if not key:
        unknown = set(query) - _BUCKET_QUERY_OK
        if unknown:
            raise _not_here(f"?{sorted(unknown)[0]} on a bucket")
        if method == "GET" and "location" in query:
            return S3Call("GetBucketLocation", "s3:GetBucketLocation", whole_bucket, bucket)
        if method == "GET":
            op = "ListObjectsV2" if query.get("list-type") == "2" else "ListObjects"
            return S3Call(op, "s3:ListBucket", whole_bucket, bucket)
        if method == "HEAD":
            return S3Call("HeadBucket", "s3:ListBucket", whole_bucket, bucket)
        if method in ("PUT", "DELETE"):
            raise _not_here(f"{'CreateBucket' if method == 'PUT' else 'DeleteBucket'}")
        raise _method_not_allowed()
    unknown = set(query) - _OBJECT_QUERY_OK
    if unknown:
        raise _not_here(f"?{sorted(unknown)[0]} on an object")
    object_arn = f"{whole_bucket}/{key}"
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
