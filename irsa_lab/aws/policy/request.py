"""The request a policy is evaluated against: what is asked, by whom, with which keys.

:class:`RequestContext` is the input of :func:`.evaluation.evaluate`;
:func:`oidc_trust_context` builds the one STS evaluates a role's trust policy with for
``AssumeRoleWithWebIdentity`` (docs/reference/sts.md §2.3).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..arns import WEB_IDENTITY_ACTION, arn_account, oidc_provider_host_path
from .grammar import ACCOUNT_ID_PATTERN, scalar_text

__all__ = ["RequestContext", "account_of", "oidc_trust_context", "request_values"]


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


def oidc_trust_context(provider_arn: str, claims: Mapping[str, Any]) -> RequestContext:
    """The request STS evaluates a trust policy with for AssumeRoleWithWebIdentity.

    The caller is the OIDC provider (``Principal.Federated``); the condition keys are
    ``<provider url>:sub`` and ``<provider url>:aud`` (the URL without ``https://``, as in
    the provider ARN), plus the ``aws:`` keys STS sets for web identities. A token with
    several audiences is matched on its ``azp``, as STS does.
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
    return RequestContext(
        action=WEB_IDENTITY_ACTION,
        resource=None,
        principal={"Federated": [provider_arn]},
        keys=keys,
    )
