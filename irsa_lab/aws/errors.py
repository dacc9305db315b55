"""AWS errors with their wire form.

Every way an AWS stand-in can refuse a request is an :class:`AwsError` carrying the
code, HTTP status, message and fault type that AWS itself sends, plus an
``explanation`` for the learner (which check failed, with what values). The HTTP
layer turns one into XML in one place: :func:`query_error_xml` for the query
protocol (STS, IAM) and :func:`s3_error_xml` for S3's REST protocol. A bug in a
stand-in is not left to the web framework's HTML 500: it becomes the service's own
internal error (:func:`internal_failure` for the query protocol, :func:`s3_internal_error`
for S3), with the words AWS uses.

Error tree::

    AwsError
    ├── (STS)  InvalidIdentityToken, ExpiredTokenException, IDPCommunicationError,
    │          AccessDenied, ValidationError, MalformedPolicyDocument, ...
    ├── (auth) InvalidClientTokenId, SignatureDoesNotMatch, ExpiredToken, ...
    └── (IAM/S3) NoSuchEntity, EntityAlreadyExists, NoSuchBucket, NoSuchKey, ...

The subclasses are not separate Python classes: the code *is* the class, as on the
wire, and boto3 maps it to its own exception classes.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

__all__ = [
    "INTERNAL_FAILURE_MESSAGE",
    "S3_INTERNAL_ERROR_MESSAGE",
    "S3_MAX_SKEW_MS",
    "AwsError",
    "escape",
    "internal_failure",
    "query_error_xml",
    "s3_error_elements",
    "s3_error_xml",
    "s3_internal_error",
]

# The common error of every query-protocol API (AWS's "Common Errors" page).
INTERNAL_FAILURE_MESSAGE = (
    "The request processing has failed because of an unknown error, exception or failure."
)
# S3's wording of the same failure (its error-code table, code InternalError).
S3_INTERNAL_ERROR_MESSAGE = "We encountered an internal error. Please try again."
# The clock skew S3 tolerates, as its RequestTimeTooSkewed error states it (15 minutes).
S3_MAX_SKEW_MS = 900000


# Characters XML 1.0 cannot hold at all, even escaped: a request may echo them back.
@functools.cache
def _not_xml() -> re.Pattern[str]:
    # Compiled on first use: a class over the whole of Unicode takes about 5 ms to build.
    return re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def escape(text: str) -> str:
    """Escape for XML text (``&``, ``<``, ``>``, as xml.sax.saxutils.escape does, whose
    module would load urllib.request at start), replacing characters XML cannot
    represent with U+FFFD."""
    text = _not_xml().sub("\ufffd", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class AwsError(Exception):
    """Raised when an AWS stand-in refuses a request; carries the wire code and status.

    ``message`` is what AWS sends, word for word, and nothing else: the learner's
    account of what went wrong goes in ``explanation`` (shown by the lab and the
    trace, never sent). ``elements`` are the extra children S3 puts in its ``Error``
    document for this code, in order (``NoSuchKey`` has ``Key``, ``NoSuchBucket`` has
    ``BucketName``); the query protocol (STS, IAM) has no such elements.
    """

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        sender: bool = True,
        explanation: str | None = None,
        detail: dict[str, Any] | None = None,
        elements: Sequence[tuple[str, str]] = (),
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.sender = sender
        self.explanation = explanation or message
        self.detail = detail or {}
        self.elements = tuple(elements)

    @property
    def fault(self) -> str:
        return "Sender" if self.sender else "Receiver"


def query_error_xml(err: AwsError, namespace: str, request_id: str) -> bytes:
    """The ``ErrorResponse`` document of the query protocol (STS, IAM).

    ``RequestId`` is a sibling of ``Error``, as real STS sends it.
    """
    return (
        f'<ErrorResponse xmlns="{namespace}">\n'
        f"  <Error>\n"
        f"    <Type>{err.fault}</Type>\n"
        f"    <Code>{escape(err.code)}</Code>\n"
        f"    <Message>{escape(err.message)}</Message>\n"
        f"  </Error>\n"
        f"  <RequestId>{request_id}</RequestId>\n"
        f"</ErrorResponse>\n"
    ).encode()


def _iso_from_amz_date(stamp: str) -> str:
    """``20250903T162150Z`` -> ``2025-09-03T16:21:50Z`` (other text is returned as is)."""
    if re.fullmatch(r"\d{8}T\d{6}Z", stamp):
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}Z"
    return stamp


def s3_error_elements(err: AwsError) -> tuple[tuple[str, str], ...]:
    """The extra children of S3's ``Error`` element for ``err``, in S3's order.

    ``err.elements`` when the error was built with them. A ``RequestTimeTooSkewed``
    built by the signature check carries its two times in ``detail`` instead; S3
    sends them as ``RequestTime`` (the request's ``X-Amz-Date`` as given),
    ``ServerTime`` (ISO 8601) and ``MaxAllowedSkewMilliseconds``.
    """
    if err.elements:
        return err.elements
    d = err.detail
    if err.code == "RequestTimeTooSkewed" and "request_time" in d and "server_time" in d:
        return (
            ("RequestTime", str(d["request_time"])),
            ("ServerTime", _iso_from_amz_date(str(d["server_time"]))),
            ("MaxAllowedSkewMilliseconds", str(S3_MAX_SKEW_MS)),
        )
    return ()


def s3_error_xml(err: AwsError, request_id: str, resource: str = "") -> bytes:
    """S3's ``Error`` document: code, message, the code's own elements, request ids.

    An error with elements of its own (``Key``, ``BucketName`` ...) sends those, as
    S3 does; any other names the ``resource`` it concerns, if one is given.
    """
    own = s3_error_elements(err)
    if own:
        extra = "".join(f"<{name}>{escape(value)}</{name}>" for name, value in own)
    else:
        extra = f"<Resource>{escape(resource)}</Resource>" if resource else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message>"
        f"{extra}<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
    ).encode()


def _bug(code: str, message: str, service: str, exc: BaseException) -> AwsError:
    return AwsError(
        code,
        message,
        500,
        sender=False,
        explanation=f"the {service} stand-in failed: {type(exc).__name__}: {exc}",
        detail={"exception": type(exc).__name__},
    )


def internal_failure(service: str, exc: BaseException) -> AwsError:
    """What a query-protocol service (STS, IAM) answers when ``exc`` escapes an operation.

    ``InternalFailure``, HTTP 500, fault ``Receiver``; the learner's explanation names
    the exception, the message is AWS's own.
    """
    return _bug("InternalFailure", INTERNAL_FAILURE_MESSAGE, service, exc)


def s3_internal_error(exc: BaseException) -> AwsError:
    """What S3 answers when ``exc`` escapes an operation: ``InternalError``, HTTP 500."""
    return _bug("InternalError", S3_INTERNAL_ERROR_MESSAGE, "s3", exc)
