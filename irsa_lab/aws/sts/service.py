"""The STS stand-in: AssumeRoleWithWebIdentity with every IRSA check, and GetCallerIdentity.

The core, :func:`assume_role_with_web_identity`, validates the parameters
(:mod:`.params`), runs the check pipeline (:mod:`.checks`) on the account's IAM
state and either returns an :class:`AssumeRoleResult` or raises the
:class:`~.errors.StsError` subclass that names the failure, with the code, status
and message real STS sends; ``err.explanation`` and ``err.detail`` say which check
failed and with what values (for a trust policy, the evaluator's full explanation
and failed conditions). Each step is recorded in the trace under the names stage 4
draws (``parse token``, ``find OIDC provider``, ``verify signature``, ...).

Token times are checked against the lab ``clock`` (a notebook may freeze it); the
credentials' ``Expiration`` uses ``wall_clock``, because botocore refuses credentials
that are already expired by the real time. :func:`make_app` serves the core with the
query-protocol service STS shares with IAM (:class:`~irsa_lab.aws.query_service.QueryService`):
every refusal becomes the ``ErrorResponse`` there, and a bug ``InternalFailure``.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from ... import web
from ...clock import Clock, SystemClock, rfc3339
from ...constants import DEFAULT_SESSION_DURATION_S, REGION, STS_API_VERSION, STS_NS
from ...ids import Ids
from ...trace import Trace
from ..arns import arn_account, arn_partition, assumed_role_arn
from ..endpoint import verify_request
from ..errors import AwsError
from ..model import Account, Credential, Role
from ..oidc_client import OidcKeyFetcher
from ..query import element
from ..query_service import QueryCall, QueryService
from .checks import KeysForIssuer, Pipeline, ProviderLike, RoleLike, State
from .errors import MalformedPolicyDocument, StsError
from .params import policy_arns, validate_parameters

__all__ = [
    "AssumeRoleResult",
    "AssumeRoleWithWebIdentityResult",
    "CallerIdentity",
    "assume_role_with_web_identity",
    "get_caller_identity",
    "make_app",
    "pipeline_for",
    "session_token",
]

SESSION_TOKEN_PREFIX = "IQoJb3JpZ2luX2Vj"  # noqa: S105 - how current real session tokens begin
SESSION_TOKEN_LENGTH = 812
STALE_CREDENTIALS_S = 86400  # expired sessions are forgotten a day after they end


# --- wire shapes ---------------------------------------------------------------------
class AssumedRoleUser(TypedDict):
    Arn: str
    AssumedRoleId: str


class Credentials(TypedDict):
    AccessKeyId: str
    SecretAccessKey: str
    SessionToken: str
    Expiration: str


class AssumeRoleWithWebIdentityResult(TypedDict, total=False):
    """The ``AssumeRoleWithWebIdentityResult`` element, field for field."""

    SubjectFromWebIdentityToken: str
    Audience: str
    AssumedRoleUser: AssumedRoleUser
    Credentials: Credentials
    Provider: str
    PackedPolicySize: int


class CallerIdentity(TypedDict):
    """The ``GetCallerIdentityResult`` element."""

    UserId: str
    Account: str
    Arn: str


@dataclass(frozen=True)
class AssumeRoleResult:
    """What a successful AssumeRoleWithWebIdentity returns, plus the stored credential."""

    credential: Credential
    subject: str
    audience: str
    provider_arn: str
    assumed_role_id: str
    packed_policy_size: int | None = None

    def wire(self) -> AssumeRoleWithWebIdentityResult:
        """The result with AWS's field names."""
        c = self.credential
        assert c.session_token is not None and c.expiration is not None
        out: AssumeRoleWithWebIdentityResult = {
            "SubjectFromWebIdentityToken": self.subject,
            "Audience": self.audience,
            "AssumedRoleUser": {"Arn": c.arn, "AssumedRoleId": self.assumed_role_id},
            "Credentials": {
                "SessionToken": c.session_token,
                "SecretAccessKey": c.secret_access_key,
                "Expiration": rfc3339(c.expiration),
                "AccessKeyId": c.access_key_id,
            },
            "Provider": self.provider_arn,
        }
        if self.packed_policy_size is not None:
            out["PackedPolicySize"] = self.packed_policy_size
        return out

    def to_xml(self) -> str:
        """The inside of ``<AssumeRoleWithWebIdentityResult>``, in the order STS sends."""
        w = self.wire()
        user, creds = w["AssumedRoleUser"], w["Credentials"]
        return (
            element("SubjectFromWebIdentityToken", w["SubjectFromWebIdentityToken"])
            + element("Audience", w["Audience"])
            + "<AssumedRoleUser>"
            + element("Arn", user["Arn"])
            + element("AssumedRoleId", user["AssumedRoleId"])
            + "</AssumedRoleUser><Credentials>"
            + element("SessionToken", creds["SessionToken"])
            + element("SecretAccessKey", creds["SecretAccessKey"])
            + element("Expiration", creds["Expiration"])
            + element("AccessKeyId", creds["AccessKeyId"])
            + "</Credentials>"
            + element("Provider", w["Provider"])
            + element("SourceIdentity", self.credential.source_identity)
            + element("PackedPolicySize", w.get("PackedPolicySize"))
        )


def session_token(ids: Ids, length: int = SESSION_TOKEN_LENGTH) -> str:
    """A session token of ``length`` characters that starts like real ones do.

    256 bits from ``ids`` are stretched with SHAKE-256, because drawing ~800
    characters one by one from ``secrets`` costs most of a request's time.
    """
    seed = ids.secret_token(43).encode()
    body_len = max(length - len(SESSION_TOKEN_PREFIX), 16)
    raw = hashlib.shake_256(seed).digest(body_len * 3 // 4 + 3)
    return SESSION_TOKEN_PREFIX + base64.b64encode(raw).decode()[:body_len]


def _forget_stale(account: Account, now: float) -> None:
    stale = [
        k
        for k, c in account.credentials.items()
        if c.expiration is not None and c.expiration < now - STALE_CREDENTIALS_S
    ]
    for k in stale:
        del account.credentials[k]


class _AccountIam:
    """The account as the pipeline's IAM (:class:`~.checks.Iam`)."""

    def __init__(self, account: Account) -> None:
        self.account = account

    def oidc_provider_for_issuer(self, issuer: str) -> ProviderLike | None:
        return self.account.oidc_provider_for_issuer(issuer)

    def role_by_arn(self, arn: str) -> RoleLike | None:
        return self.account.role_by_arn(arn)

    def provider_urls(self) -> list[str]:
        return sorted(p.url for p in self.account.oidc_providers.values())


# How the pipeline's steps appear in the trace: (call, target). The calls are the
# names stage 4's sequence diagram draws; a call that groups several steps is
# recorded once, after its last step, or at the step that failed.
_TRACE_CALLS = {
    "parameters": ("validate parameters", "sts"),
    "parse": ("parse token", "sts"),
    "algorithm": ("parse token", "sts"),
    "claims": ("parse token", "sts"),
    "OIDC provider": ("find OIDC provider", "iam"),
    "JWKS": ("get verification keys", "oidc"),
    "kid": ("verify signature", "sts"),
    "signature": ("verify signature", "sts"),
    "times": ("check claims", "sts"),
    "audience": ("check claims", "sts"),
    "role": ("evaluate trust policy", "iam"),
    "trust policy": ("evaluate trust policy", "iam"),
    "duration": ("check duration", "sts"),
    "session policy": ("check session policy", "sts"),
}


class _TraceSteps:
    """The pipeline's ``observe`` hook for the stand-in: writes the trace."""

    def __init__(self, trace: Trace, role_arn: str) -> None:
        self.trace = trace
        self.role_arn = role_arn
        self.started = time.perf_counter()

    def __call__(self, step: str, s: State, err: StsError | None) -> None:
        call, target = _TRACE_CALLS[step]
        if err is not None:
            extra: dict[str, Any] = {}
            if call == "verify signature":
                extra = {"kid": s.kid, "alg": s.alg}
            elif step == "role":
                extra = {"role_arn": self.role_arn}
            elif step == "trust policy":
                extra = {
                    k: err.detail[k]
                    for k in ("role", "failed_conditions", "verdict")
                    if k in err.detail
                }
            self.trace.record(
                "sts", target, call, err.code, why=err.explanation, step=step, **extra
            )
            return
        c = s.claims
        if step == "claims":
            self.trace.record(
                "sts", target, call, alg=s.alg, kid=s.kid, iss=c["iss"], sub=c["sub"], aud=c["aud"]
            )
        elif step == "OIDC provider":
            assert s.provider is not None
            self.trace.record("sts", target, call, provider=s.provider.arn)
            self.started = time.perf_counter()
        elif step == "signature":
            ms = (time.perf_counter() - self.started) * 1000
            self.trace.record("sts", target, call, kid=s.kid, alg=s.alg, duration_ms=ms)
        elif step == "audience":
            self.trace.record("sts", target, call, exp=rfc3339(c["exp"]), audience=s.audience)
        elif step == "trust policy":
            assert s.role is not None and s.decision is not None
            self.trace.record("sts", target, call, role=s.role.name, verdict=s.decision.verdict())


async def assume_role_with_web_identity(
    account: Account,
    params: Mapping[str, str],
    *,
    clock: Clock,
    wall_clock: Clock,
    keys_for_issuer: KeysForIssuer,
    trace: Trace,
    region: str = REGION,
) -> AssumeRoleResult:
    """Run the checks of docs/reference/sts.md §2.2 and issue credentials, or raise :class:`StsError`.

    ``params`` are the query-protocol parameters. ``keys_for_issuer(iss, kid)``
    gives the issuer's public keys by ``kid`` (sync or async; the STS app passes
    :meth:`OidcKeyFetcher.keys`). Each step is recorded in ``trace``. ``region`` is the
    region the session is requested in (the STS endpoint's).
    """
    trace.record(
        "sdk",
        "sts",
        "AssumeRoleWithWebIdentity",
        role_arn=params.get("RoleArn"),
        session=params.get("RoleSessionName"),
    )
    observe = _TraceSteps(trace, str(params.get("RoleArn")))
    try:
        try:
            pipeline, session, token = pipeline_for(
                account, params, now=clock.now(), observe=observe, region=region
            )
        except StsError as err:
            observe("parameters", State(None), err)
            raise
        state = await pipeline.arun(token, keys_for_issuer)
        result = _issue(
            account,
            session,
            state,
            pipeline,
            params,
            wall_clock,
            issued_at=clock.now(),
            region=region,
        )
    except AwsError as err:
        trace.record(
            "sts",
            "sdk",
            "AssumeRoleWithWebIdentity reply",
            err.code,
            message=err.message,
            why=err.explanation,
        )
        raise
    trace.record(
        "sts",
        "sdk",
        "AssumeRoleWithWebIdentity reply",
        arn=result.credential.arn,
        access_key_id=result.credential.access_key_id,
        expiration=rfc3339(result.credential.expiration or 0),
    )
    return result


def pipeline_for(
    account: Account,
    params: Mapping[str, str],
    *,
    now: float,
    observe: Any = None,
    region: str = REGION,
) -> tuple[Pipeline, str, str]:
    """The pipeline STS runs for ``params`` on ``account``, with the session name and
    the token; raises the ``parameters`` step's errors."""
    role_arn, session, token, duration = validate_parameters(params)
    pipeline = Pipeline(
        _AccountIam(account),
        now,
        role_arn=role_arn,
        duration=duration,
        policy=params.get("Policy"),
        policy_arns=policy_arns(params),
        observe=observe,
        session_name=session,
        region=region,
    )
    return pipeline, session, token


def _issue(
    account: Account,
    session: str,
    state: State,
    pipeline: Pipeline,
    params: Mapping[str, str],
    wall_clock: Clock,
    *,
    issued_at: float,
    region: str,
) -> AssumeRoleResult:
    """Step 12: credentials, registered in the account so SigV4 can verify them.

    The credential carries what later permission checks read (docs of
    :class:`~irsa_lab.aws.model.Credential`): the session policies, the issue time on the
    lab clock (``aws:TokenIssueTime``, compared with ``aws:CurrentTime`` on the same
    clock), the OIDC provider (``aws:FederatedProvider``) and the region.
    """
    role = state.role
    assert isinstance(role, Role) and state.provider is not None and state.audience is not None
    ids = account.ids
    min_size = int(params.get("MinimumSessionTokenSize") or 0)
    duration = DEFAULT_SESSION_DURATION_S if pipeline.duration is None else pipeline.duration
    expires = float(int(wall_clock.now()) + duration)
    assumed_role_id = f"{role.role_id}:{session}"
    session_policies = _session_policies(account, pipeline, state)
    cred = Credential(
        access_key_id=ids.access_key_id("ASIA"),
        secret_access_key=ids.secret_token(40),
        kind="assumed-role",
        arn=assumed_role_arn(
            account.account_id, role.name, session, partition=arn_partition(role.arn)
        ),
        user_id=assumed_role_id,
        session_token=session_token(ids, max(SESSION_TOKEN_LENGTH, min_size)),
        expiration=expires,
        role_name=role.name,
        source="sts:AssumeRoleWithWebIdentity",
        session_policies=session_policies,
        issued_at=issued_at,
        federated_provider=state.provider.arn,
        region=region,
        session_tags=dict(state.session.tags) if state.session is not None else {},
        source_identity=state.session.source_identity if state.session is not None else None,
    )
    with account.lock:
        _forget_stale(account, wall_clock.now())
        account.credentials[cred.access_key_id] = cred
    return AssumeRoleResult(
        cred,
        state.claims["sub"],
        state.audience,
        state.provider.arn,
        assumed_role_id,
        state.packed_policy_size,
    )


# [I] AWS does not publish how STS answers a PolicyArns entry that names no policy. The
# lab answers MalformedPolicyDocument (the modelled STS error about session policies,
# 400) with the text IAM gives for the same lookup ("Policy <arn> does not exist or is
# not attachable.", observed in aws/aws-cdk#3379 and newrelic/aws-log-ingestion#77).
UNKNOWN_POLICY_ARN = "Policy {arn} does not exist or is not attachable."


def _session_policies(
    account: Account, pipeline: Pipeline, state: State
) -> list[tuple[str, str]] | None:
    """The session policies of the request as (label, JSON): the inline ``Policy`` (its
    grammar already checked by the ``session policy`` step) and the document of each
    ``PolicyArns`` entry; None when none was passed. An ARN naming no managed policy in
    the account (or an AWS managed one) is refused."""
    if pipeline.policy is None and not pipeline.policy_arns:
        return None
    out: list[tuple[str, str]] = []
    if pipeline.policy is not None:
        out.append(("session policy (Policy)", pipeline.policy))
    for arn in pipeline.policy_arns:
        managed = account.managed_policies.get(arn)
        if managed is None:
            err = MalformedPolicyDocument(
                UNKNOWN_POLICY_ARN.format(arn=arn),
                f"PolicyArns names {arn}, which is neither a managed policy of account "
                f"{account.account_id} nor an AWS managed policy the lab knows",
                step="session policy",
                policy_arn=arn,
            )
            if pipeline.observe is not None:
                pipeline.observe("session policy", state, err)
            raise err
        out.append((f"session policy {arn}", managed.document))
    return out


def get_caller_identity(account: Account, cred: Credential) -> CallerIdentity:
    """Who signed the request: ``Arn``, ``UserId`` and ``Account`` as STS prints them."""
    acct = arn_account(cred.arn, account.account_id)
    return {"UserId": cred.user_id, "Account": acct, "Arn": cred.arn}


# --- the HTTP layer ------------------------------------------------------------------
def make_app(
    account: Account,
    *,
    fetcher: OidcKeyFetcher | KeysForIssuer,
    clock: Clock,
    wall_clock: Clock | None = None,
    trace: Trace,
    region: str = REGION,
) -> web.Application:
    """The STS endpoint: the query protocol (:class:`QueryService`) on any path.

    ``fetcher`` is an :class:`OidcKeyFetcher` (or any ``(issuer, kid) -> keys``).
    ``region`` is the endpoint's: GetCallerIdentity must be signed for it, as STS's
    regional endpoints require, and sessions are requested in it (``aws:RequestedRegion``).
    """
    wall = wall_clock or SystemClock()
    keys_for_issuer: KeysForIssuer = (
        fetcher.keys if isinstance(fetcher, OidcKeyFetcher) else fetcher
    )

    async def assume(call: QueryCall) -> str:
        result = await assume_role_with_web_identity(
            account,
            call.params,
            clock=clock,
            wall_clock=wall,
            keys_for_issuer=keys_for_issuer,
            trace=trace,
            region=region,
        )
        return result.to_xml()

    async def caller(call: QueryCall) -> str:
        try:
            call.caller = verify_request(
                account, call.request, call.body, wall.now(), "sts", region=region
            ).credential
        except AwsError as err:
            trace.record("sdk", "sts", "GetCallerIdentity", err.code, why=err.explanation)
            raise
        ident = get_caller_identity(account, call.caller)
        trace.record("sdk", "sts", "GetCallerIdentity", arn=ident["Arn"], region=region)
        return (
            element("Arn", ident["Arn"])
            + element("UserId", ident["UserId"])
            + element("Account", ident["Account"])
        )

    return QueryService(
        "sts",
        STS_NS,
        STS_API_VERSION,
        {"AssumeRoleWithWebIdentity": assume, "GetCallerIdentity": caller},
        account.ids,
        trace,
    ).app()
