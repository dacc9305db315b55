"""IAM's operations: roles, their policies, managed policies and OIDC providers.

Plain functions over an :class:`~irsa_lab.aws.model.Account`, one per IAM API call
(``create_role``, ``attach_role_policy``, ``create_open_id_connect_provider`` ...).
Each checks its input as IAM does (:mod:`.validation`) and raises :class:`AwsError`
with IAM's own code, status and message; notebooks and tests call them directly,
and :mod:`.service` serves them over IAM's query protocol.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ...constants import (
    IAM_MAX_MANAGED_POLICIES_PER_ROLE,
    IAM_MAX_OIDC_CLIENT_IDS,
    IAM_MAX_OIDC_THUMBPRINTS,
    IAM_MAX_ROLE_POLICY_SIZE,
)
from ..arns import issuer_host_path, oidc_provider_arn, role_arn
from ..errors import AwsError
from ..managed import version_facts
from ..model import Account, ManagedPolicy, OidcProvider, Role
from . import validation as V

__all__ = [
    "PolicyView",
    "add_client_id_to_open_id_connect_provider",
    "attach_role_policy",
    "create_open_id_connect_provider",
    "create_role",
    "delete_open_id_connect_provider",
    "delete_role",
    "delete_role_policy",
    "detach_role_policy",
    "get_open_id_connect_provider",
    "get_policy",
    "get_policy_version",
    "get_role",
    "get_role_policy",
    "list_attached_role_policies",
    "list_open_id_connect_providers",
    "list_role_policies",
    "list_roles",
    "policy_document",
    "put_role_policy",
    "remove_client_id_from_open_id_connect_provider",
    "update_assume_role_policy",
    "update_role",
]


def _no_such_role(name: str) -> AwsError:
    return AwsError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)


def _role(account: Account, name: str) -> Role:
    role = account.roles.get(name)
    if role is None:
        raise _no_such_role(name)
    return role


def _principal_exists(account: Account, value: str) -> bool:
    """Whether IAM can resolve an ``AWS`` principal of a trust policy being saved.

    A role or user of this account must exist (IAM stores it as its unique id). Account
    ids, ``:root``, session ARNs and other accounts' entities are taken as written:
    the lab models one account. Call with ``account.lock`` held.
    """
    prefix = f"arn:aws:iam::{account.account_id}:"
    if not value.startswith(prefix):
        return True
    kind = value[len(prefix) :].split("/", 1)[0]
    if kind == "role":
        return account.role_by_arn(value) is not None
    if kind == "user":
        return any(c.kind == "user" and c.arn == value for c in account.credentials.values())
    return True


# --- roles --------------------------------------------------------------------------
def create_role(
    account: Account,
    *,
    role_name: str,
    assume_role_policy_document: str,
    path: str = "/",
    description: str = "",
    max_session_duration: int = 3600,
    tags: Iterable[dict[str, str]] = (),
) -> Role:
    """CreateRole: a new role trusting whoever the trust policy names."""
    V.role_name(role_name)
    V.path(path)
    V.description(description)
    V.session_duration(max_session_duration)
    V.document("assumeRolePolicyDocument", assume_role_policy_document)
    with account.lock:
        V.trust_policy(assume_role_policy_document, lambda p: _principal_exists(account, p))
        # Role names are unique without regard to case.
        for existing in account.roles:
            if existing.lower() == role_name.lower():
                raise AwsError(
                    "EntityAlreadyExists", f"Role with name {role_name} already exists.", 409
                )
        role = Role(
            name=role_name,
            arn=role_arn(account.account_id, role_name, path=path),
            role_id=account.ids.aws_unique_id("AROA"),
            trust_policy=assume_role_policy_document,
            create_date=account.clock.now(),
            path=path,
            description=description,
            max_session_duration=max_session_duration,
            tags=[dict(t) for t in tags],
        )
        account.roles[role_name] = role
        return role


def get_role(account: Account, role_name: str) -> Role:
    """GetRole."""
    V.role_name(role_name)
    with account.lock:
        return _role(account, role_name)


def list_roles(account: Account, path_prefix: str = "/") -> list[Role]:
    """ListRoles, in name order, filtered by path prefix."""
    with account.lock:
        roles = [r for r in account.roles.values() if r.path.startswith(path_prefix)]
    return sorted(roles, key=lambda r: r.name.lower())


def update_assume_role_policy(account: Account, role_name: str, policy_document: str) -> None:
    """UpdateAssumeRolePolicy: replace the trust policy (checked as a trust policy)."""
    V.role_name(role_name)
    V.document("policyDocument", policy_document)
    with account.lock:
        role = _role(account, role_name)
        role.trust_policy = V.trust_policy(policy_document, lambda p: _principal_exists(account, p))


def update_role(
    account: Account,
    role_name: str,
    *,
    description: str | None = None,
    max_session_duration: int | None = None,
) -> Role:
    """UpdateRole: description and maximum session duration."""
    V.role_name(role_name)
    if description is not None:
        V.description(description)
    if max_session_duration is not None:
        V.session_duration(max_session_duration)
    with account.lock:
        role = _role(account, role_name)
        if description is not None:
            role.description = description
        if max_session_duration is not None:
            role.max_session_duration = max_session_duration
        return role


def delete_role(account: Account, role_name: str) -> None:
    """DeleteRole; refused while policies are still attached or embedded."""
    V.role_name(role_name)
    with account.lock:
        role = _role(account, role_name)
        if role.attached_policies:
            raise AwsError(
                "DeleteConflict", "Cannot delete entity, must detach all policies first.", 409
            )
        if role.inline_policies:
            raise AwsError(
                "DeleteConflict", "Cannot delete entity, must delete policies first.", 409
            )
        del account.roles[role_name]


# --- inline role policies -------------------------------------------------------------
def put_role_policy(
    account: Account, role_name: str, policy_name: str, policy_document: str
) -> None:
    """PutRolePolicy: add or replace an inline permission policy."""
    V.role_name(role_name)
    V.policy_name(policy_name)
    V.document("policyDocument", policy_document)
    V.identity_policy(policy_document)
    with account.lock:
        role = _role(account, role_name)
        others = sum(V.policy_chars(d) for n, d in role.inline_policies.items() if n != policy_name)
        if others + V.policy_chars(policy_document) > IAM_MAX_ROLE_POLICY_SIZE:
            raise AwsError(
                "LimitExceeded",
                f"Maximum policy size of {IAM_MAX_ROLE_POLICY_SIZE} bytes exceeded for role "
                f"{role_name}",
                409,
            )
        role.inline_policies[policy_name] = policy_document


def _inline(role: Role, policy_name: str) -> str:
    doc = role.inline_policies.get(policy_name)
    if doc is None:
        raise AwsError(
            "NoSuchEntity", f"The role policy with name {policy_name} cannot be found.", 404
        )
    return doc


def get_role_policy(account: Account, role_name: str, policy_name: str) -> str:
    """GetRolePolicy: the inline policy's JSON text."""
    V.role_name(role_name)
    V.policy_name(policy_name)
    with account.lock:
        return _inline(_role(account, role_name), policy_name)


def delete_role_policy(account: Account, role_name: str, policy_name: str) -> None:
    """DeleteRolePolicy."""
    V.role_name(role_name)
    V.policy_name(policy_name)
    with account.lock:
        role = _role(account, role_name)
        _inline(role, policy_name)
        del role.inline_policies[policy_name]


def list_role_policies(account: Account, role_name: str) -> list[str]:
    """ListRolePolicies: inline policy names, sorted."""
    V.role_name(role_name)
    with account.lock:
        return sorted(_role(account, role_name).inline_policies)


# --- managed policies -------------------------------------------------------------------
def _managed(account: Account, arn: str, message: str) -> ManagedPolicy:
    policy = account.managed_policies.get(arn)
    if policy is None:
        raise AwsError("NoSuchEntity", message, 404)
    return policy


def attach_role_policy(account: Account, role_name: str, policy_arn: str) -> None:
    """AttachRolePolicy (attaching twice is a no-op, as in IAM)."""
    V.role_name(role_name)
    V.policy_arn(policy_arn)
    with account.lock:
        role = _role(account, role_name)
        _managed(account, policy_arn, f"Policy {policy_arn} does not exist or is not attachable.")
        if policy_arn in role.attached_policies:
            return
        if len(role.attached_policies) >= IAM_MAX_MANAGED_POLICIES_PER_ROLE:
            raise AwsError(
                "LimitExceeded",
                f"Cannot exceed quota for PoliciesPerRole: {IAM_MAX_MANAGED_POLICIES_PER_ROLE}",
                409,
            )
        role.attached_policies.append(policy_arn)


def detach_role_policy(account: Account, role_name: str, policy_arn: str) -> None:
    """DetachRolePolicy."""
    V.role_name(role_name)
    V.policy_arn(policy_arn)
    with account.lock:
        role = _role(account, role_name)
        if policy_arn not in role.attached_policies:
            raise AwsError("NoSuchEntity", f"Policy {policy_arn} was not found.", 404)
        role.attached_policies.remove(policy_arn)


def list_attached_role_policies(account: Account, role_name: str) -> list[ManagedPolicy]:
    """ListAttachedRolePolicies, in attachment order."""
    V.role_name(role_name)
    with account.lock:
        role = _role(account, role_name)
        return [
            account.managed_policies[a]
            for a in role.attached_policies
            if a in account.managed_policies
        ]


@dataclass(frozen=True)
class PolicyView:
    """A managed policy as GetPolicy shows it."""

    policy: ManagedPolicy
    default_version_id: str
    update_date: float
    attachment_count: int


def get_policy(account: Account, policy_arn: str) -> PolicyView:
    """GetPolicy: metadata of a managed policy, with how many roles use it."""
    V.policy_arn(policy_arn)
    with account.lock:
        policy = _managed(account, policy_arn, f"Policy {policy_arn} was not found.")
        count = sum(policy_arn in r.attached_policies for r in account.roles.values())
    version, updated = version_facts(policy_arn, policy.create_date)
    return PolicyView(policy, version, updated, count)


def get_policy_version(
    account: Account, policy_arn: str, version_id: str
) -> tuple[PolicyView, str]:
    """GetPolicyVersion: only the default version is kept."""
    V.version_id(version_id)
    view = get_policy(account, policy_arn)
    if version_id != view.default_version_id:
        raise AwsError(
            "NoSuchEntity", f"Policy {policy_arn} version {version_id} does not exist.", 404
        )
    return view, view.policy.document


# --- OIDC providers -------------------------------------------------------------------------
def _provider(account: Account, arn: str) -> OidcProvider:
    V.policy_arn(arn, "openIDConnectProviderArn")
    provider = account.oidc_providers.get(arn)
    if provider is None:
        raise AwsError("NoSuchEntity", f"OpenIDConnect Provider not found for arn {arn}", 404)
    return provider


def create_open_id_connect_provider(
    account: Account,
    *,
    url: str,
    client_ids: Iterable[str] = (),
    thumbprints: Iterable[str] = (),
    tags: Iterable[dict[str, str]] = (),
) -> OidcProvider:
    """CreateOpenIDConnectProvider. IAM stores the URL without ``https://``."""
    V.check_str("url", url, min_len=1, max_len=255)
    clients = [V.client_id(c) for c in client_ids]
    prints = list(thumbprints)
    if not url.startswith("https://"):
        raise AwsError("InvalidInput", "The URL must begin with https://", 400)
    host_path = issuer_host_path(url)
    if not host_path or any(not "!" <= ch <= "~" or ch in "?#" for ch in host_path):
        raise AwsError("InvalidInput", f"The URL {url} is not valid.", 400)
    if ":" in host_path.split("/", 1)[0]:
        raise AwsError("InvalidInput", "The URL must not include a port.", 400)
    if len(clients) > IAM_MAX_OIDC_CLIENT_IDS:
        raise AwsError(
            "LimitExceeded",
            f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {IAM_MAX_OIDC_CLIENT_IDS}",
            409,
        )
    if len(prints) > IAM_MAX_OIDC_THUMBPRINTS:
        raise AwsError(
            "InvalidInput",
            f"Thumbprint list must contain fewer than {IAM_MAX_OIDC_THUMBPRINTS + 1} entries.",
            400,
        )
    for tp in prints:
        V.thumbprint(tp)
    arn = oidc_provider_arn(account.account_id, host_path)
    with account.lock:
        if arn in account.oidc_providers:
            raise AwsError("EntityAlreadyExists", f"Provider with url {url} already exists.", 409)
        provider = OidcProvider(
            url=host_path,
            arn=arn,
            client_ids=list(dict.fromkeys(clients)),
            thumbprints=[tp.lower() for tp in prints],
            create_date=account.clock.now(),
            tags=[dict(t) for t in tags],
        )
        account.oidc_providers[arn] = provider
        return provider


def get_open_id_connect_provider(account: Account, arn: str) -> OidcProvider:
    """GetOpenIDConnectProvider."""
    with account.lock:
        return _provider(account, arn)


def list_open_id_connect_providers(account: Account) -> list[OidcProvider]:
    """ListOpenIDConnectProviders, by ARN."""
    with account.lock:
        return sorted(account.oidc_providers.values(), key=lambda p: p.arn)


def delete_open_id_connect_provider(account: Account, arn: str) -> None:
    """DeleteOpenIDConnectProvider: tokens of that issuer stop working at once."""
    with account.lock:
        _provider(account, arn)
        del account.oidc_providers[arn]


def add_client_id_to_open_id_connect_provider(account: Account, arn: str, client_id: str) -> None:
    """AddClientIDToOpenIDConnectProvider (an audience already there is a no-op)."""
    V.client_id(client_id)
    with account.lock:
        provider = _provider(account, arn)
        if client_id in provider.client_ids:
            return
        if len(provider.client_ids) >= IAM_MAX_OIDC_CLIENT_IDS:
            raise AwsError(
                "LimitExceeded",
                "Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: "
                f"{IAM_MAX_OIDC_CLIENT_IDS}",
                409,
            )
        provider.client_ids.append(client_id)


def remove_client_id_from_open_id_connect_provider(
    account: Account, arn: str, client_id: str
) -> None:
    """RemoveClientIDFromOpenIDConnectProvider (an absent audience is a no-op, as in IAM)."""
    V.client_id(client_id)
    with account.lock:
        provider = _provider(account, arn)
        if client_id in provider.client_ids:
            provider.client_ids.remove(client_id)


def policy_document(text: str) -> dict[str, Any]:
    """A stored policy document as a dict (for notebooks that print it)."""
    return dict(json.loads(text))
