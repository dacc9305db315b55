"""How a failed SigV4 check is answered: one failure class, each service's wording.

:class:`SigV4Failure` names the check that failed (its ``kind``) and carries the
facts; :func:`to_aws_error` turns it into the error each service sends, worded as AWS
words it. STS and IAM share the query protocol's codes (``SignatureDoesNotMatch``,
``InvalidClientTokenId``, ``IncompleteSignature``, ...); S3 has its own
(``AuthorizationHeaderMalformed``, ``XAmzContentSHA256Mismatch``, ...) and adds
elements to its ``Error`` document after ``Message`` (``Region``,
``ClientComputedContentSHA256``, ``X-Amz-Expires``, ...), given as the error's
``elements``. Sources: the observations cited beside each text.
"""

from __future__ import annotations

from typing import Any, Literal

from .errors import AwsError

__all__ = ["FailureKind", "SigV4Failure", "to_aws_error"]

FailureKind = Literal[
    "missing",
    "malformed",
    "unknown_key",
    "bad_signature",
    "expired_token",
    "invalid_token",
    "skewed",
    "content_mismatch",
    "wrong_region",
    "bad_content_sha",
    "missing_content_sha",
    "expired_request",
    "not_yet_valid",
    "two_mechanisms",
]

_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. "
    "Consult the service documentation for details."
)
_S3_SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your key and signing method."
)


class SigV4Failure(Exception):
    """Raised when a request's SigV4 signature cannot be accepted.

    ``kind`` says which check failed (see :data:`FailureKind`); ``message`` explains
    it to a learner; ``detail`` holds the non-secret facts :func:`to_aws_error` words
    the wire message from (``presigned`` says whether the query string carried the
    signature).
    """

    def __init__(self, kind: FailureKind, message: str, **detail: Any) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: FailureKind = kind
        self.message = message
        self.detail = detail


def _s3_error(f: SigV4Failure) -> AwsError:
    d = f.detail
    elements: list[tuple[str, str]] = []
    query = bool(d.get("presigned"))
    malformed_code = (
        "AuthorizationQueryParametersError" if query else "AuthorizationHeaderMalformed"
    )
    table: dict[str, tuple[str, int, str]] = {
        "missing": ("AccessDenied", 403, "Access Denied"),
        "malformed": (
            malformed_code,
            400,
            f.message if query else "The authorization header is malformed; " + f.message,
        ),
        "unknown_key": (
            "InvalidAccessKeyId",
            403,
            "The AWS Access Key Id you provided does not exist in our records.",
        ),
        "bad_signature": ("SignatureDoesNotMatch", 403, _S3_SIGNATURE_MISMATCH),
        "expired_token": ("ExpiredToken", 400, "The provided token has expired."),
        "invalid_token": (
            "InvalidToken",
            400,
            "The provided token is malformed or otherwise invalid.",
        ),
        "skewed": (
            "RequestTimeTooSkewed",
            403,
            "The difference between the request time and the current time is too large.",
        ),
        "content_mismatch": (
            "XAmzContentSHA256Mismatch",
            400,
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        ),
        "bad_content_sha": (
            "InvalidArgument",
            400,
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
            "or a valid sha256 value.",
        ),
        "missing_content_sha": (
            "InvalidRequest",
            400,
            "Missing required header for this request: x-amz-content-sha256",
        ),
        "expired_request": ("AccessDenied", 403, "Request has expired"),
        "not_yet_valid": ("AccessDenied", 403, "Request is not yet valid"),
        "two_mechanisms": ("InvalidArgument", 400, f.message),
    }
    if f.kind == "wrong_region":
        where = (
            "Error parsing the X-Amz-Credential parameter"
            if query
            else "The authorization header is malformed"
        )
        code, status = malformed_code, 400
        message = f"{where}; the region '{d['region']}' is wrong; expecting '{d['expected']}'"
        elements = [("Region", d["expected"])]
    else:
        code, status, message = table[f.kind]
    if f.kind == "content_mismatch":
        elements = [
            ("ClientComputedContentSHA256", d["client"]),
            ("S3ComputedContentSHA256", d["server"]),
        ]
    elif f.kind == "bad_content_sha":
        elements = [("ArgumentName", "x-amz-content-sha256"), ("ArgumentValue", d["value"])]
    elif f.kind == "expired_request":
        elements = [("X-Amz-Expires", d["expires"])] if "expires" in d else []
        elements += [("Expires", d["expires_at"]), ("ServerTime", d["server_time"])]
    elif f.kind == "not_yet_valid":
        elements = [
            ("X-Amz-Date", d["amz_date_ms"]),
            ("Expires", d["expires_at"]),
            ("ServerTime", d["server_time"]),
        ]
    # RequestTimeTooSkewed's elements are written from detail by errors.s3_error_elements.
    detail = {"kind": f.kind, **d}
    return AwsError(code, message, status, explanation=f.message, detail=detail, elements=elements)


def to_aws_error(f: SigV4Failure, service: Literal["sts", "iam", "s3"]) -> AwsError:
    """The error ``service`` answers a failed signature with, worded as AWS words it.

    For S3, the error's ``elements`` are the extra elements S3 puts in its ``Error``
    document after ``Message`` (``Region``, ``ClientComputedContentSHA256``, ...).
    """
    if service == "s3":
        return _s3_error(f)
    detail = {"kind": f.kind, **f.detail}
    if f.kind == "skewed":
        d = f.detail
        if d["request_time"] < d["server_time"]:
            wire = (
                f"Signature expired: {d['request_time']} is now earlier than "
                f"{d['earliest']} ({d['server_time']} - 15 min.)"
            )
        else:
            wire = (
                f"Signature not yet current: {d['request_time']} is still later than "
                f"{d['latest']} ({d['server_time']} + 15 min.)"
            )
        return AwsError("SignatureDoesNotMatch", wire, 403, explanation=f.message, detail=detail)
    query: dict[str, tuple[str, int, str]] = {
        "missing": ("MissingAuthenticationToken", 403, "Request is missing Authentication Token"),
        "malformed": ("IncompleteSignature", 400, f.message),
        "unknown_key": (
            "InvalidClientTokenId",
            403,
            "The security token included in the request is invalid.",
        ),
        "invalid_token": (
            "InvalidClientTokenId",
            403,
            "The security token included in the request is invalid.",
        ),
        "bad_signature": ("SignatureDoesNotMatch", 403, _SIGNATURE_MISMATCH),
        "content_mismatch": ("SignatureDoesNotMatch", 403, _SIGNATURE_MISMATCH),
        # Real STS, as its raw ErrorResponse shows it (namecheap/node-vault-client#25,
        # 2022), trailing space included; also hashicorp/terraform-provider-aws#34865.
        # Older answers, IAM's too, added ", not '<region>'" before the same ". "
        # (cognitect-labs/aws-api#27, JuliaCloud/AWS.jl#565).
        "wrong_region": (
            "SignatureDoesNotMatch",
            403,
            "Credential should be scoped to a valid region. ",
        ),
        "expired_token": (
            "ExpiredToken",
            403,
            "The security token included in the request is expired",
        ),
    }
    code, status, message = query.get(f.kind, ("SignatureDoesNotMatch", 403, _SIGNATURE_MISMATCH))
    if f.kind == "bad_signature" and f.message.startswith("Credential should be scoped"):
        message = f.message
    return AwsError(code, message, status, explanation=f.message, detail=detail)
