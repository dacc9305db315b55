"""The EKS Auth stand-in: ``AssumeRoleForPodIdentity``, a pod's token in, the role's credentials out.

rest-json, ``POST /clusters/{clusterName}/assume-role-for-pod-identity`` with ``{"token": ...}``,
SigV4-signed by the caller (the node agent, with the node role's credentials: §2.1 of
docs/reference/pod-identity.md). The checks, in this order (the order is the lab's, §8.4):

==================  ============================================================  =========================
step                what                                                          refused with (§2.4)
==================  ============================================================  =========================
``signature``       SigV4 with service ``eks-auth``                               ``UnrecognizedClient...``
``request``         ``token`` given, three dot-separated parts                    ``InvalidParameter...``
``cluster``         the URI names the lab's cluster                               ``ResourceNotFound...``
``permission``      the caller may ``eks-auth:AssumeRoleForPodIdentity``          ``AccessDenied...`` (400)
``token``           parse, algorithm, claims, the cluster's issuer, its JWKS,     ``InvalidToken...`` /
                    kid, signature, times: STS's own steps                        ``ExpiredToken...``
                    (:class:`~irsa_lab.aws.sts.checks.Pipeline`)
``audience``        ``aud`` holds ``pods.eks.amazonaws.com``                      ``InvalidToken...``
``pod``             a ServiceAccount ``sub`` and a bound pod (name and uid)        ``InvalidToken...``
``association``     one for the token's namespace and ServiceAccount              ``ResourceNotFound...``
``role``            the association's role exists                                 ``AccessDenied...``
``trust policy``    ``sts:AssumeRole`` and ``sts:TagSession`` for the service      ``AccessDenied...``
                    principal, with the six session tags (:mod:`.trust`)
==================  ============================================================  =========================

The credentials are a role session registered in the account (so SigV4 verifies them
and ``aws:PrincipalTag/<key>`` reads the session tags), named ``eks-<cluster>-<pod>-<uuid>``
(:func:`~.trust.session_name`), valid 6 hours ([I] §8.7). The message texts of EKS Auth's
errors are not published (§8.2): the lab's are marked [I] and its explanations, which
never travel, say what failed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ... import web
from ...clock import Clock
from ...trace import Trace
from ..arns import assumed_role_arn
from ..endpoint import authorize_by_role, unexpected
from ..errors import AwsError
from ..model import Account, Credential
from ..oidc_client import PublicKey
from ..rest_json import error_response, json_response, signed_by
from ..sts.checks import Pipeline
from ..sts.errors import ExpiredToken, StsError
from ..sts.service import session_token
from .associations import Associations
from .trust import (
    POD_IDENTITY_AUDIENCE,
    cluster_arn,
    judge_trust,
    session_name,
    session_tags,
)

__all__ = [
    "ACTION",
    "CREDENTIAL_LIFETIME_S",
    "PodIdentityGrant",
    "assume_role_for_pod_identity",
    "make_app",
]

ACTION = "eks-auth:AssumeRoleForPodIdentity"
CREDENTIAL_LIFETIME_S = 6 * 3600  # [I] §8.7: AWS's agent-cache figures imply about 6 h
_TOKEN_STEPS = ("parse", "algorithm", "claims", "JWKS", "kid", "signature", "times")
_JWT_SHAPE = re.compile(r"[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+\.[A-Za-z0-9\-_=]+")
_SA_SUBJECT = re.compile(r"system:serviceaccount:([^:]+):([^:]+)")

KeysForIssuer = Callable[[str, str | None], Awaitable[Mapping[str, PublicKey]]]


def _refuse(
    code: str, message: str, explanation: str, *, status: int = 400, **detail: Any
) -> AwsError:
    return AwsError(
        code,
        message,
        status,
        explanation=explanation,
        detail={"step": detail.pop("step"), **detail},
    )


@dataclass(frozen=True)
class PodIdentityGrant:
    """A successful ``AssumeRoleForPodIdentity``: the session and what the answer names."""

    credential: Credential
    namespace: str
    service_account: str
    pod_name: str
    pod_uid: str
    association_id: str
    association_arn: str
    role_arn: str
    tags: dict[str, str]

    def wire(self) -> dict[str, Any]:
        """The response body (§2.3)."""
        cred = self.credential
        return {
            "subject": {"namespace": self.namespace, "serviceAccount": self.service_account},
            "audience": POD_IDENTITY_AUDIENCE,
            "podIdentityAssociation": {
                "associationArn": self.association_arn,
                "associationId": self.association_id,
            },
            # [I] §8.6: the model says the role's ARN; the lab names the session, whose
            # account the agent reads either way.
            "assumedRoleUser": {"arn": cred.arn, "assumeRoleId": cred.user_id},
            "credentials": {
                "accessKeyId": cred.access_key_id,
                "secretAccessKey": cred.secret_access_key,
                "sessionToken": cred.session_token,
                "expiration": cred.expiration,
            },
        }


async def _check_token(
    token: str, *, issuer: str, keys_for_issuer: KeysForIssuer, now: float
) -> dict[str, Any]:
    """The token's claims once STS's token steps and the cluster's issuer accept it."""

    async def cluster_keys(iss: str, kid: str | None) -> Mapping[str, PublicKey]:
        if iss != issuer:
            raise AwsError(
                "InvalidIdentityToken",
                "Invalid issuer",
                explanation=f"the token's issuer {iss!r} is not this cluster's ({issuer})",
            )
        return await keys_for_issuer(iss, kid)

    pipeline = Pipeline(iam=_NoIam(), now=now, steps=_TOKEN_STEPS)
    try:
        state = await pipeline.arun(token, cluster_keys)
    except ExpiredToken as err:
        raise _refuse(
            "ExpiredTokenException",
            "Service account token has expired",  # [I] §8.2
            err.explanation,
            step="token",
        ) from None
    except StsError as err:
        raise _refuse(
            "InvalidTokenException",
            "Invalid service account token",  # [I] §8.2
            f"{err.step}: {err.explanation}",
            step="token",
        ) from None
    return state.claims


class _NoIam:
    """EKS Auth trusts the cluster's issuer itself: no IAM OIDC provider is looked up."""

    def oidc_provider_for_issuer(self, issuer: str) -> None:
        return None

    def role_by_arn(self, arn: str) -> None:
        return None

    def provider_urls(self) -> list[str]:
        return []


def _pod_of(claims: Mapping[str, Any]) -> tuple[str, str, str, str]:
    """(namespace, ServiceAccount, pod name, pod uid) of a pod-bound token, or refused."""
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else list(aud or [])
    if POD_IDENTITY_AUDIENCE not in audiences:
        raise _refuse(
            "InvalidTokenException",
            "Invalid service account token",
            f"the token's audience is {audiences}, not {POD_IDENTITY_AUDIENCE!r}: it was "
            "projected for something else (an IRSA token says sts.amazonaws.com)",
            step="audience",
        )
    found = _SA_SUBJECT.fullmatch(str(claims.get("sub", "")))
    k8s = claims.get("kubernetes.io")
    pod = k8s.get("pod") if isinstance(k8s, dict) else None
    if found is None or not isinstance(pod, dict) or not pod.get("name") or not pod.get("uid"):
        raise _refuse(
            "InvalidTokenException",
            "Invalid service account token",
            "the token is not bound to a pod: it needs a system:serviceaccount subject and "
            "kubernetes.io.pod name and uid (a projected token has them; a TokenRequest "
            "without a bound object does not)",
            step="pod",
        )
    return found[1], found[2], str(pod["name"]), str(pod["uid"])


async def assume_role_for_pod_identity(
    account: Account,
    associations: Associations,
    *,
    caller: Credential,
    cluster: str,
    token: str,
    issuer: str,
    keys_for_issuer: KeysForIssuer,
    clock: Clock,
    wall_clock: Clock,
    region: str,
) -> PodIdentityGrant:
    """Every step after the signature (table above); raises :class:`AwsError` when one refuses."""
    if not _JWT_SHAPE.fullmatch(token):
        raise _refuse(
            "InvalidParameterException",
            "The token parameter is not a valid JWT",  # [I]
            "token must be three base64url parts separated by dots (the model's pattern)",
            step="request",
        )
    if cluster != associations.cluster_name:
        raise _refuse(
            "ResourceNotFoundException",
            f"No cluster found for name: {cluster}.",
            f"this lab has one cluster, {associations.cluster_name!r}",
            status=404,
            step="cluster",
        )
    the_cluster = cluster_arn(region, account.account_id, cluster)
    try:
        authorize_by_role(account, caller, ACTION, the_cluster, region=region)
    except AwsError as denied:
        # EKS Auth's AccessDeniedException is a 400 (§2.4).
        raise _refuse(
            "AccessDeniedException",
            denied.message,
            denied.explanation,
            step="permission",
            **denied.detail,
        ) from None
    claims = await _check_token(
        token, issuer=issuer, keys_for_issuer=keys_for_issuer, now=clock.now()
    )
    namespace, sa, pod_name, pod_uid = _pod_of(claims)
    matching = associations.list(namespace=namespace, service_account=sa)
    if not matching:
        raise _refuse(
            "ResourceNotFoundException",
            "Pod Identity association not found for service account",  # [I] §8.3
            f"cluster {cluster} has no Pod Identity association for ServiceAccount "
            f"{namespace}/{sa}; the associations are for "
            + (", ".join(f"{n}/{s}" for n, s in associations.identities()) or "nobody"),
            status=404,
            step="association",
        )
    association = matching[0]
    role = account.role_by_arn(association.role_arn)
    if role is None:
        raise _refuse(
            "AccessDeniedException",
            f"Unable to assume role {association.role_arn}",  # [I]
            f"the association {association.association_id} names {association.role_arn}, "
            "which does not exist (any more)",
            step="role",
        )
    tags = (
        {}
        if association.disable_session_tags
        else session_tags(
            region=region,
            account_id=account.account_id,
            cluster=cluster,
            namespace=namespace,
            service_account=sa,
            pod_name=pod_name,
            pod_uid=pod_uid,
        )
    )
    try:
        verdict = judge_trust(
            role,
            tags,
            account_id=account.account_id,
            now=clock.now(),
            region=region,
            source_arn=association.association_arn,
        )
    except ValueError as unreadable:
        verdict = None
        why = str(unreadable)
    if verdict is None or not verdict.allowed:
        action = verdict.action if verdict is not None else "sts:AssumeRole"
        explanation = verdict.explain() if verdict is not None else why
        raise _refuse(
            "AccessDeniedException",
            # [I] IAM's wording for a refused action, with the service principal as caller.
            f"pods.eks.amazonaws.com is not authorized to perform: {action} on resource: "
            f"{role.arn}",
            f"the trust policy of {role.name} does not allow {action} for the service "
            f"principal pods.eks.amazonaws.com"
            + (" with the session tags" if tags and action == "sts:TagSession" else "")
            + f".\n{explanation}",
            step="trust policy",
            action=action,
            verdict=verdict.decision.verdict() if verdict is not None else why,
        )
    ids = account.ids
    name = session_name(cluster, pod_name, ids.uuid4())
    cred = Credential(
        access_key_id=ids.access_key_id("ASIA"),
        secret_access_key=ids.secret_token(40),
        kind="assumed-role",
        arn=assumed_role_arn(account.account_id, role.name, name),
        user_id=f"{role.role_id}:{name}",
        session_token=session_token(ids),
        expiration=float(int(wall_clock.now()) + CREDENTIAL_LIFETIME_S),
        role_name=role.name,
        source="eks-auth:AssumeRoleForPodIdentity",
        issued_at=clock.now(),
        region=region,
        session_tags=dict(tags),
    )
    with account.lock:
        account.credentials[cred.access_key_id] = cred
    return PodIdentityGrant(
        credential=cred,
        namespace=namespace,
        service_account=sa,
        pod_name=pod_name,
        pod_uid=pod_uid,
        association_id=association.association_id,
        association_arn=association.association_arn,
        role_arn=role.arn,
        tags=dict(tags),
    )


def make_app(
    account: Account,
    associations: Associations,
    *,
    issuer: str,
    keys_for_issuer: KeysForIssuer,
    clock: Clock,
    wall_clock: Clock,
    trace: Trace,
    region: str,
) -> web.Application:
    """The EKS Auth endpoint (one operation); every call is recorded in the trace."""

    async def assume(request: web.Request) -> web.Response:
        started = time.perf_counter()
        request_id = account.ids.uuid4()
        body = await request.read()
        caller: Credential | None = None
        try:
            caller = signed_by(
                account, request, body, now=wall_clock.now(), service="eks-auth", region=region
            )
            try:
                params = json.loads(body or b"{}")
            except ValueError:
                params = None
            if not isinstance(params, dict) or not isinstance(params.get("token"), str):
                raise _refuse(
                    "InvalidParameterException",
                    "The token parameter is required",  # [I]
                    "the body must be a JSON object with a string member token",
                    step="request",
                )
            grant = await assume_role_for_pod_identity(
                account,
                associations,
                caller=caller,
                cluster=request.match_info["cluster"],
                token=params["token"],
                issuer=issuer,
                keys_for_issuer=keys_for_issuer,
                clock=clock,
                wall_clock=wall_clock,
                region=region,
            )
        except AwsError as err:
            _record(
                trace,
                err.code,
                caller,
                started,
                step=err.detail.get("step"),
                message=err.message,
                why=err.explanation,
            )
            return error_response(err, request_id)
        except Exception as exc:  # noqa: BLE001 - a bug answers 500 and the server goes on
            bug = unexpected(
                "eks-auth",
                "AssumeRoleForPodIdentity",
                exc,
                lambda e: AwsError(
                    "InternalServerException", "Internal server error", 500, sender=False
                ),
            )
            return error_response(bug, request_id)
        _record(
            trace,
            "ok",
            caller,
            started,
            association=grant.association_id,
            subject=f"{grant.namespace}/{grant.service_account}",
            pod=grant.pod_name,
            role=grant.role_arn,
            arn=grant.credential.arn,
            session_tags=grant.tags or None,
        )
        return json_response(grant.wire(), request_id)

    async def unknown(request: web.Request) -> web.Response:
        err = AwsError(
            "UnknownOperationException",
            "The requested operation is not supported by this service",  # [I]
            404,
            explanation=f"EKS Auth has one operation, POST /clusters/<name>/assume-role-for-pod-identity; "
            f"this was {request.method} {request.path}",
        )
        return error_response(err, account.ids.uuid4())

    app = web.Application()
    app.router.add_post("/clusters/{cluster}/assume-role-for-pod-identity", assume)
    app.router.add_route("*", "/{tail:.*}", unknown)
    return app


def _record(
    trace: Trace,
    outcome: str,
    caller: Credential | None,
    started: float,
    **facts: Any,
) -> None:
    trace.record(
        "pod-identity-agent",
        "eks-auth",
        "AssumeRoleForPodIdentity",
        outcome,
        duration_ms=(time.perf_counter() - started) * 1000,
        caller=caller.arn if caller else None,
        **{k: v for k, v in facts.items() if v is not None},
    )
