"""A small S3: ListBuckets, ListObjects(V2), Get/Head/Put/DeleteObject, HeadBucket.

One module per part of the job:

- :mod:`.routing`: which operation a path-style request is, and the IAM action
  (``s3:GetObject`` ...) and resource ARN it needs;
- :mod:`.objects`: the operations themselves, plain functions over an
  :class:`~irsa_lab.aws.model.Account` (``list_objects``, ``put_object`` ...);
- :mod:`.uploads`: PutObject bodies, ``aws-chunked`` unwrapped and checksums verified;
- :mod:`.documents`: S3's XML documents;
- :mod:`.service`: the HTTP layer, SigV4 and the permission check
  (:func:`authorize_s3`) around the rest, with one trace record per request.
"""

from __future__ import annotations

from .objects import (
    DEFAULT_CONTENT_TYPE,
    ListPage,
    StoredObject,
    delete_object,
    get_object,
    list_buckets,
    list_objects,
    put_object,
)
from .routing import S3Call, route
from .service import MAX_BODY, authorize_s3, make_app
from .uploads import decode_aws_chunked, decode_upload

__all__ = [
    "DEFAULT_CONTENT_TYPE",
    "MAX_BODY",
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
