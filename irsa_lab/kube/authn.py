"""Authentication at the API stand-in: ServiceAccount tokens checked as kube-apiserver checks them.

docs/reference/kubernetes.md §2.5 (the checks), §1.2 (the claims) and §2.1
(``--service-account-issuer``, ``--api-audiences``). A bearer token that is a JWT of the cluster's issuer goes
through the steps of the real service-account token authenticator, in its order:

1. the ``iss`` (read before anything is trusted) must be the issuer, else the token is
   not one this authenticator knows (:class:`NotRecognised`);
2. the signature must verify with one of the issuer's keys (:class:`SignatureInvalid`);
3. the token's ``aud`` (the API audiences when it has none) must share one audience
   with the audiences asked for, the API audiences unless a TokenReview names others
   (:class:`AudienceInvalid`);
4. ``nbf``, ``exp`` and ``iat``, each with the 60 s leeway of the server's JOSE library
   (:class:`NotYetValid`, :class:`Expired`, :class:`IssuedInFuture`);
5. the ServiceAccount must exist with the uid of the claim
   (:class:`ServiceAccountNotFound`, :class:`ServiceAccountUidMismatch`);
6. a bound Secret, Pod or (pod-less) Node must still exist (:class:`Invalidated`), a
   bound Pod with the uid of the claim (:class:`PodUidMismatch`).

The texts are kube-apiserver v1.36's, read from its TokenReview answers. A failure
shows in ``TokenReview.status.error`` behind ``invalid bearer token``, the default
error of the server's bearer-token authenticator (:attr:`AuthenticationError.review_error`);
a request carrying such a token gets 401 ``Unauthorized`` and no more.

Error tree (each class says how the token failed; ``message`` is the wire text)::

    AuthenticationError
    ├── NotRecognised              not a JWT of this issuer
    ├── ClaimsMalformed            a time or audience claim of the wrong JSON type
    ├── SignatureInvalid
    ├── AudienceInvalid
    ├── NotYetValid / Expired / IssuedInFuture
    ├── ServiceAccountNotFound / ServiceAccountUidMismatch
    ├── Invalidated                the bound object is gone
    └── PodUidMismatch             a pod of that name, but not the bound one
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import jose
from .admission import UserInfo
from .tokens import TokenIssuer

__all__ = [
    "CLOCK_LEEWAY_S",
    "EXTRA_CREDENTIAL_ID",
    "EXTRA_NODE_NAME",
    "EXTRA_NODE_UID",
    "EXTRA_POD_NAME",
    "EXTRA_POD_UID",
    "INVALID_BEARER_TOKEN",
    "AudienceInvalid",
    "Authenticated",
    "AuthenticationError",
    "ClaimsMalformed",
    "Expired",
    "Invalidated",
    "IssuedInFuture",
    "Lookup",
    "NotRecognised",
    "NotYetValid",
    "PodUidMismatch",
    "ServiceAccountNotFound",
    "ServiceAccountUidMismatch",
    "SignatureInvalid",
    "authenticate_service_account_token",
    "intersect",
    "service_account_user",
]

Obj = dict[str, Any]
# (resource, namespace, name) -> the stored object or None: the server's getter.
Lookup = Callable[[str, str, str], Obj | None]

# go-jose's jwt.DefaultLeeway, which the authenticator's time checks use.
CLOCK_LEEWAY_S = 60
INVALID_BEARER_TOKEN = "invalid bearer token"  # noqa: S105 - an error text, not a secret
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_NODE_NAME = "authentication.kubernetes.io/node-name"
EXTRA_NODE_UID = "authentication.kubernetes.io/node-uid"
EXTRA_CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
# The algorithms go-jose parses; any other "alg" makes the token unparseable.
_JOSE_ALGORITHMS = frozenset(
    {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
    | {"ES256", "ES384", "ES512", "EdDSA"}
)


class AuthenticationError(Exception):
    """Raised when a bearer token does not authenticate; ``message`` is the authenticator's
    text ("" when no authenticator recognised the token)."""

    message = ""

    def __init__(self, message: str | None = None) -> None:
        if message is not None:
            self.message = message
        super().__init__(self.message or INVALID_BEARER_TOKEN)

    @property
    def review_error(self) -> str:
        """``TokenReview.status.error``: the bearer-token default, then this failure."""
        if not self.message:
            return INVALID_BEARER_TOKEN
        return f"[{INVALID_BEARER_TOKEN}, {self.message}]"


class NotRecognised(AuthenticationError):
    """Raised when the token is not a compact JWS whose ``iss`` is the cluster's issuer."""


class ClaimsMalformed(AuthenticationError):
    """Raised when a time claim is not a number, or ``aud`` not a string or list of them."""


class SignatureInvalid(AuthenticationError):
    """Raised when no key of the issuer verifies the signature."""

    message = "go-jose/go-jose: error in cryptographic primitive"


class AudienceInvalid(AuthenticationError):
    """Raised when the token shares no audience with the audiences asked for."""


class NotYetValid(AuthenticationError):
    """Raised when ``nbf`` is more than the leeway ahead of now."""

    message = "service account token is not valid yet"


class Expired(AuthenticationError):
    """Raised when ``exp`` is more than the leeway behind now."""

    message = "service account token has expired"


class IssuedInFuture(AuthenticationError):
    """Raised when ``iat`` is more than the leeway ahead of now."""

    message = "service account token is issued in the future"


class ServiceAccountNotFound(AuthenticationError):
    """Raised when the token's ServiceAccount does not exist."""


class ServiceAccountUidMismatch(AuthenticationError):
    """Raised when the ServiceAccount of that name is not the one the token names (uid)."""


class Invalidated(AuthenticationError):
    """Raised when the object the token is bound to (Pod, Secret or Node) is gone."""

    message = "service account token has been invalidated"


class PodUidMismatch(AuthenticationError):
    """Raised when a pod of the bound name exists with another uid (it was recreated)."""


@dataclass(frozen=True)
class Authenticated:
    """Who a token authenticates as, and for which of the asked-for audiences."""

    user: UserInfo
    audiences: list[str]


def _go_quote(values: Sequence[str]) -> str:
    # Go's %q of a []string: ["a" "b"].
    return "[" + " ".join(json.dumps(v, ensure_ascii=False) for v in values) + "]"


def intersect(token_audiences: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """The token's audiences that are also wanted, in the token's order."""
    return [a for a in token_audiences if a in wanted]


def _audiences(claims: Obj) -> list[str]:
    aud = claims.get("aud")
    if aud is None:
        return []
    if isinstance(aud, str):
        return [aud]
    if isinstance(aud, list) and all(isinstance(a, str) for a in aud):
        return list(aud)
    raise ClaimsMalformed(
        "go-jose/go-jose/jwt: expected string or array value to unmarshal to Audience"
    )


def _check_times(claims: Obj, now: float) -> None:
    """go-jose's order: nbf, exp, iat; each with :data:`CLOCK_LEEWAY_S`."""
    times = {}
    for name in ("nbf", "exp", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ClaimsMalformed("go-jose/go-jose/jwt: expected number for numeric date")
        times[name] = int(value)  # NumericDate keeps whole seconds
    if "nbf" in times and now + CLOCK_LEEWAY_S < times["nbf"]:
        raise NotYetValid()
    if "exp" in times and now - CLOCK_LEEWAY_S > times["exp"]:
        raise Expired()
    if "iat" in times and now + CLOCK_LEEWAY_S < times["iat"]:
        raise IssuedInFuture()


def _ref(kube: Obj, key: str) -> tuple[str, str] | None:
    ref = kube.get(key)
    if not isinstance(ref, dict):
        return None
    return str(ref.get("name") or ""), str(ref.get("uid") or "")


def _require(lookup: Lookup, resource: str, namespace: str, ref: tuple[str, str]) -> Obj:
    found = lookup(resource, namespace, ref[0])
    if found is None:
        raise Invalidated()
    return found


def service_account_user(
    namespace: str,
    name: str,
    uid: str,
    *,
    pod: tuple[str, str] | None = None,
    node: tuple[str, str] | None = None,
    jti: str = "",
) -> UserInfo:
    """The user a ServiceAccount token authenticates as (fields left out when empty,
    as the real server's ``omitempty`` does)."""
    extra: dict[str, list[str]] = {}
    if jti:
        extra[EXTRA_CREDENTIAL_ID] = [f"JTI={jti}"]
    if node and node[0]:
        extra[EXTRA_NODE_NAME] = [node[0]]
        if node[1]:  # the node uid only ever comes with its name
            extra[EXTRA_NODE_UID] = [node[1]]
    if pod and pod[0] and pod[1]:
        extra[EXTRA_POD_NAME] = [pod[0]]
        extra[EXTRA_POD_UID] = [pod[1]]
    user: UserInfo = {"username": f"system:serviceaccount:{namespace}:{name}"}
    if uid:
        user["uid"] = uid
    user["groups"] = [
        "system:serviceaccounts",
        f"system:serviceaccounts:{namespace}",
        "system:authenticated",
    ]
    if extra:
        user["extra"] = dict(sorted(extra.items()))
    return user


def _verified(token: str, issuer: TokenIssuer) -> Obj:
    """Steps 1 and 2: the claims of a token of ``issuer`` whose signature verifies."""
    try:
        jws = jose.parse_compact(token)
    except jose.JoseError:
        raise NotRecognised() from None
    if jws.claims.get("iss") != issuer.issuer or jws.alg not in _JOSE_ALGORITHMS:
        raise NotRecognised()
    # Every key is tried, whatever the kid, as the real authenticator does.
    keys = [k.private_key.public_key() for k in issuer.keys()]
    if not any(jose.verify(jws, str(jws.alg), key) for key in keys):
        raise SignatureInvalid()
    return jws.claims


def authenticate_service_account_token(
    token: str,
    *,
    issuer: TokenIssuer,
    lookup: Lookup,
    now: float,
    audiences: Sequence[str] | None = None,
) -> Authenticated:
    """Authenticate ``token`` as a ServiceAccount, or raise the :class:`AuthenticationError`
    of the first failed step (module docstring). ``audiences`` are the ones asked for; None
    or empty means the API audiences."""
    claims = _verified(token, issuer)
    implicit = list(issuer.api_audiences)
    token_audiences = _audiences(claims) or implicit  # a legacy token has no aud
    wanted = list(audiences) if audiences else implicit
    matched = intersect(token_audiences, wanted)
    if not matched and implicit:
        raise AudienceInvalid(
            f"token audiences {_go_quote(token_audiences)} is invalid for the "
            f"target audiences {_go_quote(wanted)}"
        )
    _check_times(claims, now)
    kube = claims.get("kubernetes.io")
    kube = kube if isinstance(kube, dict) else {}
    namespace = str(kube.get("namespace") or "")
    sa_name, sa_uid = _ref(kube, "serviceaccount") or ("", "")
    sa = lookup("serviceaccounts", namespace, sa_name)
    if sa is None:
        raise ServiceAccountNotFound(f'serviceaccounts "{sa_name}" not found')
    actual = sa["metadata"].get("uid", "")
    if actual != sa_uid:
        raise ServiceAccountUidMismatch(
            f"service account UID ({actual}) does not match claim ({sa_uid})"
        )
    secret = _ref(kube, "secret")
    if secret is not None:
        _require(lookup, "secrets", namespace, secret)
    pod = _ref(kube, "pod")
    if pod is not None:
        pod_uid = _require(lookup, "pods", namespace, pod)["metadata"].get("uid", "")
        if pod_uid != pod[1]:
            raise PodUidMismatch(
                f"pod UID ({pod_uid}) does not match service account pod ref claim ({pod[1]})"
            )
    node = _ref(kube, "node")
    if node is not None and pod is None:
        # A node-bound token: the Node must still exist (the lab keeps no Node objects).
        _require(lookup, "nodes", "", node)
    user = service_account_user(
        namespace, sa_name, sa_uid, pod=pod, node=node, jti=str(claims.get("jti") or "")
    )
    return Authenticated(user, matched)
