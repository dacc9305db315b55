"""Which S3 operation a path-style request is, and which IAM action it needs.

Requests are path-style (``https://127.0.0.1:PORT/<bucket>/<key>``), which is what
botocore sends for an IP endpoint URL. :func:`route` reads the method, the path and
the query names into an :class:`S3Call`. A bucket name S3 could never have given
out is ``InvalidBucketName``; a request for an API this stand-in does not implement
(``?acl``, ``CreateBucket`` ...) gets S3's ``NotImplemented``, with the lab's reason in
the error's explanation rather than in S3's message.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

from ..errors import AwsError

__all__ = ["S3Call", "bucket_arn", "check_bucket_name", "route"]


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
    # S3 implements all of these; its error for functionality it lacks is NotImplemented.
    return AwsError(
        "NotImplemented",
        "A header you provided implies functionality that is not implemented.",
        501,
        explanation=f"The irsa-lab S3 stand-in does not implement {what}.",
    )


# S3's general purpose bucket naming rules: 3-63 of a-z 0-9 . -, a letter or digit at
# each end, no "..", not an IP address, and a few reserved prefixes and suffixes.
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3")


def _looks_like_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def check_bucket_name(bucket: str) -> str:
    """``bucket`` if S3's naming rules allow it, else S3's ``InvalidBucketName``."""
    why = None
    if not _BUCKET_NAME.fullmatch(bucket):
        why = "3 to 63 lowercase letters, digits, dots and hyphens, a letter or digit at each end"
    elif ".." in bucket:
        why = "no two adjacent dots"
    elif _looks_like_ip(bucket):
        why = "not formatted as an IP address"
    elif bucket.startswith(_RESERVED_PREFIXES) or bucket.endswith(_RESERVED_SUFFIXES):
        why = "no reserved prefix or suffix"
    if why is None:
        return bucket
    raise AwsError(
        "InvalidBucketName",
        "The specified bucket is not valid.",
        400,
        explanation=f"{bucket!r} breaks S3's bucket naming rules: {why}.",
        elements=(("BucketName", bucket),),
    )


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
    check_bucket_name(bucket)
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
