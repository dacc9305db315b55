"""The EKS API stand-in: Pod Identity associations, and ``DescribeCluster`` and ``ListClusters`` for the lab's cluster.

rest-json, as botocore's ``eks`` model describes it (docs/reference/pod-identity.md §1.1,
§1.2): every call SigV4-signed for service ``eks`` in the lab's region, members in the URI,
the query string or a JSON body, answers as JSON, errors named in ``x-amzn-ErrorType``
(:mod:`..rest_json`). boto3's ``eks`` client and ``aws eks ...`` use it unchanged.

=====================================  =======  ==============================================
operation                              HTTP     URI
=====================================  =======  ==============================================
``ListClusters``                       GET      ``/clusters``
``DescribeCluster``                    GET      ``/clusters/{name}``
``CreatePodIdentityAssociation``       POST     ``/clusters/{name}/pod-identity-associations``
``ListPodIdentityAssociations``        GET      ``/clusters/{name}/pod-identity-associations``
``DescribePodIdentityAssociation``     GET      ``/clusters/{name}/pod-identity-associations/{id}``
``DeletePodIdentityAssociation``       DELETE   ``/clusters/{name}/pod-identity-associations/{id}``
=====================================  =======  ==============================================

Each call, in order: the signature (a failure answered as the JSON services answer it,
:func:`~..rest_json.sigv4_error`); the cluster named in the URI, if any (another name:
``ResourceNotFoundException``, 404, ``No cluster found for name: <name>.``, §1.4); the
caller's permission (the administrator may do anything; a role session is judged by its
role's policies for ``eks:<Operation>`` on the cluster's or the association's ARN, and
refused with ``AccessDeniedException``, 403, the model's status); then the operation.
Create refuses a second association for the same namespace and ServiceAccount with
``ResourceInUseException`` (409, ``Association already exists: <id>``), a malformed or
unknown role with ``InvalidParameterException`` (``Role provided in the request does not
exist``), and then asks :func:`_check_trust` about the role's trust policy (§6.3, §6.4,
§8.1). The messages marked [I] are the lab's: AWS's are not published (§8).

Every call is recorded in the trace (target ``eks``). The associations live in one
:class:`~.associations.Associations` per AWS side, which EKS Auth and the webhook's
container-credentials config read too.

Not served: ``UpdatePodIdentityAssociation``, target roles (``targetRoleArn``) and session
policies (``policy``); a request that uses them is refused, saying so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ... import web
from ...clock import Clock
from ...trace import Trace
from ..endpoint import authorize_by_role, record_call, refusal_facts, unexpected
from ..errors import AwsError
from ..model import Account, Credential, Role
from ..rest_json import error_response, json_response, signed_by
from .associations import Association, AssociationExists, AssociationNotFound, Associations
from .trust import POD_IDENTITY_PRINCIPAL, cluster_arn, judge_trust, session_tags

__all__ = ["OPERATIONS", "Cluster", "make_app"]

OPERATIONS = (
    "DescribeCluster",
    "CreatePodIdentityAssociation",
    "ListPodIdentityAssociations",
    "DescribePodIdentityAssociation",
    "DeletePodIdentityAssociation",
    "ListClusters",
)
MAX_RESULTS = 100  # §1.2: 1-100, and 100 when not given
# An IAM role ARN: arn:<partition>:iam::<12 digits>:role/<path/><name>.
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}")


@dataclass
class Cluster:
    """What ``DescribeCluster`` tells about the lab's one cluster (§1.3).

    ``endpoint`` (the API server's URL) and ``certificate_authority`` (its CA, base64 PEM)
    are filled once the API server is up (``AwsSide.endpoints``); until then they are
    left out of the answer, as EKS leaves them out before a cluster is ``ACTIVE``.
    """

    name: str
    region: str
    account_id: str
    issuer: str
    created_at: float
    version: str
    platform_version: str = "eks.1"  # [I] the lab's; EKS's count per version (§1.3)
    endpoint: str = ""
    certificate_authority: str = ""
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def arn(self) -> str:
        return cluster_arn(self.region, self.account_id, self.name)

    def to_wire(self) -> dict[str, Any]:
        """The ``Cluster`` members the lab has (§1.3); the 20 others are absent."""
        wire: dict[str, Any] = {
            "name": self.name,
            "arn": self.arn,
            "createdAt": self.created_at,
            "version": self.version,
        }
        if self.endpoint:
            wire["endpoint"] = self.endpoint
        wire["identity"] = {"oidc": {"issuer": self.issuer}}
        wire["status"] = "ACTIVE"
        if self.certificate_authority:
            wire["certificateAuthority"] = {"data": self.certificate_authority}
        wire["platformVersion"] = self.platform_version
        wire["tags"] = dict(self.tags)
        return wire


def _invalid(message: str, explanation: str = "") -> AwsError:
    return AwsError("InvalidParameterException", message, 400, explanation=explanation)


def _check_trust(account: Account, role: Role, tags: Mapping[str, str], *, region: str) -> None:
    """Refuse a role Pod Identity could not assume (§1.4, §6.3, §6.4, §8.1).

    [I] EKS's check is not documented; AWS refused roles without the service principal
    and roles with ``sts:AssumeRole`` alone (§1.4). The lab runs the rule EKS Auth runs
    for each pod (:func:`~.trust.judge_trust`), with the session tags known before any pod
    exists (cluster, namespace, ServiceAccount; none with ``disableSessionTags``).
    """
    try:
        verdict = judge_trust(
            role, tags, account_id=account.account_id, now=account.clock.now(), region=region
        )
    except ValueError as unreadable:
        explanation = str(unreadable)
    else:
        if verdict.allowed:
            return
        explanation = (
            f"the trust policy of {role.name} does not allow {verdict.action} for the service "
            f"principal {POD_IDENTITY_PRINCIPAL}.\n{verdict.explain()}"
        )
    raise AwsError(
        "InvalidParameterException",
        "Trust policy of the role provided is invalid. Follow the official documentation "
        "to resolve the issue.",
        400,
        explanation=explanation,
    )


def _role(account: Account, role_arn: str) -> Role:
    """The association's role, or ``InvalidParameterException`` (§1.4)."""
    if not _ROLE_ARN.fullmatch(role_arn):
        raise _invalid(
            "Role provided in the request does not exist",  # [I] AWS's text for an unknown role
            f"{role_arn!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)",
        )
    role = account.role_by_arn(role_arn)
    if role is None:
        raise _invalid(
            "Role provided in the request does not exist",
            f"account {account.account_id} has no role {role_arn}"
            + (
                ""
                if f"::{account.account_id}:" in role_arn
                else " (and the role must be in the cluster's account, §1.5)"
            ),
        )
    return role


def _body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise AwsError(
            "SerializationException",  # [I] what AWS's JSON services answer a body that is not JSON
            "The request body is not a JSON object",
            400,
        )
    return parsed


def _required(params: Mapping[str, Any], *names: str) -> None:
    """botocore checks required members before sending; the server checks again (§1.2).

    [I] The wording is AWS's common one for a missing member; EKS's own is not published.
    """
    missing = [n for n in names if not isinstance(params.get(n), str) or not params[n]]
    if missing:
        count = len(missing)
        details = "; ".join(
            f"Value null at '{n}' failed to satisfy constraint: Member must not be null"
            for n in missing
        )
        raise _invalid(
            f"{count} validation error{'s' if count > 1 else ''} detected: {details}",
            "required: " + ", ".join(missing),
        )


def _page(params: Mapping[str, str]) -> tuple[int, int]:
    """(offset, maxResults) from ``nextToken`` and ``maxResults`` (§1.2)."""
    raw_max = params.get("maxResults")
    limit = MAX_RESULTS
    if raw_max is not None:
        if not raw_max.isdigit() or not 1 <= int(raw_max) <= MAX_RESULTS:
            raise _invalid(
                "maxResults must be between 1 and 100",  # [I]
                f"maxResults was {raw_max!r}",
            )
        limit = int(raw_max)
    token = params.get("nextToken")
    offset = 0
    if token:
        try:
            offset = int(base64.urlsafe_b64decode(token.encode()).decode().removeprefix("o:"))
        except (ValueError, UnicodeDecodeError):
            raise _invalid("The nextToken provided is invalid", f"nextToken {token!r}") from None
    return offset, limit


def _token(offset: int) -> str:
    """An opaque ``nextToken`` (the model says to treat it so): the next offset."""
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode()


@dataclass
class _Call:
    operation: str
    request_id: str
    caller: Credential | None = None
    facts: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[web.Request, "_Call", dict[str, Any]], Awaitable[dict[str, Any]]]


def make_app(
    account: Account,
    associations: Associations,
    cluster: Cluster,
    *,
    trace: Trace,
    wall_clock: Clock,
) -> web.Application:
    """The EKS API for ``cluster`` (serve it over HTTPS with ``ServerLoop``).

    Signatures are checked against ``wall_clock`` (botocore signs with the real time),
    for service ``eks`` in the cluster's region. ``cluster`` may be changed later (its
    endpoint and CA): each ``DescribeCluster`` reads it afresh.
    """
    region = cluster.region
    # clientRequestToken -> association id: a retried create answers the same association.
    idempotency: dict[str, str] = {}

    def authenticate(request: web.Request, body: bytes) -> Credential:
        return signed_by(account, request, body, now=wall_clock.now(), service="eks", region=region)

    def authorize(call: _Call, resource: str) -> None:
        assert call.caller is not None
        try:
            call.facts.update(
                authorize_by_role(
                    account, call.caller, f"eks:{call.operation}", resource, region=region
                )
            )
        except AwsError as denied:
            raise AwsError(
                "AccessDeniedException",
                denied.message,
                403,
                explanation=denied.explanation,
                detail=denied.detail,
            ) from None

    def the_cluster(name: str) -> None:
        if name != cluster.name:
            raise AwsError(
                "ResourceNotFoundException",
                f"No cluster found for name: {name}.",
                404,
                explanation=f"this lab has one cluster, {cluster.name!r}",
            )

    async def association(association_id: str, *, delete: bool = False) -> Association:
        try:
            if delete:
                # In a thread: the change callbacks write the webhook's identities file,
                # on kind through `docker exec`, which must not hold up this loop's servers.
                return await asyncio.to_thread(associations.delete, association_id)
            return associations.describe(association_id)
        except AssociationNotFound:
            raise AwsError(
                "ResourceNotFoundException",
                f"No Pod Identity Association found with id: {association_id}",  # [I]
                404,
                explanation=f"cluster {cluster.name} has no association {association_id}; "
                "ListPodIdentityAssociations shows the ids it has",
            ) from None

    def association_arn(association_id: str) -> str:
        return (
            f"arn:aws:eks:{region}:{account.account_id}:podidentityassociation/"
            f"{cluster.name}/{association_id}"
        )

    async def describe_cluster(
        request: web.Request, call: _Call, params: dict[str, Any]
    ) -> dict[str, Any]:
        authorize(call, cluster.arn)
        return {"cluster": cluster.to_wire()}

    async def list_clusters(
        request: web.Request, call: _Call, params: dict[str, Any]
    ) -> dict[str, Any]:
        authorize(call, "*")  # ListClusters names no resource in IAM
        offset, limit = _page(request.rel_url.query)  # one cluster: never a next page
        return {"clusters": [cluster.name][offset : offset + limit]}

    async def create(request: web.Request, call: _Call, params: dict[str, Any]) -> dict[str, Any]:
        authorize(call, cluster.arn)
        _required(params, "namespace", "serviceAccount", "roleArn")
        for unsupported in ("targetRoleArn", "policy"):
            if params.get(unsupported) is not None:
                raise AwsError(
                    "InvalidRequestException",
                    f"{unsupported} is not supported by this lab",  # the lab's own limit
                    400,
                    explanation="the lab's EKS stand-in serves associations with one role "
                    "and no session policy (docs/reference/pod-identity.md §6.6)",
                )
        tags = params.get("tags") or {}
        if not isinstance(tags, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
        ):
            raise _invalid("tags must be a map of strings", "tags")
        disable = params.get("disableSessionTags", False)
        if not isinstance(disable, bool):
            raise _invalid("disableSessionTags must be a boolean", "disableSessionTags")
        namespace, sa, role_arn = params["namespace"], params["serviceAccount"], params["roleArn"]
        call.facts.update(subject=f"{namespace}/{sa}", role=role_arn)
        token = params.get("clientRequestToken")
        if isinstance(token, str) and token in idempotency:
            try:
                again = associations.describe(idempotency[token])
            except AssociationNotFound:
                again = None
            if again is not None and (
                again.namespace,
                again.service_account,
                again.role_arn,
            ) == (namespace, sa, role_arn):
                call.facts.update(association=again.association_id, retried=True)
                return {"association": again.to_wire()}
        role = _role(account, role_arn)
        known_tags = (
            {}
            if disable
            else session_tags(
                region=region,
                account_id=account.account_id,
                cluster=cluster.name,
                namespace=namespace,
                service_account=sa,
                pod_name=None,
                pod_uid=None,
            )
        )
        _check_trust(account, role, known_tags, region=region)
        try:
            created = await asyncio.to_thread(  # in a thread: see association()
                associations.create,
                namespace,
                sa,
                role_arn,
                tags=tags,
                disable_session_tags=disable,
            )
        except AssociationExists as exists:
            raise AwsError(
                "ResourceInUseException",
                str(exists),
                409,
                explanation=f"ServiceAccount {namespace}/{sa} already has association "
                f"{exists.existing_id}: one association per ServiceAccount (§1.5); delete it "
                "first to change the role",
            ) from None
        if isinstance(token, str):
            idempotency[token] = created.association_id
        call.facts["association"] = created.association_id
        await settled(call)
        return {"association": created.to_wire()}

    async def list_(request: web.Request, call: _Call, params: dict[str, Any]) -> dict[str, Any]:
        authorize(call, cluster.arn)
        query = request.rel_url.query
        offset, limit = _page(query)
        found = associations.list(
            namespace=query.get("namespace"), service_account=query.get("serviceAccount")
        )
        page = found[offset : offset + limit]
        answer: dict[str, Any] = {"associations": [a.summary() for a in page]}
        if offset + limit < len(found):
            answer["nextToken"] = _token(offset + limit)
        call.facts["count"] = len(page)
        return answer

    async def describe(request: web.Request, call: _Call, params: dict[str, Any]) -> dict[str, Any]:
        association_id = request.match_info["association_id"]
        authorize(call, association_arn(association_id))
        call.facts["association"] = association_id
        return {"association": (await association(association_id)).to_wire()}

    async def delete(request: web.Request, call: _Call, params: dict[str, Any]) -> dict[str, Any]:
        association_id = request.match_info["association_id"]
        authorize(call, association_arn(association_id))
        call.facts["association"] = association_id
        deleted = await association(association_id, delete=True)
        await settled(call)
        return {"association": deleted.to_wire()}

    async def settled(call: _Call) -> None:
        """Answer once the webhook has the change (docs/fidelity.md, "associations take
        effect at once"): on the k8s backend the upstream binary reloads its file itself."""
        if associations.settle is None:
            return
        try:
            await asyncio.to_thread(associations.settle)
        except Exception as exc:  # noqa: BLE001 - the association is stored either way
            call.facts["webhook"] = f"not reloaded yet: {exc}"

    def route(operation: str, handler: Handler) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def serve(request: web.Request) -> web.Response:
            started = time.perf_counter()
            call = _Call(operation, account.ids.uuid4())
            try:
                body = await request.read()
                call.caller = authenticate(request, body)
                if "cluster" in request.match_info:
                    the_cluster(request.match_info["cluster"])
                response = json_response(await handler(request, call, _body(body)), call.request_id)
                outcome = "ok"
            except AwsError as err:
                call.facts.update(refusal_facts(err))
                response, outcome = error_response(err, call.request_id), err.code
            except Exception as exc:  # a bug still answers in EKS's shape
                bug = unexpected("eks", operation, exc, _server_exception)
                call.facts.update(refusal_facts(bug))
                response, outcome = error_response(bug, call.request_id), bug.code
            record_call(
                trace,
                "eks",
                operation,
                outcome,
                caller=call.caller,
                started=started,
                request_id=call.request_id,
                **call.facts,
            )
            return response

        return serve

    async def unknown(request: web.Request) -> web.Response:
        err = AwsError(
            "UnknownOperationException",
            "The requested operation is not supported by this service",  # [I]
            404,
            explanation=f"the lab's EKS serves {', '.join(OPERATIONS)}; "
            f"this was {request.method} {request.path}",
        )
        record_call(
            trace,
            "eks",
            f"{request.method} {request.path}",
            err.code,
            caller=None,
            started=time.perf_counter(),
            **refusal_facts(err),
        )
        return error_response(err, account.ids.uuid4())

    app = web.Application()
    base = "/clusters/{cluster}"
    one = base + "/pod-identity-associations/{association_id}"
    app.router.add_route("GET", "/clusters", route("ListClusters", list_clusters))
    app.router.add_route("GET", base, route("DescribeCluster", describe_cluster))
    app.router.add_route("POST", base + "/pod-identity-associations", route(OPERATIONS[1], create))
    app.router.add_route("GET", base + "/pod-identity-associations", route(OPERATIONS[2], list_))
    app.router.add_route("GET", one, route(OPERATIONS[3], describe))
    app.router.add_route("DELETE", one, route(OPERATIONS[4], delete))
    app.router.add_route("*", "/{tail:.*}", unknown)
    return app


def _server_exception(exc: Exception) -> AwsError:
    return AwsError(
        "ServerException",
        "These errors are usually caused by a server-side issue.",  # the model's text
        500,
        sender=False,
        explanation=f"the eks stand-in failed: {type(exc).__name__}: {exc}",
    )
