"""Authorization at the API stand-in: what the default RBAC lets an authenticated user do.

docs/reference/kubernetes.md §2.5 and §2.3 (who may read the issuer's endpoints). The lab grants
no Role or RoleBinding, so a user who is not the admin gets only what the bootstrap
ClusterRoleBindings of a real cluster give every authenticated user:

- ``system:public-info-viewer`` and ``system:discovery``: ``GET`` on ``/healthz``,
  ``/livez``, ``/readyz``, ``/version``, ``/api``, ``/apis`` and ``/openapi`` (and
  below them);
- ``system:basic-user``: ``create`` on ``selfsubjectreviews`` (``kubectl auth whoami``)
  and ``selfsubjectaccessreviews``/``selfsubjectrulesreviews`` (the lab serves neither);
- ``system:service-account-issuer-discovery`` (bound to ``system:serviceaccounts``):
  the discovery document and the JWKS.

A request without a token is user ``system:anonymous``, group
``system:unauthenticated`` (``--anonymous-auth=true``, the default): it gets the health
checks and ``/version`` (``system:public-info-viewer``), and the issuer's endpoints, as
the ``oidc-discovery-anonymous`` binding that the kind path creates gives them
(§2.3); not discovery, which only authenticated users may read.

Everything else is 403 ``Forbidden`` with the real server's message, for example
``pods is forbidden: User "system:serviceaccount:default:x" cannot list resource
"pods" in API group "" in the namespace "default"``. Creating a TokenReview needs
``system:auth-delegator``, which no ServiceAccount of the lab is bound to.
"""

from __future__ import annotations

from dataclasses import dataclass

from .admission import UserInfo
from .status import ApiError, StatusDetails

__all__ = [
    "ADMIN_GROUP",
    "ANONYMOUS",
    "NON_RESOURCE_PREFIXES",
    "SERVICE_ACCOUNTS_GROUP",
    "RequestAttributes",
    "authorize",
    "forbidden_request",
    "verb_for",
]

# kubeadm binds this group to cluster-admin; the lab's admin is in it.
ADMIN_GROUP = "kubeadm:cluster-admins"
NON_RESOURCE_PREFIXES = ("/api", "/apis", "/openapi")
_NON_RESOURCE_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/"})
# system:service-account-issuer-discovery, bound to every ServiceAccount.
_ISSUER_PATHS = frozenset(
    {
        "/.well-known/openid-configuration",
        "/.well-known/openid-configuration/",
        "/openid/v1/jwks",
        "/openid/v1/jwks/",
    }
)
SERVICE_ACCOUNTS_GROUP = "system:serviceaccounts"
UNAUTHENTICATED_GROUP = "system:unauthenticated"
# Who a request without credentials is, on a server with anonymous auth on.
ANONYMOUS: UserInfo = {"username": "system:anonymous", "groups": [UNAUTHENTICATED_GROUP]}
_BASIC_USER = frozenset(
    {
        ("authentication.k8s.io", "selfsubjectreviews"),
        ("authorization.k8s.io", "selfsubjectaccessreviews"),
        ("authorization.k8s.io", "selfsubjectrulesreviews"),
    }
)


@dataclass(frozen=True)
class RequestAttributes:
    """What the authorizer decides on: a resource request, or a path (``resource`` "")."""

    verb: str
    path: str
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""


def verb_for(method: str, *, named: bool, watch: bool) -> str:
    """The RBAC verb of an HTTP method on a collection or a named object."""
    if method == "GET":
        return "watch" if watch else "get" if named else "list"
    return {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete" if named else "deletecollection",
    }.get(method, method.lower())


def _allowed(user: UserInfo, attrs: RequestAttributes) -> bool:
    if ADMIN_GROUP in user.get("groups", []):
        return True
    groups = user.get("groups", [])
    anonymous = UNAUTHENTICATED_GROUP in groups
    if not attrs.resource:
        path = attrs.path
        return attrs.verb == "get" and (
            path in _NON_RESOURCE_PATHS
            or (
                not anonymous
                and any(path == p or path.startswith(p + "/") for p in NON_RESOURCE_PREFIXES)
            )
            or (path in _ISSUER_PATHS and (anonymous or SERVICE_ACCOUNTS_GROUP in groups))
        )
    return not anonymous and attrs.verb == "create" and (attrs.group, attrs.resource) in _BASIC_USER


def forbidden_request(user: UserInfo, attrs: RequestAttributes) -> ApiError:
    """The 403 the real server's authorization filter writes for ``attrs``."""
    who = user.get("username", "")
    if not attrs.resource:
        return ApiError(
            403,
            "Forbidden",
            f'forbidden: User "{who}" cannot {attrs.verb} path "{attrs.path}"',
            {},
        )
    resource = attrs.resource + (f"/{attrs.subresource}" if attrs.subresource else "")
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    why = (
        f'User "{who}" cannot {attrs.verb} resource "{resource}" in API group '
        f'"{attrs.group}" {where}'
    )
    qualified = f"{attrs.resource}.{attrs.group}" if attrs.group else attrs.resource
    details: StatusDetails = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.group:
        details["group"] = attrs.group
    details["kind"] = attrs.resource
    subject = f'{qualified} "{attrs.name}"' if attrs.name else qualified
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {why}", details)


def authorize(user: UserInfo, attrs: RequestAttributes) -> None:
    """Raise the 403 :class:`ApiError` unless the default RBAC allows ``attrs`` to ``user``."""
    if not _allowed(user, attrs):
        raise forbidden_request(user, attrs)
