"""The IAM stand-in: roles, role policies, managed policies and OIDC providers.

Two layers. The *operations* (``create_role``, ``attach_role_policy``,
``create_open_id_connect_provider``...) are plain functions over an
:class:`~irsa_lab.aws.model.Account` that raise :class:`AwsError` with IAM's own
codes and messages; notebooks and tests call them directly. :func:`make_app`
wraps them in IAM's query protocol (form ``POST /``, SigV4 with service ``iam``,
XML in the ``https://iam.amazonaws.com/doc/2010-05-08/`` namespace), which is
what boto3's ``iam`` client and ``aws iam`` speak.

Only the administrator's long-term keys are meant to manage IAM here; any other
caller is judged by its role's permission policies, which in the default
scenario never allow an ``iam:`` action, so it gets ``AccessDenied``.

Policy documents come back URL-encoded, as IAM sends them; botocore decodes them
into dicts (its ``json_decode_policies`` handler), so ``get_role`` gives the trust
policy as the dict that was put.
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..clock import Clock, rfc3339
from ..constants import (
    IAM_API_VERSION,
    IAM_MAX_MANAGED_POLICIES_PER_ROLE,
    IAM_MAX_OIDC_CLIENT_IDS,
    IAM_MAX_OIDC_THUMBPRINTS,
    IAM_MAX_ROLE_POLICY_SIZE,
    IAM_MAX_TRUST_POLICY_SIZE,
    IAM_NS,
    MAX_ROLE_SESSION_DURATION_S,
)
from ..trace import Trace
from .errors import AwsError
from .managed import version_facts
from .model import Account, Credential, ManagedPolicy, OidcProvider, Role
from .policy import RequestContext, evaluate, parse_policy
from .query import element, elements, error_response, parse_query, xml_response
from .sigv4 import SigV4Failure, authenticate, to_aws_error

__all__ = [
    "ACTIONS",
    "add_client_id_to_open_id_connect_provider",
    "attach_role_policy",
    "authorize_iam_call",
    "create_open_id_connect_provider",
    "create_role",
    "delete_open_id_connect_provider",
    "delete_role",
    "delete_role_policy",
    "detach_role_policy",
    "get_open_id_connect_provider",
    "get_policy",
    "get_role",
    "get_role_policy",
    "list_attached_role_policies",
    "list_open_id_connect_providers",
    "list_role_policies",
    "list_roles",
    "make_app",
    "put_role_policy",
    "remove_client_id_from_open_id_connect_provider",
    "update_assume_role_policy",
    "update_role",
]

# --- validation, worded as IAM words it ------------------------------------------
_NAME_RE = re.compile(r"[\w+=,.@-]+")
_PATH_RE = re.compile(r"/|/[\u0021-\u007e]+/")
_DOC_RE = re.compile(r"[\u0009\u000a\u000d\u0020-\u00ff]+")
_DESCRIPTION_RE = re.compile(r"[\u0009\u000a\u000d\u0020-\u007e\u00a1-\u00ff]*")
_VERSION_RE = re.compile(r"v[1-9][0-9]*(\.[A-Za-z0-9-]*)?")
_THUMBPRINT_RE = re.compile(r"[0-9A-Fa-f]{40}")
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def _invalid(field: str, value: object, constraint: str) -> AwsError:
    shown = "null" if value is None else f"'{value}'"
    return AwsError(
        "ValidationError",
        f"1 validation error detected: Value {shown} at '{field}' failed to satisfy "
        f"constraint: {constraint}",
        400,
    )


def _check_str(
    field: str,
    value: str,
    *,
    min_len: int = 0,
    max_len: int | None = None,
    pattern: re.Pattern[str] | None = None,
) -> str:
    if len(value) < min_len:
        raise _invalid(field, value, f"Member must have length greater than or equal to {min_len}")
    if max_len is not None and len(value) > max_len:
        raise _invalid(field, value, f"Member must have length less than or equal to {max_len}")
    if _XML_INVALID.search(value):
        raise _invalid(field, value, "Member must not contain control characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise _invalid(
            field, value, f"Member must satisfy regular expression pattern: {pattern.pattern}"
        )
    return value


def _role_name(value: str, field: str = "roleName") -> str:
    return _check_str(field, value, min_len=1, max_len=64, pattern=_NAME_RE)


def _policy_name(value: str) -> str:
    return _check_str("policyName", value, min_len=1, max_len=128, pattern=_NAME_RE)


def _policy_arn(value: str, field: str = "policyArn") -> str:
    _check_str(field, value, min_len=20, max_len=2048)
    if not value.startswith("arn:") or value.count(":") < 5:
        raise AwsError("InvalidInput", f"ARN {value} is not valid.", 400)
    return value


def _document(field: str, value: str) -> str:
    return _check_str(field, value, min_len=1, max_len=131072, pattern=_DOC_RE)


def _session_duration(value: int) -> int:
    if value < 3600:
        raise _invalid(
            "maxSessionDuration", value, "Member must have value greater than or equal to 3600"
        )
    if value > MAX_ROLE_SESSION_DURATION_S:
        raise _invalid(
            "maxSessionDuration",
            value,
            f"Member must have value less than or equal to {MAX_ROLE_SESSION_DURATION_S}",
        )
    return value


def _tag_text(field: str, value: str, min_len: int, max_len: int) -> None:
    # IAM's pattern is [\p{L}\p{Z}\p{N}_.:/=+\-@]: letters, separators, numbers, a few signs.
    _check_str(field, value, min_len=min_len, max_len=max_len)
    for ch in value:
        if not (ch.isalnum() or unicodedata.category(ch).startswith("Z") or ch in "_.:/=+-@"):
            raise _invalid(
                field,
                value,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            )


def _no_such_role(name: str) -> AwsError:
    return AwsError("NoSuchEntity", f"The role with name {name} cannot be found.", 404)


def _role(account: Account, name: str) -> Role:
    role = account.roles.get(name)
    if role is None:
        raise _no_such_role(name)
    return role


def _policy_chars(document: str) -> int:
    # IAM counts policy size without whitespace.
    return sum(1 for ch in document if not ch.isspace())


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
    _role_name(role_name)
    _check_str("path", path, min_len=1, max_len=512, pattern=_PATH_RE)
    _check_str("description", description, max_len=1000, pattern=_DESCRIPTION_RE)
    _session_duration(max_session_duration)
    _document("assumeRolePolicyDocument", assume_role_policy_document)
    if _policy_chars(assume_role_policy_document) > IAM_MAX_TRUST_POLICY_SIZE:
        raise AwsError(
            "LimitExceeded",
            f"Cannot exceed quota for ACLSizePerRole: {IAM_MAX_TRUST_POLICY_SIZE}",
            409,
        )
    parse_policy(assume_role_policy_document, kind="trust")
    with account.lock:
        # Role names are unique without regard to case.
        for existing in account.roles:
            if existing.lower() == role_name.lower():
                raise AwsError(
                    "EntityAlreadyExists", f"Role with name {role_name} already exists.", 409
                )
        role = Role(
            name=role_name,
            arn=f"arn:aws:iam::{account.account_id}:role{path}{role_name}",
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
    _role_name(role_name)
    with account.lock:
        return _role(account, role_name)


def list_roles(account: Account, path_prefix: str = "/") -> list[Role]:
    """ListRoles, in name order, filtered by path prefix."""
    with account.lock:
        roles = [r for r in account.roles.values() if r.path.startswith(path_prefix)]
    return sorted(roles, key=lambda r: r.name.lower())


def update_assume_role_policy(account: Account, role_name: str, policy_document: str) -> None:
    """UpdateAssumeRolePolicy: replace the trust policy (checked as a trust policy)."""
    _role_name(role_name)
    _document("policyDocument", policy_document)
    with account.lock:
        role = _role(account, role_name)
        if _policy_chars(policy_document) > IAM_MAX_TRUST_POLICY_SIZE:
            raise AwsError(
                "LimitExceeded",
                f"Cannot exceed quota for ACLSizePerRole: {IAM_MAX_TRUST_POLICY_SIZE}",
                409,
            )
        parse_policy(policy_document, kind="trust")
        role.trust_policy = policy_document


def update_role(
    account: Account,
    role_name: str,
    *,
    description: str | None = None,
    max_session_duration: int | None = None,
) -> Role:
    """UpdateRole: description and maximum session duration."""
    _role_name(role_name)
    if description is not None:
        _check_str("description", description, max_len=1000, pattern=_DESCRIPTION_RE)
    if max_session_duration is not None:
        _session_duration(max_session_duration)
    with account.lock:
        role = _role(account, role_name)
        if description is not None:
            role.description = description
        if max_session_duration is not None:
            role.max_session_duration = max_session_duration
        return role


def delete_role(account: Account, role_name: str) -> None:
    """DeleteRole; refused while policies are still attached or embedded."""
    _role_name(role_name)
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
    _role_name(role_name)
    _policy_name(policy_name)
    _document("policyDocument", policy_document)
    parse_policy(policy_document, kind="identity")
    with account.lock:
        role = _role(account, role_name)
        others = sum(_policy_chars(d) for n, d in role.inline_policies.items() if n != policy_name)
        if others + _policy_chars(policy_document) > IAM_MAX_ROLE_POLICY_SIZE:
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
    _role_name(role_name)
    _policy_name(policy_name)
    with account.lock:
        return _inline(_role(account, role_name), policy_name)


def delete_role_policy(account: Account, role_name: str, policy_name: str) -> None:
    """DeleteRolePolicy."""
    _role_name(role_name)
    _policy_name(policy_name)
    with account.lock:
        role = _role(account, role_name)
        _inline(role, policy_name)
        del role.inline_policies[policy_name]


def list_role_policies(account: Account, role_name: str) -> list[str]:
    """ListRolePolicies: inline policy names, sorted."""
    _role_name(role_name)
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
    _role_name(role_name)
    _policy_arn(policy_arn)
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
    _role_name(role_name)
    _policy_arn(policy_arn)
    with account.lock:
        role = _role(account, role_name)
        if policy_arn not in role.attached_policies:
            raise AwsError("NoSuchEntity", f"Policy {policy_arn} was not found.", 404)
        role.attached_policies.remove(policy_arn)


def list_attached_role_policies(account: Account, role_name: str) -> list[ManagedPolicy]:
    """ListAttachedRolePolicies, in attachment order."""
    _role_name(role_name)
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
    _policy_arn(policy_arn)
    with account.lock:
        policy = _managed(account, policy_arn, f"Policy {policy_arn} was not found.")
        count = sum(policy_arn in r.attached_policies for r in account.roles.values())
    version, updated = version_facts(policy_arn, policy.create_date)
    return PolicyView(policy, version, updated, count)


def get_policy_version(
    account: Account, policy_arn: str, version_id: str
) -> tuple[PolicyView, str]:
    """GetPolicyVersion: only the default version is kept."""
    _check_str("versionId", version_id, pattern=_VERSION_RE)
    view = get_policy(account, policy_arn)
    if version_id != view.default_version_id:
        raise AwsError(
            "NoSuchEntity", f"Policy {policy_arn} version {version_id} does not exist.", 404
        )
    return view, view.policy.document


# --- OIDC providers -------------------------------------------------------------------------
def _provider(account: Account, arn: str) -> OidcProvider:
    _policy_arn(arn, "openIDConnectProviderArn")
    provider = account.oidc_providers.get(arn)
    if provider is None:
        raise AwsError("NoSuchEntity", f"OpenIDConnect Provider not found for arn {arn}", 404)
    return provider


def _client_id(value: str) -> str:
    return _check_str("clientID", value, min_len=1, max_len=255)


def create_open_id_connect_provider(
    account: Account,
    *,
    url: str,
    client_ids: Iterable[str] = (),
    thumbprints: Iterable[str] = (),
    tags: Iterable[dict[str, str]] = (),
) -> OidcProvider:
    """CreateOpenIDConnectProvider. IAM stores the URL without ``https://``."""
    _check_str("url", url, min_len=1, max_len=255)
    clients = [_client_id(c) for c in client_ids]
    prints = list(thumbprints)
    if not url.startswith("https://"):
        raise AwsError("InvalidInput", "The URL must begin with https://", 400)
    host_path = url.removeprefix("https://")
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
        if not _THUMBPRINT_RE.fullmatch(tp):
            raise _invalid(
                "thumbprintList",
                tp,
                "Member must have length 40 and contain only hexadecimal digits",
            )
    arn = f"arn:aws:iam::{account.account_id}:oidc-provider/{host_path}"
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
    _client_id(client_id)
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
    _client_id(client_id)
    with account.lock:
        provider = _provider(account, arn)
        if client_id in provider.client_ids:
            provider.client_ids.remove(client_id)


# --- the query-protocol layer ------------------------------------------------------------------
class _Params:
    """The form of one request, read the way IAM reads it."""

    def __init__(self, raw: dict[str, str]) -> None:
        self.raw = raw

    def required(self, name: str) -> str:
        value = self.raw.get(name)
        if value is None:
            raise _invalid(name[0].lower() + name[1:], None, "Member must not be null")
        return value

    def optional(self, name: str) -> str | None:
        return self.raw.get(name)

    def integer(self, name: str) -> int | None:
        value = self.raw.get(name)
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            raise AwsError(
                "ValidationError", f"Invalid value for parameter {name}: {value}", 400
            ) from None

    def members(self, name: str) -> list[str]:
        out: list[tuple[int, str]] = []
        prefix = f"{name}.member."
        for key, value in self.raw.items():
            if key.startswith(prefix) and key[len(prefix) :].isdigit():
                out.append((int(key[len(prefix) :]), value))
        return [v for _, v in sorted(out)]

    def tags(self) -> list[dict[str, str]]:
        found: dict[int, dict[str, str]] = {}
        for key, value in self.raw.items():
            parts = key.split(".")
            if (
                len(parts) == 4
                and parts[0] == "Tags"
                and parts[1] == "member"
                and parts[2].isdigit()
            ):
                if parts[3] in ("Key", "Value"):
                    found.setdefault(int(parts[2]), {})[parts[3]] = value
        tags = [found[i] for i in sorted(found)]
        if len(tags) > 50:
            raise _invalid("tags", "...", "Member must have length less than or equal to 50")
        for t in tags:
            if "Key" not in t:
                raise _invalid("tags.member.key", None, "Member must not be null")
            t.setdefault("Value", "")
            _tag_text("tags.member.key", t["Key"], 1, 128)
            _tag_text("tags.member.value", t["Value"], 0, 256)
        return tags


def _quoted(document: str) -> str:
    # IAM sends policy documents URL-encoded; botocore unquotes and json-loads them.
    return quote(document, safe="")


def _tags_xml(tags: list[dict[str, str]]) -> str:
    if not tags:
        return ""
    members = "".join(
        f"<member>{element('Key', t['Key'])}{element('Value', t.get('Value', ''))}</member>"
        for t in tags
    )
    return f"<Tags>{members}</Tags>"


def _role_xml(role: Role, tag: str = "Role") -> str:
    return (
        f"<{tag}>"
        + element("Path", role.path)
        + element("RoleName", role.name)
        + element("RoleId", role.role_id)
        + element("Arn", role.arn)
        + element("CreateDate", rfc3339(role.create_date))
        + element("AssumeRolePolicyDocument", _quoted(role.trust_policy))
        + (element("Description", role.description) if role.description else "")
        + element("MaxSessionDuration", role.max_session_duration)
        + _tags_xml(role.tags)
        + "<RoleLastUsed/>"
        + f"</{tag}>"
    )


def _paged(items: list[str], params: _Params, list_xml: Callable[[list[str]], str]) -> str:
    # Marker is the index of the next item: opaque to clients, enough for paginators.
    max_items = params.integer("MaxItems") or 100
    if not 1 <= max_items <= 1000:
        raise _invalid("maxItems", max_items, "Member must have value between 1 and 1000")
    marker = params.optional("Marker")
    start = 0
    if marker is not None:
        if not marker.isdigit() or int(marker) > len(items):
            raise AwsError("InvalidInput", "Invalid Marker.", 400)
        start = int(marker)
    page = items[start : start + max_items]
    truncated = start + max_items < len(items)
    tail = element("IsTruncated", "true" if truncated else "false")
    if truncated:
        tail += element("Marker", str(start + max_items))
    return list_xml(page) + tail


def _do_create_role(account: Account, p: _Params) -> str:
    role = create_role(
        account,
        role_name=p.required("RoleName"),
        assume_role_policy_document=p.required("AssumeRolePolicyDocument"),
        path=p.optional("Path") or "/",
        description=p.optional("Description") or "",
        max_session_duration=p.integer("MaxSessionDuration") or 3600,
        tags=p.tags(),
    )
    return _role_xml(role)


def _do_get_role(account: Account, p: _Params) -> str:
    return _role_xml(get_role(account, p.required("RoleName")))


def _do_list_roles(account: Account, p: _Params) -> str:
    prefix = p.optional("PathPrefix") or "/"
    roles = {r.name: r for r in list_roles(account, prefix)}
    return _paged(
        list(roles),
        p,
        lambda names: (
            "<Roles>" + "".join(_role_xml(roles[n], "member") for n in names) + "</Roles>"
        ),
    )


def _do_update_assume_role_policy(account: Account, p: _Params) -> None:
    update_assume_role_policy(account, p.required("RoleName"), p.required("PolicyDocument"))


def _do_update_role(account: Account, p: _Params) -> str:
    update_role(
        account,
        p.required("RoleName"),
        description=p.optional("Description"),
        max_session_duration=p.integer("MaxSessionDuration"),
    )
    return ""


def _do_delete_role(account: Account, p: _Params) -> None:
    delete_role(account, p.required("RoleName"))


def _do_put_role_policy(account: Account, p: _Params) -> None:
    put_role_policy(
        account, p.required("RoleName"), p.required("PolicyName"), p.required("PolicyDocument")
    )


def _do_get_role_policy(account: Account, p: _Params) -> str:
    role_name, policy_name = p.required("RoleName"), p.required("PolicyName")
    doc = get_role_policy(account, role_name, policy_name)
    return (
        element("RoleName", role_name)
        + element("PolicyName", policy_name)
        + element("PolicyDocument", _quoted(doc))
    )


def _do_delete_role_policy(account: Account, p: _Params) -> None:
    delete_role_policy(account, p.required("RoleName"), p.required("PolicyName"))


def _do_list_role_policies(account: Account, p: _Params) -> str:
    names = list_role_policies(account, p.required("RoleName"))
    return _paged(names, p, lambda page: elements("PolicyNames", page))


def _do_attach_role_policy(account: Account, p: _Params) -> None:
    attach_role_policy(account, p.required("RoleName"), p.required("PolicyArn"))


def _do_detach_role_policy(account: Account, p: _Params) -> None:
    detach_role_policy(account, p.required("RoleName"), p.required("PolicyArn"))


def _do_list_attached_role_policies(account: Account, p: _Params) -> str:
    prefix = p.optional("PathPrefix") or "/"
    policies = {
        mp.arn: mp
        for mp in list_attached_role_policies(account, p.required("RoleName"))
        if mp.path.startswith(prefix)
    }

    def render(arns: list[str]) -> str:
        members = "".join(
            f"<member>{element('PolicyName', policies[a].name)}{element('PolicyArn', a)}</member>"
            for a in arns
        )
        return f"<AttachedPolicies>{members}</AttachedPolicies>"

    return _paged(list(policies), p, render)


def _do_get_policy(account: Account, p: _Params) -> str:
    view = get_policy(account, p.required("PolicyArn"))
    mp = view.policy
    return (
        "<Policy>"
        + element("PolicyName", mp.name)
        + element("PolicyId", mp.policy_id)
        + element("Arn", mp.arn)
        + element("Path", mp.path)
        + element("DefaultVersionId", view.default_version_id)
        + element("AttachmentCount", view.attachment_count)
        + element("PermissionsBoundaryUsageCount", 0)
        + element("IsAttachable", "true")
        + (element("Description", mp.description) if mp.description else "")
        + element("CreateDate", rfc3339(mp.create_date))
        + element("UpdateDate", rfc3339(view.update_date))
        + "</Policy>"
    )


def _do_get_policy_version(account: Account, p: _Params) -> str:
    view, document = get_policy_version(account, p.required("PolicyArn"), p.required("VersionId"))
    return (
        "<PolicyVersion>"
        + element("Document", _quoted(document))
        + element("VersionId", view.default_version_id)
        + element("IsDefaultVersion", "true")
        + element("CreateDate", rfc3339(view.update_date))
        + "</PolicyVersion>"
    )


def _do_create_oidc(account: Account, p: _Params) -> str:
    provider = create_open_id_connect_provider(
        account,
        url=p.required("Url"),
        client_ids=p.members("ClientIDList"),
        thumbprints=p.members("ThumbprintList"),
        tags=p.tags(),
    )
    return element("OpenIDConnectProviderArn", provider.arn) + _tags_xml(provider.tags)


def _do_get_oidc(account: Account, p: _Params) -> str:
    provider = get_open_id_connect_provider(account, p.required("OpenIDConnectProviderArn"))
    return (
        element("Url", provider.url)
        + elements("ClientIDList", provider.client_ids)
        + elements("ThumbprintList", provider.thumbprints)
        + element("CreateDate", rfc3339(provider.create_date))
        + _tags_xml(provider.tags)
    )


def _do_list_oidc(account: Account, p: _Params) -> str:
    members = "".join(
        f"<member>{element('Arn', prov.arn)}</member>"
        for prov in list_open_id_connect_providers(account)
    )
    return f"<OpenIDConnectProviderList>{members}</OpenIDConnectProviderList>"


def _do_delete_oidc(account: Account, p: _Params) -> None:
    delete_open_id_connect_provider(account, p.required("OpenIDConnectProviderArn"))


def _do_add_client_id(account: Account, p: _Params) -> None:
    add_client_id_to_open_id_connect_provider(
        account, p.required("OpenIDConnectProviderArn"), p.required("ClientID")
    )


def _do_remove_client_id(account: Account, p: _Params) -> None:
    remove_client_id_from_open_id_connect_provider(
        account, p.required("OpenIDConnectProviderArn"), p.required("ClientID")
    )


# Action -> (handler, which parameter names the resource, how to make its ARN).
_Handler = Callable[[Account, _Params], "str | None"]
ACTIONS: dict[str, _Handler] = {
    "CreateRole": _do_create_role,
    "GetRole": _do_get_role,
    "UpdateAssumeRolePolicy": _do_update_assume_role_policy,
    "UpdateRole": _do_update_role,
    "DeleteRole": _do_delete_role,
    "ListRoles": _do_list_roles,
    "PutRolePolicy": _do_put_role_policy,
    "GetRolePolicy": _do_get_role_policy,
    "DeleteRolePolicy": _do_delete_role_policy,
    "ListRolePolicies": _do_list_role_policies,
    "AttachRolePolicy": _do_attach_role_policy,
    "DetachRolePolicy": _do_detach_role_policy,
    "ListAttachedRolePolicies": _do_list_attached_role_policies,
    "GetPolicy": _do_get_policy,
    "GetPolicyVersion": _do_get_policy_version,
    "CreateOpenIDConnectProvider": _do_create_oidc,
    "GetOpenIDConnectProvider": _do_get_oidc,
    "ListOpenIDConnectProviders": _do_list_oidc,
    "DeleteOpenIDConnectProvider": _do_delete_oidc,
    "AddClientIDToOpenIDConnectProvider": _do_add_client_id,
    "RemoveClientIDFromOpenIDConnectProvider": _do_remove_client_id,
}


def _resource_of(account: Account, action: str, params: dict[str, str]) -> str:
    """The ARN an ``iam:<action>`` call acts on, for the permission check."""
    acct = account.account_id
    if "RoleName" in params:
        role = account.roles.get(params["RoleName"])
        return role.arn if role else f"arn:aws:iam::{acct}:role/{params['RoleName']}"
    if "OpenIDConnectProviderArn" in params:
        return params["OpenIDConnectProviderArn"]
    if "PolicyArn" in params:
        return params["PolicyArn"]
    if action == "CreateOpenIDConnectProvider":
        url = params.get("Url", "").removeprefix("https://")
        return f"arn:aws:iam::{acct}:oidc-provider/{url}"
    if action == "ListRoles":
        return f"arn:aws:iam::{acct}:role/"
    return "*"


def authorize_iam_call(
    account: Account, cred: Credential, action: str, resource: str
) -> dict[str, Any]:
    """Allow the administrator; judge anyone else by its role's permission policies.

    Returns facts for the trace; raises ``AccessDenied`` in IAM's own wording.
    """
    if cred.kind == "user":
        return {"decision": "allowed", "why": "account administrator"}
    policies = account.policies_of_role(cred.role_name) if cred.role_name else []
    decision = evaluate(
        policies, RequestContext(action=f"iam:{action}", resource=resource, keys={})
    )
    if decision.allowed:
        return {"decision": "allowed", "why": decision.verdict()}
    tail = (
        "with an explicit deny in an identity-based policy"
        if decision.reason == "ExplicitDeny"
        else f"because no identity-based policy allows the iam:{action} action"
    )
    raise AwsError(
        "AccessDenied",
        f"User: {cred.arn} is not authorized to perform: iam:{action} on resource: {resource} {tail}",
        403,
        explanation=decision.explain(),
        detail={"reason": decision.reason, "verdict": decision.verdict()},
    )


def _source_of(cred: Credential | None) -> str:
    if cred is None:
        return "sdk"
    return "learner" if cred.kind == "user" else "pod"


def make_app(account: Account, *, trace: Trace, wall_clock: Clock) -> web.Application:
    """The IAM query API as an aiohttp app (serve it over HTTPS with ``ServerLoop``).

    ``wall_clock`` judges signature freshness and session expiry (botocore signs
    with the real time); ``account.clock`` stamps what IAM creates.
    """

    async def handle(request: web.Request) -> web.Response:
        started = time.perf_counter()
        request_id = account.ids.uuid4()
        action = "?"
        cred: Credential | None = None
        detail: dict[str, Any] = {}
        try:
            try:
                body = await request.read()
            except web.HTTPException:
                raise AwsError("RequestEntityTooLarge", "Request body is too large.", 413) from None
            raw = parse_query(body, request.query_string)
            action = raw.get("Action", "?")[:64]
            try:
                cred = authenticate(
                    account,
                    method=request.method,
                    path=request.raw_path.split("?", 1)[0],
                    query=request.query_string,
                    headers=request.headers,
                    body=body,
                    now=wall_clock.now(),
                    service="iam",
                )
            except SigV4Failure as failure:
                raise to_aws_error(failure, "iam") from None
            if "Action" not in raw:
                raise AwsError("MissingAction", "Missing Action", 400)
            handler = ACTIONS.get(raw["Action"])
            if handler is None:
                raise AwsError(
                    "InvalidAction",
                    f"Could not find operation {action} for version {IAM_API_VERSION}",
                    400,
                )
            version = raw.get("Version")
            if version is not None and version != IAM_API_VERSION:
                raise AwsError(
                    "InvalidAction", f"Could not find operation {action} for version {version}", 400
                )
            with account.lock:
                resource = _resource_of(account, action, raw)
            detail.update(authorize_iam_call(account, cred, action, resource))
            result = handler(account, _Params(raw))
            response = xml_response(action, result, IAM_NS, request_id)
            outcome = "ok"
        except AwsError as err:
            response = error_response(err, IAM_NS, request_id)
            outcome = err.code
            detail["message"] = err.message
            if "verdict" in err.detail:
                detail.update(decision="denied", why=err.detail["verdict"])
            if err.explanation != err.message:
                detail["explanation"] = err.explanation
        trace.record(
            _source_of(cred),
            "iam",
            action,
            outcome,
            duration_ms=(time.perf_counter() - started) * 1000,
            caller=cred.arn if cred else None,
            request_id=request_id,
            **detail,
        )
        return response

    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


def policy_document(text: str) -> dict[str, Any]:
    """A stored policy document as a dict (for notebooks that print it)."""
    return dict(json.loads(text))
