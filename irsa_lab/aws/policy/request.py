"""The request a policy is evaluated against: what is asked, by whom, with which keys.

:class:`RequestContext` is the input of :func:`.evaluation.evaluate`;
:func:`oidc_trust_context` builds the one STS evaluates a role's trust policy with for
``AssumeRoleWithWebIdentity`` (docs/reference/sts.md §2.3); :func:`global_keys` the
``aws:`` keys of a request signed by a user or a role session, as the IAM User Guide's
"AWS global condition context keys" lists them, each present exactly when its
**Availability** says.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ...clock import rfc3339
from ..arns import WEB_IDENTITY_ACTION, arn_account, oidc_provider_host_path
from .grammar import ACCOUNT_ID_PATTERN, scalar_text

__all__ = [
    "PrincipalType",
    "RequestContext",
    "account_of",
    "global_keys",
    "oidc_trust_context",
    "request_values",
]

PrincipalType = Literal["User", "AssumedRole"]
"""``aws:PrincipalType`` of the callers the lab has: an IAM user, a role session."""


@dataclass(frozen=True)
class RequestContext:
    """What is being asked: the action, the resource, who asks, and the condition keys.

    ``resource`` is None for a trust policy (the resource is the role). ``principal`` maps
    a principal type to every identity the caller has, e.g. ``{"Federated": [provider
    ARN]}`` or ``{"AWS": [session ARN, role ARN]}``. ``keys`` are the condition context;
    their names are matched case-insensitively, a value may be one string or a list.
    """

    action: str
    resource: str | None = None
    principal: Mapping[str, Sequence[str]] = field(default_factory=dict)
    keys: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


def request_values(value: Any) -> list[str]:
    """A request value as a list of strings (one string stays one value)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [_text(v) for v in value]
    return [_text(value)]


def _text(value: Any) -> str:
    text = scalar_text(value)
    return str(value) if text is None else text


def account_of(arn: str) -> str | None:
    """The account an account id or an ARN stands for; None for anything else."""
    if ACCOUNT_ID_PATTERN.fullmatch(arn):
        return arn
    if len(arn.split(":", 5)) != 6 or not arn.startswith("arn:"):
        return None
    return arn_account(arn)


def oidc_trust_context(
    provider_arn: str,
    claims: Mapping[str, Any],
    *,
    session_name: str | None = None,
    now: float | None = None,
    region: str | None = None,
) -> RequestContext:
    """The request STS evaluates a trust policy with for AssumeRoleWithWebIdentity.

    The caller is the OIDC provider (``Principal.Federated``); the condition keys are
    ``<provider url>:sub`` and ``<provider url>:aud`` (the URL without ``https://``, as in
    the provider ARN), plus the ``aws:`` keys STS sets for web identities, among them
    ``aws:FederatedProvider`` (the provider ARN, which the global keys reference says is
    present "in the role-trust policy when an OIDC provider is used"). A token with
    several audiences is matched on its ``azp``, as STS does. ``session_name`` adds
    ``sts:RoleSessionName``; ``now`` adds ``aws:CurrentTime``/``aws:EpochTime`` and
    ``aws:SecureTransport`` (STS is served over HTTPS); ``region`` adds
    ``aws:RequestedRegion``.
    """
    url = oidc_provider_host_path(provider_arn)
    keys: dict[str, str | Sequence[str]] = {}
    if "sub" in claims:
        keys[f"{url}:sub"] = str(claims["sub"])
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    if isinstance(aud, list) and "azp" in claims:
        aud = claims["azp"]
    if isinstance(aud, str):
        keys[f"{url}:aud"] = aud
    elif isinstance(aud, list):
        keys[f"{url}:aud"] = [str(a) for a in aud]
    account = account_of(provider_arn)
    if account:
        keys["aws:PrincipalAccount"] = account
    keys["aws:PrincipalType"] = "User"
    keys["aws:userid"] = provider_arn
    keys["aws:FederatedProvider"] = provider_arn
    if session_name is not None:
        keys["sts:RoleSessionName"] = session_name
    if now is not None:
        keys.update(_time_keys(now))
        keys["aws:SecureTransport"] = "true"
    if region:
        keys["aws:RequestedRegion"] = region
    return RequestContext(
        action=WEB_IDENTITY_ACTION,
        resource=None,
        principal={"Federated": [provider_arn]},
        keys=keys,
    )


def _time_keys(now: float) -> dict[str, str]:
    return {"aws:CurrentTime": rfc3339(now), "aws:EpochTime": str(int(now))}


def global_keys(
    *,
    now: float,
    region: str,
    principal_type: PrincipalType,
    principal_arn: str,
    userid: str,
    username: str | None = None,
    principal_tags: Mapping[str, str] | None = None,
    source_identity: str | None = None,
    token_issue_time: float | None = None,
    federated_provider: str | None = None,
    secure_transport: bool = True,
) -> dict[str, str]:
    """The ``aws:`` condition keys of a signed request (docs/reference/sts.md §6.2).

    Always present: ``aws:CurrentTime``, ``aws:EpochTime``, ``aws:PrincipalArn`` (for a
    role session the ROLE's ARN, not the session's), ``aws:PrincipalAccount``,
    ``aws:PrincipalType``, ``aws:userid``, ``aws:RequestedRegion``,
    ``aws:SecureTransport``, ``aws:PrincipalIsAWSService`` and ``aws:ViaAWSService``
    (``false``: the lab's callers are never AWS services). Present only in some requests:
    ``aws:username`` (IAM users), ``aws:PrincipalTag/<key>`` (per tag the principal or
    session has), ``aws:SourceIdentity`` (when the session has one),
    ``aws:TokenIssueTime`` (temporary credentials) and ``aws:FederatedProvider`` (a
    session assumed with a web identity).
    """
    keys: dict[str, str] = _time_keys(now)
    keys["aws:PrincipalArn"] = principal_arn
    keys["aws:PrincipalAccount"] = arn_account(principal_arn)
    keys["aws:PrincipalType"] = principal_type
    keys["aws:userid"] = userid
    keys["aws:RequestedRegion"] = region
    keys["aws:SecureTransport"] = "true" if secure_transport else "false"
    keys["aws:PrincipalIsAWSService"] = "false"
    keys["aws:ViaAWSService"] = "false"
    if username is not None:
        keys["aws:username"] = username
    for tag, value in (principal_tags or {}).items():
        keys[f"aws:PrincipalTag/{tag}"] = value
    if source_identity is not None:
        keys["aws:SourceIdentity"] = source_identity
    if token_issue_time is not None:
        keys["aws:TokenIssueTime"] = rfc3339(token_issue_time)
    if federated_provider is not None:
        keys["aws:FederatedProvider"] = federated_provider
    return keys
