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

import re
from typing import Any
from xml.sax.saxutils import escape as _xml_escape

__all__ = [
    "INTERNAL_FAILURE_MESSAGE",
    "S3_INTERNAL_ERROR_MESSAGE",
    "AwsError",
    "escape",
    "internal_failure",
    "query_error_xml",
    "s3_error_xml",
    "s3_internal_error",
]

# The common error of every query-protocol API (AWS's "Common Errors" page).
INTERNAL_FAILURE_MESSAGE = (
    "The request processing has failed because of an unknown error, exception or failure."
)
# S3's wording of the same failure (its error-code table, code InternalError).
S3_INTERNAL_ERROR_MESSAGE = "We encountered an internal error. Please try again."

# Characters XML 1.0 cannot hold at all, even escaped: a request may echo them back.
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def escape(text: str) -> str:
    """Escape for XML text, replacing characters XML cannot represent with U+FFFD."""
    return _xml_escape(_NOT_XML.sub("\ufffd", text))


class AwsError(Exception):
    """Raised when an AWS stand-in refuses a request; carries the wire code and status."""

    def __init__(
        self,
        code: str,
        message: str,
        status: int = 400,
        *,
        sender: bool = True,
        explanation: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.sender = sender
        self.explanation = explanation or message
        self.detail = detail or {}

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


def s3_error_xml(err: AwsError, request_id: str, resource: str = "") -> bytes:
    """S3's ``Error`` document."""
    res = f"<Resource>{escape(resource)}</Resource>" if resource else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(err.code)}</Code><Message>{escape(err.message)}</Message>"
        f"{res}<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
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
