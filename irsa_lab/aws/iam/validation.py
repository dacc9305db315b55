"""IAM's input constraints, each refused in IAM's own words.

One checker per kind of field an IAM call takes (role name, path, policy document,
ARN, tag...). A value that breaks a constraint raises ``ValidationError`` worded the
way IAM's service model words it ("1 validation error detected: Value 'x' at
'roleName' failed to satisfy constraint: ..."), or IAM's own ``InvalidInput`` and
``LimitExceeded`` where IAM checks beyond the model. Checkers return the value, so a
call can check and use it in one place.

Policy documents are read by the lab's policy grammar, which says where a fault is
and why; IAM's own message says neither. :func:`identity_policy` and
:func:`trust_policy` send IAM's text alone and keep the grammar's account in the
error's ``explanation``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable

from ...constants import IAM_MAX_TRUST_POLICY_SIZE, MAX_ROLE_SESSION_DURATION_S
from ..errors import AwsError
from ..policy import Policy, PolicyKind, parse_policy
from ..policy.grammar import wire_text

__all__ = [
    "MAX_TAGS",
    "check_str",
    "client_id",
    "description",
    "document",
    "iam_policy_error",
    "identity_policy",
    "invalid",
    "path",
    "policy_arn",
    "policy_chars",
    "policy_name",
    "role_name",
    "session_duration",
    "tags",
    "thumbprint",
    "trust_policy",
    "unknown_principal",
    "version_id",
]

MAX_TAGS = 50  # tags per role or provider


def invalid(field: str, value: object, constraint: str) -> AwsError:
    """The ``ValidationError`` for ``field`` holding ``value`` (``None``: missing)."""
    shown = "null" if value is None else f"'{value}'"
    return AwsError(
        "ValidationError",
        f"1 validation error detected: Value {shown} at '{field}' failed to satisfy "
        f"constraint: {constraint}",
        400,
    )


_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def check_str(
    field: str,
    value: str,
    *,
    min_len: int = 0,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
) -> str:
    """A string field: its length, no control characters, and ``pattern`` if given."""
    if len(value) < min_len:
        raise invalid(field, value, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and len(value) > max_len:
        raise invalid(field, value, f"Member must have length less than or equal to {max_len}")
    if _XML_INVALID.search(value):
        raise invalid(field, value, "Member must not contain control characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise invalid(
            field, value, f"Member must satisfy regular expression pattern: {pattern.pattern}"
        )
    return value


_NAME_RE = re.compile(r"[\w+=,.@-]+")


def role_name(value: str, field: str = "roleName") -> str:
    """A role name: 1 to 64 of ``[\\w+=,.@-]``."""
    return check_str(field, value, min_len=1, max_len=64, pattern=_NAME_RE)


def policy_name(value: str) -> str:
    """An inline policy's name: 1 to 128 of ``[\\w+=,.@-]``."""
    return check_str("policyName", value, min_len=1, max_len=128, pattern=_NAME_RE)


_PATH_RE = re.compile(r"/|/[\u0021-\u007e]+/")


def path(value: str) -> str:
    """A role path: ``/`` or ``/text/``."""
    return check_str("path", value, min_len=1, max_len=512, pattern=_PATH_RE)


_DESCRIPTION_RE = re.compile(r"[\u0009\u000a\u000d\u0020-\u007e\u00a1-\u00ff]*")


def description(value: str) -> str:
    """A role description: up to 1000 printable characters."""
    return check_str("description", value, max_len=1000, pattern=_DESCRIPTION_RE)


_VERSION_RE = re.compile(r"v[1-9][0-9]*(\.[A-Za-z0-9-]*)?")


def version_id(value: str) -> str:
    """A policy version id: ``v1``, ``v2`` ..."""
    return check_str("versionId", value, pattern=_VERSION_RE)


def client_id(value: str) -> str:
    """An OIDC provider's client id (an audience): 1 to 255 characters."""
    return check_str("clientID", value, min_len=1, max_len=255)


_THUMBPRINT_RE = re.compile(r"[0-9A-Fa-f]{40}")


def thumbprint(value: str) -> str:
    """A certificate thumbprint: 40 hex digits."""
    if not _THUMBPRINT_RE.fullmatch(value):
        raise invalid(
            "thumbprintList",
            value,
            "Member must have length 40 and contain only hexadecimal digits",
        )
    return value


def policy_arn(value: str, field: str = "policyArn") -> str:
    """An ARN field: its length, then IAM's own ``InvalidInput`` if it is no ARN."""
    check_str(field, value, min_len=20, max_len=2048)
    if not value.startswith("arn:") or value.count(":") < 5:
        raise AwsError("InvalidInput", f"ARN {value} is not valid.", 400)
    return value


_DOC_RE = re.compile(r"[\u0009\u000a\u000d\u0020-\u00ff]+")


def document(field: str, value: str) -> str:
    """A policy document's text, before its grammar is read."""
    return check_str(field, value, min_len=1, max_len=131072, pattern=_DOC_RE)


def policy_chars(text: str) -> int:
    """A policy's size as IAM counts it against quotas: without white space."""
    return sum(1 for ch in text if not ch.isspace())


# IAM's answer to a Principal in a policy attached to an identity (PutRolePolicy,
# CreatePolicy); the grammar's "Has prohibited field Principal" is the policy editor's.
NO_PRINCIPAL = "Policy document should not specify a principal."
_PRINCIPAL_FIELDS = ("Has prohibited field Principal", "Has prohibited field NotPrincipal")


def iam_policy_error(err: AwsError, kind: PolicyKind) -> AwsError:
    """The grammar's ``MalformedPolicyDocument`` as IAM sends it for a ``kind`` policy.

    The message becomes IAM's text alone; where the fault is and why stays in the
    ``explanation``. Other errors are returned unchanged.
    """
    if err.code != "MalformedPolicyDocument":
        return err
    wire = wire_text(err)
    if kind == "identity" and wire in _PRINCIPAL_FIELDS:
        wire = NO_PRINCIPAL
    return AwsError(err.code, wire, err.status, explanation=err.explanation, detail=err.detail)


def _parsed(text: str, kind: PolicyKind) -> Policy:
    try:
        return parse_policy(text, kind=kind)
    except AwsError as err:
        raise iam_policy_error(err, kind) from None


def identity_policy(text: str) -> Policy:
    """A permission policy (inline or managed), grammatical as one, in IAM's words."""
    return _parsed(text, "identity")


def unknown_principal(value: str) -> AwsError:
    """IAM's refusal of a trust policy naming a role or user that does not exist.

    IAM stores such a principal as the entity's unique id, so it must exist when the
    policy is saved; the message quotes type and value as JSON.
    """
    return AwsError(
        "MalformedPolicyDocument",
        f"Invalid principal in policy: {json.dumps('AWS')}:{json.dumps(value)}",
        400,
        explanation=f"the trust policy names {value}, which does not exist in this "
        "account: IAM resolves a role or user principal to its unique id when the policy "
        "is saved, so the entity must exist first",
    )


def trust_policy(text: str, exists: Callable[[str], bool] | None = None) -> str:
    """A trust policy IAM stores: within the role's quota, grammatical as a trust policy,
    and naming only roles and users that ``exists`` knows (when given)."""
    if policy_chars(text) > IAM_MAX_TRUST_POLICY_SIZE:
        raise AwsError(
            "LimitExceeded",
            f"Cannot exceed quota for ACLSizePerRole: {IAM_MAX_TRUST_POLICY_SIZE}",
            409,
        )
    policy = _parsed(text, "trust")
    if exists is not None:
        for st in policy.statements:
            for principal in (st.principal, st.not_principal):
                if principal is None or isinstance(principal, str):  # absent, or "*"
                    continue
                for ptype, value in principal:
                    if ptype == "AWS" and not exists(value):
                        raise unknown_principal(value)
    return text


def session_duration(value: int) -> int:
    """A role's maximum session duration: one hour to the IAM maximum."""
    if value < 3600:
        raise invalid(
            "maxSessionDuration", value, "Member must have value greater than or equal to 3600"
        )
    if value > MAX_ROLE_SESSION_DURATION_S:
        raise invalid(
            "maxSessionDuration",
            value,
            f"Member must have value less than or equal to {MAX_ROLE_SESSION_DURATION_S}",
        )
    return value


def _tag_text(field: str, value: str, min_len: int, max_len: int) -> None:
    # IAM's pattern is [\p{L}\p{Z}\p{N}_.:/=+\-@]: letters, separators, numbers, a few signs.
    check_str(field, value, min_len=min_len, max_len=max_len)
    for ch in value:
        if not (ch.isalnum() or unicodedata.category(ch).startswith("Z") or ch in "_.:/=+-@"):
            raise invalid(
                field,
                value,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            )


def tags(found: list[dict[str, str]]) -> list[dict[str, str]]:
    """A tag list: at most :data:`MAX_TAGS`, each with a key; a missing value becomes ``""``."""
    if len(found) > MAX_TAGS:
        raise invalid("tags", "...", f"Member must have length less than or equal to {MAX_TAGS}")
    for t in found:
        if "Key" not in t:
            raise invalid("tags.member.key", None, "Member must not be null")
        t.setdefault("Value", "")
        _tag_text("tags.member.key", t["Key"], 1, 128)
        _tag_text("tags.member.value", t["Value"], 0, 256)
    return found
