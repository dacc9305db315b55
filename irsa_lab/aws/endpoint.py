"""What every AWS stand-in endpoint does alike, whatever its protocol.

The query-protocol services (STS and IAM, :mod:`.query_service`) and S3's REST
endpoint (:mod:`.s3.service`) share these steps:

- :func:`authenticate_request`: the request's SigV4 signature verified (:mod:`.sigv4`)
  on the bytes as they arrived, a failure worded as the service words it;
- :func:`authorize_by_role`: the account administrator may do anything; a role session
  may do what its role's permission policies allow (:func:`~.policy.evaluate`); anyone
  else gets ``AccessDenied`` naming the caller, the action and the resource;
- :func:`record_call`: the trace record of one request, naming who called;
- :func:`refusal_facts`: what a refusal adds to that record;
- :func:`unexpected`: the catch-all, where a bug is logged and becomes the service's
  internal error instead of the web framework's HTML 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from aiohttp import web

from ..trace import Trace
from .errors import AwsError
from .model import Account, Credential
from .policy import RequestContext, evaluate
from .sigv4 import SigV4Failure, authenticate, to_aws_error

__all__ = [
    "authenticate_request",
    "authorize_by_role",
    "caller_source",
    "record_call",
    "refusal_facts",
    "unexpected",
]

log = logging.getLogger(__name__)


def authenticate_request(
    account: Account,
    request: web.Request,
    body: bytes,
    now: float,
    service: Literal["sts", "iam", "s3"],
) -> Credential:
    """The credential that signed ``request`` for ``service``, or the service's error.

    Path and query are passed as sent, still percent-encoded, since SigV4 signs them so.
    """
    try:
        return authenticate(
            account,
            method=request.method,
            path=request.raw_path.split("?", 1)[0],
            query=request.rel_url.raw_query_string,
            headers=request.headers,
            body=body,
            now=now,
            service=service,
        )
    except SigV4Failure as failure:
        raise to_aws_error(failure, service) from None


def authorize_by_role(
    account: Account,
    cred: Credential,
    action: str,
    resource: str,
    *,
    keys: Mapping[str, Any] | None = None,
    administrator: str = "account administrator",
    shown_resource: str | None = None,
) -> dict[str, Any]:
    """Allow the administrator; judge a role session by its role's permission policies.

    Returns the facts the trace shows (who allowed it and why); raises ``AccessDenied``
    worded as AWS words it for a same-account request, with ``shown_resource`` in
    place of ``resource`` (S3 quotes it, IAM does not).
    """
    if cred.kind == "user":
        return {"decision": "allowed", "why": administrator}
    policies = account.policies_of_role(cred.role_name) if cred.role_name else []
    decision = evaluate(
        policies, RequestContext(action=action, resource=resource, keys=dict(keys or {}))
    )
    if decision.allowed:
        return {"decision": "allowed", "why": decision.verdict()}
    tail = (
        "with an explicit deny in an identity-based policy"
        if decision.reason == "ExplicitDeny"
        else f"because no identity-based policy allows the {action} action"
    )
    shown = resource if shown_resource is None else shown_resource
    raise AwsError(
        "AccessDenied",
        f"User: {cred.arn} is not authorized to perform: {action} on resource: {shown} {tail}",
        403,
        explanation=decision.explain(),
        detail={"reason": decision.reason, "verdict": decision.verdict()},
    )


def caller_source(cred: Credential | None) -> str:
    """Who a request came from, as the trace names it: the learner, a pod, or an SDK."""
    if cred is None:
        return "sdk"
    return "learner" if cred.kind == "user" else "pod"


def refusal_facts(err: AwsError) -> dict[str, Any]:
    """The message of a refusal, and the policy verdict when a policy refused it."""
    facts: dict[str, Any] = {"message": err.message}
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
