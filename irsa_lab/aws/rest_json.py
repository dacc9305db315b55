"""The rest-json protocol's answers (EKS, EKS Auth): JSON bodies, errors named in a header.

botocore reads a rest-json error's code from the ``x-amzn-ErrorType`` header (the text
before any ``:``) and its message from the body's ``message``; the request id from
``x-amzn-RequestId`` (docs/reference/pod-identity.md §1.4). :func:`error_response`
sends both forms of the code (header and ``__type``), as AWS's JSON services do.

A request whose SigV4 signature fails is refused in the JSON services' own words
(:func:`sigv4_error`), not the query protocol's: ``UnrecognizedClientException`` for a key
or session token the service does not know, ``InvalidSignatureException`` for a
signature that does not match or a clock that is off, ``MissingAuthenticationTokenException``
for an unsigned request. [I] These are the codes AWS's JSON services answer (for EKS:
"An error occurred (UnrecognizedClientException) when calling the DescribeCluster
operation: The security token included in the request is invalid." is widely quoted);
the exact texts for EKS Auth are not published.
"""

from __future__ import annotations

import json
from typing import Any

from .. import web
from .endpoint import verify_request
from .errors import AwsError
from .model import Account, Credential
from .sigv4_errors import SigV4Failure

__all__ = ["error_response", "json_response", "sigv4_error", "signed_by"]

_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)


def json_response(body: Any, request_id: str, status: int = 200) -> web.Response:
    """A rest-json answer: compact JSON, ``application/json``, the request id header."""
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers={"x-amzn-RequestId": request_id},
    )


def error_response(err: AwsError, request_id: str) -> web.Response:
    """``err`` on the wire: status, ``x-amzn-ErrorType``, body ``{"message", "__type"}``."""
    response = json_response({"message": err.message, "__type": err.code}, request_id, err.status)
    response.headers["x-amzn-ErrorType"] = err.code
    return response


def sigv4_error(f: SigV4Failure) -> AwsError:
    """The error a JSON service answers a failed signature with."""
    detail = {"kind": f.kind, **f.detail}
    table: dict[str, tuple[str, int, str]] = {
        "missing": ("MissingAuthenticationTokenException", 403, "Missing Authentication Token"),
        "malformed": ("IncompleteSignatureException", 400, f.message),
        "unknown_key": (
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
        ),
        "invalid_token": (
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
        ),
        "expired_token": (
            "ExpiredTokenException",
            403,
            "The security token included in the request is expired",
        ),
        "wrong_region": (
            "InvalidSignatureException",
            403,
            "Credential should be scoped to a valid region. ",
        ),
    }
    if f.kind == "skewed":
        d = f.detail
        early = d["request_time"] < d["server_time"]
        message = (
            f"Signature expired: {d['request_time']} is now earlier than {d['earliest']} "
            f"({d['server_time']} - 15 min.)"
            if early
            else f"Signature not yet current: {d['request_time']} is still later than "
            f"{d['latest']} ({d['server_time']} + 15 min.)"
        )
        return AwsError(
            "InvalidSignatureException", message, 403, explanation=f.message, detail=detail
        )
    code, status, message = table.get(
        f.kind, ("InvalidSignatureException", 403, _SIGNATURE_MISMATCH)
    )
    return AwsError(code, message, status, explanation=f.message, detail=detail)


def signed_by(
    account: Account, request: web.Request, body: bytes, *, now: float, service: str, region: str
) -> Credential:
    """Who signed ``request`` for ``service`` in ``region``, or the JSON services' refusal."""
    return verify_request(
        account, request, body, now, service, region=region, refusal=sigv4_error
    ).credential
