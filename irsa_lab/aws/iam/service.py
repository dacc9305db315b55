"""IAM's query protocol: the operations of :mod:`.operations` served as boto3 calls them.

Form ``POST /`` signed with SigV4 for service ``iam``; answers in the
``https://iam.amazonaws.com/doc/2010-05-08/`` namespace. Each ``Action`` reads its
parameters from the form (:class:`_Params`, worded as IAM words a missing or bad
one), calls its operation and renders the result element. What every query-protocol
call does around that (parse, authenticate, dispatch, error XML, trace, the catch-all
``InternalFailure``) is :class:`~irsa_lab.aws.query_service.QueryService`, shared with
STS.

Only the administrator's long-term keys are meant to manage IAM here; any other
caller is judged by its role's permission policies, which in the default scenario
never allow an ``iam:`` action, so it gets ``AccessDenied``.

Policy documents come back URL-encoded, as IAM sends them; botocore decodes them
into dicts (its ``json_decode_policies`` handler), so ``get_role`` gives the trust
policy as the dict that was put.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from ... import web
from ...clock import Clock, rfc3339
from ...constants import IAM_API_VERSION, IAM_NS
from ...trace import Trace
from ..arns import oidc_provider_arn, role_arn
from ..endpoint import authorize_by_role, verify_request
from ..errors import AwsError
from ..model import Account, Credential, Role
from ..query import element, elements
from ..query_service import QueryCall, QueryService
from . import operations as ops
from . import validation as V

__all__ = ["ACTIONS", "authorize_iam_call", "make_app"]


# --- reading the form ---------------------------------------------------------------------------
class _Params:
    """The form of one request, read the way IAM reads it."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self.raw = raw

    def required(self, name: str) -> str:
        value = self.raw.get(name)
        if value is None:
            raise V.invalid(name[0].lower() + name[1:], None, "Member must not be null")
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
        return V.tags([found[i] for i in sorted(found)])


# --- rendering results -----------------------------------------------------------------------
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
        raise V.invalid("maxItems", max_items, "Member must have value between 1 and 1000")
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


# --- the operations, form in and result out -----------------------------------------------------
def _do_create_role(account: Account, p: _Params) -> str:
    role = ops.create_role(
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
    return _role_xml(ops.get_role(account, p.required("RoleName")))


def _do_list_roles(account: Account, p: _Params) -> str:
    prefix = p.optional("PathPrefix") or "/"
    roles = {r.name: r for r in ops.list_roles(account, prefix)}
    return _paged(
        list(roles),
        p,
        lambda names: (
            "<Roles>" + "".join(_role_xml(roles[n], "member") for n in names) + "</Roles>"
        ),
    )


def _do_update_assume_role_policy(account: Account, p: _Params) -> None:
    ops.update_assume_role_policy(account, p.required("RoleName"), p.required("PolicyDocument"))


def _do_update_role(account: Account, p: _Params) -> str:
    ops.update_role(
        account,
        p.required("RoleName"),
        description=p.optional("Description"),
        max_session_duration=p.integer("MaxSessionDuration"),
    )
    return ""


def _do_delete_role(account: Account, p: _Params) -> None:
    ops.delete_role(account, p.required("RoleName"))


def _do_put_role_policy(account: Account, p: _Params) -> None:
    ops.put_role_policy(
        account, p.required("RoleName"), p.required("PolicyName"), p.required("PolicyDocument")
    )


def _do_get_role_policy(account: Account, p: _Params) -> str:
    role_name, policy_name = p.required("RoleName"), p.required("PolicyName")
    doc = ops.get_role_policy(account, role_name, policy_name)
    return (
        element("RoleName", role_name)
        + element("PolicyName", policy_name)
        + element("PolicyDocument", _quoted(doc))
    )


def _do_delete_role_policy(account: Account, p: _Params) -> None:
    ops.delete_role_policy(account, p.required("RoleName"), p.required("PolicyName"))


def _do_list_role_policies(account: Account, p: _Params) -> str:
    names = ops.list_role_policies(account, p.required("RoleName"))
    return _paged(names, p, lambda page: elements("PolicyNames", page))


def _do_attach_role_policy(account: Account, p: _Params) -> None:
    ops.attach_role_policy(account, p.required("RoleName"), p.required("PolicyArn"))


def _do_detach_role_policy(account: Account, p: _Params) -> None:
    ops.detach_role_policy(account, p.required("RoleName"), p.required("PolicyArn"))


def _do_list_attached_role_policies(account: Account, p: _Params) -> str:
    prefix = p.optional("PathPrefix") or "/"
    policies = {
        mp.arn: mp
        for mp in ops.list_attached_role_policies(account, p.required("RoleName"))
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
    view = ops.get_policy(account, p.required("PolicyArn"))
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
    view, document = ops.get_policy_version(
        account, p.required("PolicyArn"), p.required("VersionId")
    )
    return (
        "<PolicyVersion>"
        + element("Document", _quoted(document))
        + element("VersionId", view.default_version_id)
        + element("IsDefaultVersion", "true")
        + element("CreateDate", rfc3339(view.update_date))
        + "</PolicyVersion>"
    )


def _do_create_oidc(account: Account, p: _Params) -> str:
    provider = ops.create_open_id_connect_provider(
        account,
        url=p.required("Url"),
        client_ids=p.members("ClientIDList"),
        thumbprints=p.members("ThumbprintList"),
        tags=p.tags(),
    )
    return element("OpenIDConnectProviderArn", provider.arn) + _tags_xml(provider.tags)


def _do_get_oidc(account: Account, p: _Params) -> str:
    provider = ops.get_open_id_connect_provider(account, p.required("OpenIDConnectProviderArn"))
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
        for prov in ops.list_open_id_connect_providers(account)
    )
    return f"<OpenIDConnectProviderList>{members}</OpenIDConnectProviderList>"


def _do_delete_oidc(account: Account, p: _Params) -> None:
    ops.delete_open_id_connect_provider(account, p.required("OpenIDConnectProviderArn"))


def _do_add_client_id(account: Account, p: _Params) -> None:
    ops.add_client_id_to_open_id_connect_provider(
        account, p.required("OpenIDConnectProviderArn"), p.required("ClientID")
    )


def _do_remove_client_id(account: Account, p: _Params) -> None:
    ops.remove_client_id_from_open_id_connect_provider(
        account, p.required("OpenIDConnectProviderArn"), p.required("ClientID")
    )


# Action -> its handler: the form in, the inside of the result element out (None: none).
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


# --- serving them ---------------------------------------------------------------------------------
def _resource_of(account: Account, action: str, params: Mapping[str, str]) -> str:
    """The ARN an ``iam:<action>`` call acts on, for the permission check."""
    acct = account.account_id
    if "RoleName" in params:
        role = account.roles.get(params["RoleName"])
        return role.arn if role else role_arn(acct, params["RoleName"])
    if "OpenIDConnectProviderArn" in params:
        return params["OpenIDConnectProviderArn"]
    if "PolicyArn" in params:
        return params["PolicyArn"]
    if action == "CreateOpenIDConnectProvider":
        return oidc_provider_arn(acct, params.get("Url", ""))
    if action == "ListRoles":
        return role_arn(acct, "")  # every role: the path "/" and no name
    return "*"


def authorize_iam_call(
    account: Account, cred: Credential, action: str, resource: str
) -> dict[str, Any]:
    """Allow the administrator; judge anyone else by its role's permission policies.

    Returns facts for the trace; raises ``AccessDenied`` in IAM's own wording.
    """
    return authorize_by_role(account, cred, f"iam:{action}", resource)


async def _serve(account: Account, call: QueryCall) -> str | None:
    # The table is read per call, so a test may swap an operation out.
    handler = ACTIONS[call.action]
    assert call.caller is not None  # IAM authenticates every call before dispatch
    with account.lock:
        resource = _resource_of(account, call.action, call.params)
    call.facts.update(authorize_iam_call(account, call.caller, call.action, resource))
    return handler(account, _Params(call.params))


def make_app(account: Account, *, trace: Trace, wall_clock: Clock) -> web.Application:
    """The IAM query API as an irsa_lab.web app (serve it over HTTPS with ``ServerLoop``).

    Every call is signed (SigV4, service ``iam``, scoped to ``us-east-1`` or the lab's
    region: :func:`~irsa_lab.aws.endpoint.signing_regions` says why) and recorded in
    the trace. The body IAM hashes is the one it received, so a body changed after
    signing is ``SignatureDoesNotMatch`` whatever ``X-Amz-Content-SHA256`` claims.
    ``wall_clock`` judges signature freshness and session expiry (botocore signs
    with the real time); ``account.clock`` stamps what IAM creates.
    """

    async def serve(call: QueryCall) -> str | None:
        return await _serve(account, call)

    return QueryService(
        "iam",
        IAM_NS,
        IAM_API_VERSION,
        dict.fromkeys(ACTIONS, serve),
        account.ids,
        trace,
        authenticate=lambda call: (
            verify_request(account, call.request, call.body, wall_clock.now(), "iam").credential
        ),
        record_calls=True,
    ).app()
