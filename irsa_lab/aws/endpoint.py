"""What every AWS stand-in endpoint does alike, whatever its protocol.

The query-protocol services (STS and IAM, :mod:`.query_service`) and S3's REST
endpoint (:mod:`.s3.service`) share these steps:

- :func:`verify_request`: the request's SigV4 signature verified (:mod:`.sigv4`)
  on the bytes as they arrived, a failure worded as the service words it;
- :func:`authorize_by_role`: the account administrator may do anything; a role session
  may do what both its role's permission policies and its session policies allow, judged
  with the global condition keys of :func:`caller_keys`
  (:mod:`.policy.authorization`); anyone else gets ``AccessDenied`` naming the caller, the
  action, the resource and the type of policy that refused;
- :func:`record_call`: the trace record of one request, naming who called;
- :func:`refusal_facts`: what a refusal adds to that record;
- :func:`unexpected`: the catch-all, where a bug is logged and becomes the service's
  internal error instead of the web framework's HTML 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, cast

from .. import web
from ..constants import REGION
from ..trace import Trace
from .errors import AwsError
from .model import Account, Credential
from .policy import RequestContext
from .policy.authorization import authorize
from .policy.request import global_keys
from .sigv2 import is_presigned_v2, verify_presigned_v2
from .sigv4 import SigV4Failure, Verified, to_aws_error, verify

__all__ = [
    "authorize_by_role",
    "caller_keys",
    "caller_source",
    "record_call",
    "refusal_facts",
    "signing_regions",
    "unexpected",
    "verify_request",
]

log = logging.getLogger(__name__)


def signing_regions(service: str, region: str = REGION) -> tuple[str, ...]:
    """The regions a request to ``service`` may be signed for, the expected one first.

    S3 and STS are regional: the lab's S3 bucket and STS endpoint live in ``region``,
    and a request scoped to another region is refused as AWS refuses it (S3:
    ``AuthorizationHeaderMalformed``, "the region 'X' is wrong; expecting 'Y'"; STS:
    ``SignatureDoesNotMatch``, "Credential should be scoped to a valid region. ").

    IAM is global, and real IAM accepts only ``us-east-1`` in the credential scope
    (the same "should be scoped to a valid region" refusal otherwise, observed in
    JuliaCloud/AWS.jl#565; the SigV4 reference says to sign IAM for us-east-1). With
    ``AWS_ENDPOINT_URL_IAM`` set, botocore stops resolving IAM's global endpoint and
    signs for the client's configured region instead, so every learner's boto3 client
    and ``aws iam`` command in this lab signs IAM calls for ``region``. The IAM
    stand-in therefore accepts ``us-east-1`` (what IAM accepts) and ``region`` (what
    botocore sends when redirected), and refuses any other region as IAM would.
    """
    if service == "iam":
        return ("us-east-1", region) if region != "us-east-1" else ("us-east-1",)
    return (region,)


def verify_request(
    account: Account,
    request: web.Request,
    body: bytes,
    now: float,
    service: str,
    *,
    region: str = REGION,
    refusal: Callable[[SigV4Failure], AwsError] | None = None,
) -> Verified:
    """The checked request (:class:`~.sigv4.Verified`) for ``service``, or the service's error.

    Path and query are passed as sent, still percent-encoded, since SigV4 signs them so.
    The signature may be in the ``Authorization`` header or in the query string (a
    presigned URL; for S3 also the legacy Signature Version 2 one, :mod:`.sigv2`).
    A failure is worded by ``refusal`` (EC2's and the JSON services' own words), else
    as STS, IAM or S3 word it (:func:`~.sigv4_errors.to_aws_error`).
    """
    path = request.raw_path.split("?", 1)[0]
    query = request.rel_url.raw_query_string
    try:
        if service == "s3" and is_presigned_v2(query, request.headers):
            return verify_presigned_v2(
                account, method=request.method, path=path, query=query, now=now
            )
        return verify(
            account,
            method=request.method,
            path=path,
            query=query,
            headers=request.headers,
            body=body,
            now=now,
            service=service,
            regions=signing_regions(service, region),
        )
    except SigV4Failure as failure:
        if refusal is not None:
            raise refusal(failure) from None
        if service in ("sts", "iam", "s3"):
            raise to_aws_error(failure, cast(Literal["sts", "iam", "s3"], service)) from None
        raise ValueError(f"no wording of SigV4 failures for {service!r}: pass refusal") from None


def authorize_by_role(
    account: Account,
    cred: Credential,
    action: str,
    resource: str,
    *,
    keys: Mapping[str, Any] | None = None,
    administrator: str = "account administrator",
    shown_resource: str | None = None,
    now: float | None = None,
    region: str | None = None,
) -> dict[str, Any]:
    """Allow the administrator; judge a role session by its role's and its session's policies.

    The request context is ``keys`` (the service's own keys, such as ``s3:prefix`` or
    ``aws:SourceIp``) plus the global keys of the caller (:func:`caller_keys`, at ``now``
    on the lab clock unless given, for ``region``), which win over a service's. A session
    that carries session policies is allowed only what both its role's identity-based
    policies and its session policies allow (:func:`~.policy.authorization.authorize`).

    Returns the facts the trace shows (who allowed it and why); raises ``AccessDenied``
    worded as AWS words it for a same-account request, naming the policy type that
    refused, with ``shown_resource`` in place of ``resource`` (S3 quotes it, IAM does not).
    """
    if cred.kind == "user":
        return {"decision": "allowed", "why": administrator}
    context = {**(keys or {}), **caller_keys(account, cred, action, now=now, region=region)}
    ctx = RequestContext(action=action, resource=resource, keys=context)
    policies = account.policies_of_role(cred.role_name) if cred.role_name else []
    verdict = authorize(policies, cred.session_policies, ctx)
    if verdict.allowed:
        return {"decision": "allowed", "why": verdict.verdict()}
    shown = resource if shown_resource is None else shown_resource
    raise AwsError(
        "AccessDenied",
        f"User: {cred.arn} is not authorized to perform: {action} on resource: {shown} "
        + verdict.denial(action),
        403,
        explanation=verdict.explain(),
        detail={
            "reason": verdict.reason,
            "policy_type": verdict.policy_type,
            "verdict": verdict.verdict(),
        },
    )


def caller_source(cred: Credential | None) -> str:
    """Who a request came from, as the trace names it: the learner, a pod, or an SDK."""
    if cred is None:
        return "sdk"
    return "learner" if cred.kind == "user" else "pod"


def refusal_facts(err: AwsError) -> dict[str, Any]:
    """The message of a refusal, the lab's explanation when it says more, and the policy
    verdict when a policy refused it."""
    facts: dict[str, Any] = {"message": err.message}
    if err.explanation and err.explanation != err.message:
        facts["explanation"] = err.explanation
    if "verdict" in err.detail:
        facts.update(decision="denied", why=err.detail["verdict"])
    return facts


def record_call(
    trace: Trace,
    service: str,
    call: str,
    outcome: str,
    *,
    caller: Credential | None,
    started: float,
    **facts: Any,
) -> None:
    """Record one request to ``service``, timed from ``started`` (``time.perf_counter``).

    Facts whose value is ``None`` are left out.
    """
    trace.record(
        caller_source(caller),
        service,
        call,
        outcome,
        duration_ms=(time.perf_counter() - started) * 1000,
        caller=caller.arn if caller else None,
        **{k: v for k, v in facts.items() if v is not None},
    )


def unexpected(
    service: str, call: str, exc: Exception, answer: Callable[[Exception], AwsError]
) -> AwsError:
    """Log a bug that escaped ``call`` of ``service`` and return the error to answer with.

    ``answer`` is the service's internal error (:func:`~.errors.internal_failure` or
    :func:`~.errors.s3_internal_error`); the server goes on serving.
    """
    log.error("the %s stand-in failed on %s", service, call, exc_info=exc)
    return answer(exc)


# IAM has one endpoint, in us-east-1, so every IAM call requests that region (IAM User
# Guide, "AWS global condition context keys", aws:RequestedRegion).
GLOBAL_SERVICE_REGION = "us-east-1"


def caller_keys(
    account: Account,
    cred: Credential,
    action: str,
    *,
    now: float | None = None,
    region: str | None = None,
) -> dict[str, str]:
    """The global condition keys of a request signed with ``cred`` (:func:`~.policy.request.global_keys`).

    ``now`` defaults to the lab clock (a notebook may freeze it); ``region`` to
    ``us-east-1`` for IAM and to the lab's region otherwise. For a role session
    ``aws:PrincipalArn`` is the role's ARN (with its path), ``aws:PrincipalTag/*`` the
    role's tags overridden by the session's tags, and ``aws:TokenIssueTime``,
    ``aws:SourceIdentity`` and ``aws:FederatedProvider`` come from the session.
    """
    when = account.clock.now() if now is None else now
    where = region or (GLOBAL_SERVICE_REGION if action.startswith("iam:") else REGION)
    if cred.kind == "user":
        return global_keys(
            now=when,
            region=where,
            principal_type="User",
            principal_arn=cred.arn,
            userid=cred.user_id,
            username=cred.arn.rsplit("/", 1)[-1],
        )
    role = account.roles.get(cred.role_name or "")
    tags = {t["Key"]: t.get("Value", "") for t in role.tags} if role is not None else {}
    tags.update(cred.session_tags)
    return global_keys(
        now=when,
        region=where,
        principal_type="AssumedRole",
        principal_arn=role.arn if role is not None else _role_arn_of_session(cred.arn),
        userid=cred.user_id,
        principal_tags=tags,
        source_identity=cred.source_identity,
        token_issue_time=cred.issued_at,
        federated_provider=cred.federated_provider,
    )


def _role_arn_of_session(session_arn: str) -> str:
    """``arn:aws:sts::<acct>:assumed-role/<role>/<session>`` -> the role's ARN (path unknown)."""
    head, _, rest = session_arn.partition(":assumed-role/")
    return head.replace(":sts:", ":iam:", 1) + ":role/" + rest.split("/", 1)[0]
