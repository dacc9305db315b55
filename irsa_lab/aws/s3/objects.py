"""S3's operations on an account's buckets: list, get, put and delete objects.

Plain functions over an :class:`~irsa_lab.aws.model.Account`, raising
:class:`~irsa_lab.aws.errors.AwsError` with S3's codes and messages. Buckets live in
``account.buckets[name]`` as
``{"created": epoch, "objects": {key: (bytes, last_modified)}, "content_types": {key: str}}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from dataclasses import dataclass
from typing import Any

from ..errors import AwsError
from ..model import Account

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "ListPage",
    "StoredObject",
    "delete_object",
    "get_object",
    "list_buckets",
    "list_objects",
    "put_object",
    "require_bucket",
]

DEFAULT_CONTENT_TYPE = "binary/octet-stream"  # what S3 stores when none is given


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
    # S3 names the bucket in its own element: <BucketName>, not <Resource>.
    return AwsError(
        "NoSuchBucket",
        "The specified bucket does not exist",
        404,
        detail={"resource": f"/{bucket}"},
        elements=(("BucketName", bucket),),
    )


def require_bucket(account: Account, name: str) -> dict[str, Any]:
    """The bucket's record, or S3's ``NoSuchBucket``."""
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
        return _stored(require_bucket(account, bucket), key)


def put_object(
    account: Account, bucket: str, key: str, data: bytes, content_type: str | None = None
) -> StoredObject:
    """Store ``data`` under ``key`` (replacing any object there)."""
    if len(key.encode()) > 1024:
        raise AwsError("KeyTooLongError", "Your key is too long", 400)
    with account.lock:
        b = require_bucket(account, bucket)
        now = account.clock.now()
        b["objects"][key] = (bytes(data), now)
        b.setdefault("content_types", {})[key] = content_type or DEFAULT_CONTENT_TYPE
        stored = _stored(b, key)
    assert stored is not None
    return stored


def delete_object(account: Account, bucket: str, key: str) -> None:
    """Remove ``key``; deleting a missing key succeeds, as in S3."""
    with account.lock:
        b = require_bucket(account, bucket)
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
        b = require_bucket(account, bucket)
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
