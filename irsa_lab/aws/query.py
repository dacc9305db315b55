"""The AWS "query" protocol, shared by the STS and IAM stand-ins.

A query-protocol request is a form (``Action=...&Version=...&Name=value``) sent as a
``POST`` body, or as the query string of a ``GET``. The answer is an XML document
``<ActionResponse><ActionResult>...</ActionResult><ResponseMetadata>`` on success and
an ``<ErrorResponse>`` on failure, both with an ``x-amzn-RequestId`` header. This
module parses the form and writes both documents; each service only renders the
inside of its ``Result`` element.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import parse_qsl

from .. import web
from .errors import AwsError, escape, query_error_xml

__all__ = [
    "MAX_FIELDS",
    "element",
    "elements",
    "error_response",
    "parse_query",
    "xml_response",
]

# A form with more fields than this is refused rather than parsed: no real call has
# more than a few dozen (IAM tag lists are capped at 50 tags, two fields each).
MAX_FIELDS = 1000


def _pairs(raw: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(raw, keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except ValueError as exc:
        raise AwsError("MalformedQueryString", f"Too many parameters: {exc}") from None


def parse_query(body: bytes, query_string: str) -> dict[str, str]:
    """The request's parameters: the query string's first, then the form body's.

    A name given twice keeps its first value. Bytes that are not UTF-8 become
    U+FFFD instead of failing, so a fuzzed body still reaches validation and gets
    an AWS error, never a crash.
    """
    params: dict[str, str] = {}
    for raw in (query_string, body.decode("utf-8", errors="replace")):
        if not raw:
            continue
        for name, value in _pairs(raw):
            params.setdefault(name, value)
    return params


def element(name: str, value: object) -> str:
    """``<Name>value</Name>`` with the value XML-escaped (``None`` gives nothing)."""
    if value is None:
        return ""
    return f"<{name}>{escape(str(value))}</{name}>"


def elements(name: str, values: Iterable[str]) -> str:
    """A query-protocol list: ``<Name><member>a</member>...</Name>``."""
    members = "".join(element("member", v) for v in values)
    return f"<{name}>{members}</{name}>"


def _response(body: bytes, status: int, request_id: str) -> web.Response:
    # The body is built in full first so the server sends headers and body together.
    return web.Response(
        body=body,
        status=status,
        content_type="text/xml",
        headers={"x-amzn-RequestId": request_id},
    )


def xml_response(
    action: str, result_xml: str | None, namespace: str, request_id: str
) -> web.Response:
    """A 200 ``<{action}Response>`` with ``result_xml`` inside ``<{action}Result>``.

    ``result_xml`` is already-rendered XML (use :func:`element`); ``None`` omits the
    ``Result`` element, as AWS does for calls that return nothing (``DeleteRole``).
    """
    result = "" if result_xml is None else f"<{action}Result>{result_xml}</{action}Result>"
    text = (
        f'<{action}Response xmlns="{namespace}">'
        f"{result}"
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata>"
        f"</{action}Response>\n"
    )
    return _response(text.encode(), 200, request_id)


def error_response(err: AwsError, namespace: str, request_id: str) -> web.Response:
    """The ``ErrorResponse`` document for ``err`` with its HTTP status."""
    return _response(query_error_xml(err, namespace, request_id), err.status, request_id)
