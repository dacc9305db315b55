"""S3's XML documents: the bucket list, object listings (V1 and V2), the bucket's region.

Elements come in the order S3 sends them; with ``encoding-type=url`` the keys and
prefixes are URL-encoded, and botocore decodes them again.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from ...clock import iso8601_ms
from ...constants import REGION, S3_NS, S3_OWNER_DISPLAY_NAME, S3_OWNER_ID
from ..errors import AwsError, escape
from ..model import Account
from .objects import list_buckets, list_objects

__all__ = ["list_buckets_xml", "list_objects_xml", "location_xml"]


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


def list_buckets_xml(account: Account, query: Mapping[str, str]) -> bytes:
    """ListBuckets' ``ListAllMyBucketsResult``, paged by ``max-buckets``."""
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


def list_objects_xml(account: Account, bucket: str, query: Mapping[str, str], v2: bool) -> bytes:
    """ListObjects' (``v2``: ListObjectsV2's) ``ListBucketResult`` for the request's query."""
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


def location_xml() -> bytes:
    """GetBucketLocation's answer: the lab's one region."""
    return _xml("LocationConstraint", escape(REGION))
