"""How AssumeRoleWithWebIdentity fails: one exception class per way, each with its wire form.

PyJWT-style: the class names the failure, and callers branch on the class, never on
the message. Each carries what real STS sends (``code``, ``status``, ``message``;
the HTTP layer writes the ``ErrorResponse`` from them in one place,
:func:`irsa_lab.aws.query.error_response`), the learner's ``explanation`` and
``detail``, and the pipeline ``step`` that refused (:mod:`.checks`)::

    StsError (an AwsError)
    ├── ValidationError                       ValidationError, 400
    │   ├── InvalidSourceIdentity             "1 validation error detected: ... 'sourceIdentity' ..."
    │   ├── InvalidParameterValue             "1 validation error detected: ..."
    │   ├── InvalidRoleArn                    "Request ARN is invalid"
    │   ├── DurationTooLong                   "The requested DurationSeconds exceeds ..."
    │   └── InvalidSessionTags                "Unable to validate tags"
    ├── InvalidIdentityToken                  InvalidIdentityToken, 400
    │   ├── MalformedToken                    "The ID Token provided is not a valid JWT. ..."
    │   ├── UnsupportedAlgorithm              "Unsupported token signing algorithm: <alg>"
    │   ├── MissingRequiredClaim              "Missing a required claim: <name>"
    │   ├── InvalidClaimType                  "Invalid claim: <name> must be an integer"
    │   ├── NoOpenIDConnectProvider           "No OpenIDConnect provider found in ..."
    │   ├── UntrustedCertificate              "OpenIDConnect provider's HTTPS certificate ..."
    │   ├── KeyNotFound                       "Unable to find a key in the ... JWKS ..."
    │   ├── InvalidSignature                  "The token signature could not be verified ..."
    │   ├── ImmatureToken                     "Token not yet valid: ..."
    │   ├── IssuedInTheFuture                 "Token issued in the future: ..."
    │   └── InvalidAudience                   "Incorrect token audience"
    ├── ExpiredToken                          ExpiredTokenException, 400
    ├── IDPCommunicationError                 IDPCommunicationError, 400 (botocore retries)
    ├── AccessDenied                          AccessDenied, 403
    │   ├── RoleNotFound
    │   └── TrustPolicyDenied                 (``decision`` holds the evaluator's reasons)
    │       └── SessionPermissionDenied       the token passes tags or a source identity
    │                                         and the trust policy lacks sts:TagSession
    │                                         or sts:SetSourceIdentity
    ├── MalformedPolicyDocument               MalformedPolicyDocument, 400
    └── PackedPolicyTooLarge                  PackedPolicyTooLarge, 400
        └── SessionTagsTooLarge               "Packed size of session tags consumes N% ..."

Over the wire only the code and the message travel (a boto3 ``ClientError``);
:func:`failure_from_wire` gives back the most precise class for them. Several
AccessDenied causes share one message, so on the wire they are all ``AccessDenied``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from ..errors import AwsError
from ..oidc_client import CERTIFICATE_MESSAGE, IDP_UNREACHABLE_MESSAGE
from ..policy import Decision

__all__ = [
    "ACCESS_DENIED_MESSAGE",
    "NOT_A_JWT",
    "AccessDenied",
    "DurationTooLong",
    "ExpiredToken",
    "IDPCommunicationError",
    "ImmatureToken",
    "InvalidAudience",
    "InvalidClaimType",
    "InvalidIdentityToken",
    "InvalidParameterValue",
    "InvalidRoleArn",
    "InvalidSessionTags",
    "InvalidSignature",
    "InvalidSourceIdentity",
    "IssuedInTheFuture",
    "KeyNotFound",
    "MalformedPolicyDocument",
    "MalformedToken",
    "MissingRequiredClaim",
    "NoOpenIDConnectProvider",
    "PackedPolicyTooLarge",
    "RoleNotFound",
    "SessionPermissionDenied",
    "SessionTagsTooLarge",
    "StsError",
    "TrustPolicyDenied",
    "UnsupportedAlgorithm",
    "UntrustedCertificate",
    "ValidationError",
    "adopt",
    "failure_from_wire",
]

ACCESS_DENIED_MESSAGE = "Not authorized to perform sts:AssumeRoleWithWebIdentity"
# [I] AWS's exact wording for a token that is not a JWT is not public (docs/reference/sts.md §7).
NOT_A_JWT = (
    "The ID Token provided is not a valid JWT. (You may see this error if you sent an Access Token)"
)


class StsError(AwsError):
    """Raised when STS refuses AssumeRoleWithWebIdentity; the root of the tree above.

    ``code``, ``status`` and ``message`` are what real STS sends; ``explanation`` and
    ``detail`` are for the learner; ``step`` is the pipeline step that refused.
    """

    wire_code: ClassVar[str] = "InternalFailure"
    http_status: ClassVar[int] = 400
    #: the message when it never varies; else a pattern in :attr:`wire_pattern`
    wire_message: ClassVar[str | None] = None
    wire_pattern: ClassVar[str | None] = None

    def __init__(
        self,
        message: str | None = None,
        explanation: str | None = None,
        *,
        step: str = "",
        **detail: Any,
    ) -> None:
        text = message if message is not None else (self.wire_message or self.wire_code)
        super().__init__(
            self.wire_code, text, self.http_status, explanation=explanation, detail=detail
        )
        self.step = step

    @classmethod
    def says(cls, message: str) -> bool:
        """Whether ``message`` is the text this class itself declares it sends (a subclass
        that only inherits its parent's text cannot be told apart on the wire)."""
        own = vars(cls)
        if own.get("wire_message") is not None:
            return message == own["wire_message"]
        pattern = own.get("wire_pattern")
        return pattern is not None and re.fullmatch(pattern, message) is not None


class ValidationError(StsError):
    """Raised when the request breaks the service model or a role limit."""

    wire_code = "ValidationError"


class InvalidSourceIdentity(ValidationError):
    """Raised when the token's ``https://aws.amazon.com/source_identity`` claim breaks the
    rules of a source identity: a string of 2 to 64 characters of ``[\\w+=,.@-]``, not
    starting with ``aws:`` (IAM User Guide, "Monitor and control actions taken with
    assumed roles").

    [I] AWS does not publish its answer for a bad claim; the lab words it as STS words a
    bad ``SourceIdentity`` parameter of AssumeRole (the service model's constraint).
    Defined before :class:`InvalidParameterValue` so that :func:`failure_from_wire`
    recognises its text first.
    """

    wire_pattern = r"1 validation error detected: Value .* at 'sourceIdentity' failed .*"


class InvalidParameterValue(ValidationError):
    """Raised when parameters break the model; every broken constraint is listed."""

    wire_pattern = r"\d+ validation errors? detected: .*"


class InvalidRoleArn(ValidationError):
    """Raised when ``RoleArn`` passes the model but is not an IAM role ARN."""

    wire_message = "Request ARN is invalid"


class DurationTooLong(ValidationError):
    """Raised when ``DurationSeconds`` is above the role's ``MaxSessionDuration``."""

    wire_message = "The requested DurationSeconds exceeds the MaxSessionDuration set for this role."


class InvalidSessionTags(ValidationError):
    """Raised when the token's ``https://aws.amazon.com/tags`` claim breaks the rules of
    session tags: ``principal_tags`` maps each key to one string value, at most 50 tags,
    keys of 1 to 128 and values of up to 256 letters, digits, spaces and ``_.:/=+-@``,
    neither starting with ``aws:``, no two keys differing only in case;
    ``transitive_tag_keys`` lists some of those keys (IAM User Guide, "Passing session
    tags in AWS STS", "Rules for tagging in IAM and AWS STS").

    The text is the one STS sent for tags from a federated (SAML) sign-in it could not
    accept (ministryofjustice/cloud-platform#4455); [I] for a web identity token.
    """

    wire_message = "Unable to validate tags"


class InvalidIdentityToken(StsError):
    """Raised when the web identity token is refused."""

    wire_code = "InvalidIdentityToken"


class MalformedToken(InvalidIdentityToken):
    """Raised when the token is not a JWT, or a claim or header field has the wrong type."""

    wire_message = NOT_A_JWT


class UnsupportedAlgorithm(InvalidIdentityToken):
    """Raised when ``alg`` is not one of :data:`irsa_lab.jose.ALGORITHMS` (``none``, ``HS256``...)."""

    wire_pattern = r"Unsupported token signing algorithm: .*"


class MissingRequiredClaim(InvalidIdentityToken):
    """Raised when one of :data:`REQUIRED_CLAIMS` is absent or empty."""

    wire_pattern = r"Missing a required claim: .*"


class InvalidClaimType(InvalidIdentityToken):
    """Raised when ``exp``, ``iat`` or ``nbf`` is not an integer (1.5, "123", true)."""

    wire_pattern = r"Invalid claim: .* must be an integer"


class NoOpenIDConnectProvider(InvalidIdentityToken):
    """Raised when the account has no IAM OIDC provider for the token's ``iss``."""

    wire_pattern = r"No OpenIDConnect provider found in your account for .*"


class UntrustedCertificate(InvalidIdentityToken):
    """Raised when the issuer's HTTPS certificate is neither trusted nor a configured thumbprint."""

    wire_message = CERTIFICATE_MESSAGE


class KeyNotFound(InvalidIdentityToken):
    """Raised when the JWKS has no key for the token's ``kid`` (or no single key without one)."""

    wire_message = "Unable to find a key in the identity provider's JWKS matching the token's kid"


class InvalidSignature(InvalidIdentityToken):
    """Raised when the signature does not verify under the selected key."""

    wire_message = "The token signature could not be verified with the identity provider's key"


class ImmatureToken(InvalidIdentityToken):
    """Raised when ``nbf`` is after the current time."""

    wire_pattern = r"Token not yet valid: .*"


class IssuedInTheFuture(InvalidIdentityToken):
    """Raised when ``iat`` is after the current time."""

    wire_pattern = r"Token issued in the future: .*"


class InvalidAudience(InvalidIdentityToken):
    """Raised when the token's audience (``azp`` with several ``aud``) is not a client ID."""

    wire_message = "Incorrect token audience"


class ExpiredToken(StsError):
    """Raised when the current time is at or after ``exp``."""

    wire_code = "ExpiredTokenException"
    wire_pattern = r"Token expired: .*|Token too old: .*"


class IDPCommunicationError(StsError):
    """Raised when the issuer's discovery document or JWKS cannot be read (botocore retries)."""

    wire_code = "IDPCommunicationError"
    wire_message = IDP_UNREACHABLE_MESSAGE


class AccessDenied(StsError):
    """Raised when the role cannot be assumed with this token (403, one message for all causes)."""

    wire_code = "AccessDenied"
    http_status = 403
    wire_message = ACCESS_DENIED_MESSAGE


class RoleNotFound(AccessDenied):
    """Raised when ``RoleArn`` names no role (STS does not say so: AccessDenied)."""


class TrustPolicyDenied(AccessDenied):
    """Raised when the role's trust policy does not let the token in, or cannot be read."""

    decision: Decision | None = None


class SessionPermissionDenied(TrustPolicyDenied):
    """Raised when the token passes session tags or a source identity and the trust policy
    does not also allow ``sts:TagSession`` or ``sts:SetSourceIdentity`` (IAM User Guide,
    "Permissions required to add session tags", "Permissions required to set source
    identity"). ``action`` in the detail names the action refused."""


class MalformedPolicyDocument(StsError):
    """Raised when the session policy is not a valid policy."""

    wire_code = "MalformedPolicyDocument"
    wire_pattern = r".*"


class PackedPolicyTooLarge(StsError):
    """Raised when the session policies take more than the packed space allows."""

    wire_code = "PackedPolicyTooLarge"
    wire_pattern = r"Packed policy consumes \d+% of allotted space.*"


class SessionTagsTooLarge(PackedPolicyTooLarge):
    """Raised when the session tags take more than the packed space allows; the text is
    STS's (aws-actions/configure-aws-credentials#1803, #1898)."""

    wire_pattern = r"Packed size of session tags consumes \d+% of allotted space\."


def _tree(cls: type[StsError]) -> list[type[StsError]]:
    """``cls`` and every subclass, children before their parent."""
    out: list[type[StsError]] = []
    for sub in cls.__subclasses__():
        out += _tree(sub)
    return out + [cls]


def failure_from_wire(code: str, message: str) -> type[StsError] | None:
    """The most precise class for an error seen on the wire (a boto3 ``ClientError``).

    The code picks the branch and each class recognises the text it sends itself;
    when none does, the branch's own class. None for a code that is not an
    AssumeRoleWithWebIdentity refusal.
    """
    branch: type[StsError] | None = None
    for cls in _tree(StsError):
        if cls is StsError or cls.wire_code != code:
            continue
        if cls.says(message):
            return cls
        if getattr(cls.__mro__[1], "wire_code", None) != code:
            branch = cls
    return branch


def adopt(err: AwsError) -> StsError:
    """An :class:`AwsError` from the OIDC client (or IAM) as the class that names it."""
    if isinstance(err, StsError):
        return err
    cls: type[StsError] = failure_from_wire(err.code, err.message) or StsError
    out = cls(err.message, err.explanation, **err.detail)
    out.status, out.sender, out.code = err.status, err.sender, err.code
    return out
