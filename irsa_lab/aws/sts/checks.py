"""The checks of AssumeRoleWithWebIdentity: one pipeline, named steps, one error class per failure.

The STS stand-in (:mod:`.service`), the trust-policy playground and the token decoder all
run :class:`Pipeline`, so they cannot disagree about a token. The steps, in the order
of docs/reference/sts.md §2.2 (the stand-in checks the request parameters before them):

====================  ==================================================================
``parse``             three base64url parts, JSON header and claims
``algorithm``         ``alg`` is one STS accepts (:data:`irsa_lab.jose.ALGORITHMS`)
``claims``            ``iss sub aud iat exp`` present; strings and integer NumericDates;
                      session tags and source identity well formed (:mod:`.session_claims`)
``OIDC provider``     an IAM OIDC provider whose URL is ``iss`` without ``https://``
``JWKS``              the issuer's keys (discovery, then ``jwks_uri``)
``kid``               the key named by the header's ``kid``
``signature``         the signature under that key, with the token's ``alg``
``times``             ``exp``, ``nbf``, ``iat`` against the clock, with no leeway
``audience``          ``aud`` (or ``azp`` when ``aud`` has several values) is a client ID
``role``              the role exists
``trust policy``      the role's trust policy lets the provider's ``sub``/``aud`` in, and
                      allows ``sts:TagSession`` / ``sts:SetSourceIdentity`` when the
                      token passes session tags / a source identity
``duration``          ``DurationSeconds`` within the role's ``MaxSessionDuration``
``session policy``    the session policy parses and fits the packed size
====================  ==================================================================

No leeway on the times: real STS refused a token 198 s past ``exp``
(awslabs/aws-orbit-workbench#707), and no published source gives it any tolerance.

A failure raises one of the classes of :mod:`.errors`, with ``step`` set to the step
that refused; a caller that wants to show every step passes ``observe``.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn, Protocol

from ... import jose
from ...clock import rfc3339
from ...constants import ACCOUNT_ID, DEFAULT_SESSION_DURATION_S, REGION
from ..arns import issuer_host_path, oidc_provider_arn
from ..errors import AwsError
from ..model import OidcProvider, Role
from ..oidc_client import PublicKey, idp_unreachable, parse_jwks
from ..policy import Decision, Policy, RequestContext, evaluate, oidc_trust_context, parse_policy
from ..policy.grammar import wire_text
from .errors import (
    DurationTooLong,
    ExpiredToken,
    ImmatureToken,
    InvalidAudience,
    InvalidClaimType,
    InvalidSignature,
    IssuedInTheFuture,
    KeyNotFound,
    MalformedPolicyDocument,
    MalformedToken,
    MissingRequiredClaim,
    NoOpenIDConnectProvider,
    PackedPolicyTooLarge,
    RoleNotFound,
    SessionPermissionDenied,
    StsError,
    TrustPolicyDenied,
    UnsupportedAlgorithm,
    adopt,
)
from .session_claims import SessionClaims, read_session_claims

__all__ = [
    "IAM_STEPS",
    "REQUIRED_CLAIMS",
    "STEPS",
    "TOKEN_STEPS",
    "Iam",
    "IamView",
    "KeysForIssuer",
    "Pipeline",
    "ProviderLike",
    "RoleLike",
    "State",
    "keys_from_jwks",
]

REQUIRED_CLAIMS = ("iss", "sub", "aud", "iat", "exp")
SESSION_POLICY_LIMIT = 2048  # plaintext chars of inline plus managed session policies


# --- what the pipeline reads: IAM's view ----------------------------------------------------
@dataclass(frozen=True)
class _Provider:
    """An IAM OIDC provider as :class:`IamView` holds it: what the checks read of one."""

    url: str
    arn: str
    client_ids: tuple[str, ...]


@dataclass(frozen=True)
class _Role:
    """A role as :class:`IamView` holds it: what the checks read of one."""

    name: str
    arn: str
    trust_policy: str
    max_session_duration: int = 3600


# The account's own records (:mod:`..model`) or the view's: the checks read
# ``url arn client_ids`` of a provider and ``name arn trust_policy max_session_duration``
# of a role, which both spell alike.
ProviderLike = OidcProvider | _Provider
RoleLike = Role | _Role


class Iam(Protocol):
    """What STS asks IAM: :class:`IamView`, or the stand-in's account (:mod:`.sts`)."""

    def oidc_provider_for_issuer(self, issuer: str) -> ProviderLike | None: ...
    def role_by_arn(self, arn: str) -> RoleLike | None: ...
    def provider_urls(self) -> list[str]: ...


@dataclass(frozen=True)
class IamView:
    """A small IAM for the playground and the decoder: providers and roles as plain data.

    ``providers`` maps a provider URL (issuer without ``https://``) to its client IDs;
    ``roles`` maps a role ARN to its trust policy text. Provider ARNs are made in
    ``partition`` and ``account_id``, as IAM makes them.
    """

    providers: Mapping[str, Sequence[str]] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    account_id: str = ACCOUNT_ID
    partition: str = "aws"

    def oidc_provider_for_issuer(self, issuer: str) -> ProviderLike | None:
        url = issuer_host_path(issuer)
        if url not in self.providers:
            return None
        arn = oidc_provider_arn(self.account_id, url, partition=self.partition)
        return _Provider(url, arn, tuple(self.providers[url]))

    def provider_urls(self) -> list[str]:
        return sorted(self.providers)

    def role_by_arn(self, arn: str) -> RoleLike | None:
        policy = self.roles.get(arn)
        return None if policy is None else _Role(arn.rsplit("/", 1)[-1], arn, policy)


# --- the pipeline ------------------------------------------------------------------------------
KeysForIssuer = Callable[
    [str, str | None], "Awaitable[Mapping[str, PublicKey]] | Mapping[str, PublicKey]"
]
"""``(issuer, kid) -> {kid: public key}``, sync or async; raises ``AwsError`` when unreachable."""


def keys_from_jwks(
    jwks: Mapping[str, Any],
) -> Callable[[str, str | None], Mapping[str, PublicKey]]:
    """``keys_for_issuer`` for a JWKS document already in hand (the decoder's, the
    playground's): read by the parser STS uses on a downloaded one; a JWKS with no
    usable key is the same ``IDPCommunicationError``."""
    document = dict(jwks)

    def keys(_issuer: str, _kid: str | None) -> Mapping[str, PublicKey]:
        try:
            return parse_jwks(document)
        except ValueError as exc:
            raise idp_unreachable(f"the JWKS: {exc}") from None

    return keys


@dataclass
class State:
    """What the pipeline has established so far; each step adds to it."""

    token: str | None
    claims: dict[str, Any] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    jws: jose.CompactJws | None = None
    alg: str | None = None
    kid: str | None = None
    provider: ProviderLike | None = None
    keys: Mapping[str, PublicKey] | None = None
    key: PublicKey | None = None
    audience: str | None = None
    role: RoleLike | None = None
    decision: Decision | None = None
    session: SessionClaims | None = None
    """The session tags and source identity the token passes (``claims`` step)."""
    packed_policy_size: int | None = None
    notes: list[tuple[str, str]] = field(default_factory=list)
    """``(step, what it found)`` for every step passed, in order."""


Check = Callable[..., str]

TOKEN_STEPS = (
    "parse",
    "algorithm",
    "claims",
    "OIDC provider",
    "JWKS",
    "kid",
    "signature",
    "times",
    "audience",
)
IAM_STEPS = ("role", "trust policy", "duration", "session policy")
STEPS = ("parameters", *TOKEN_STEPS, *IAM_STEPS)
"""Every step STS runs, in order; ``parameters`` is the stand-in's own (:mod:`.params`)."""


@dataclass
class Pipeline:
    """The checks of one AssumeRoleWithWebIdentity, run step by step.

    ``iam`` answers provider and role lookups; ``now`` is the time the token is
    judged at (the lab clock); ``role_arn``, ``duration``, ``policy``,
    ``policy_arns`` and ``session_name`` (``RoleSessionName``, the trust evaluation's
    ``sts:RoleSessionName``) are the request's. ``steps`` picks which named steps run (a
    sub-sequence of :data:`STEPS`): the decoder runs :data:`TOKEN_STEPS`, STS all of
    them. ``observe(step, state, error)`` is told after each step (``error`` None
    when it passed), which is how the stand-in writes its trace.
    """

    iam: Iam
    now: float
    role_arn: str = ""
    duration: int | None = None
    policy: str | None = None
    policy_arns: Sequence[str] = ()
    steps: Sequence[str] = TOKEN_STEPS + IAM_STEPS
    observe: Callable[[str, State, StsError | None], None] | None = None
    session_name: str | None = None
    region: str = REGION  # the region of the STS endpoint: aws:RequestedRegion

    def __post_init__(self) -> None:
        unknown = [s for s in self.steps if s not in _CHECKS]
        if unknown:
            raise ValueError(f"unknown steps {unknown}; the steps are {STEPS}")

    # -- running --------------------------------------------------------------------------
    def run(
        self,
        token: str | None,
        keys_for_issuer: Callable[[str, str | None], Mapping[str, PublicKey]] | None = None,
        *,
        claims: Mapping[str, Any] | None = None,
    ) -> State:
        """Run every step; returns the final :class:`State` or raises :class:`StsError`.

        ``claims`` starts from already known claims (the playground's edited fields)
        when the token steps are not run.
        """
        state, rest = self._until_jwks(token, claims)
        if not rest:
            return state
        if keys_for_issuer is None:
            raise ValueError("the JWKS step needs keys_for_issuer")
        keys: Mapping[str, PublicKey] | AwsError
        try:
            keys = keys_for_issuer(str(state.claims["iss"]), state.kid)
        except AwsError as err:
            keys = err
        return self._from_jwks(state, rest, keys)

    async def arun(
        self,
        token: str | None,
        keys_for_issuer: KeysForIssuer,
        *,
        claims: Mapping[str, Any] | None = None,
    ) -> State:
        """:meth:`run` for a server: ``keys_for_issuer`` may be a coroutine function."""
        state, rest = self._until_jwks(token, claims)
        if not rest:
            return state
        keys: Mapping[str, PublicKey] | AwsError
        try:
            got = keys_for_issuer(str(state.claims["iss"]), state.kid)
            keys = await got if inspect.isawaitable(got) else got
        except AwsError as err:
            keys = err
        return self._from_jwks(state, rest, keys)

    # The key fetch is the one step that may wait for the network; run and arun differ
    # only in how they wait, so the steps on either side of it are run here, once.
    def _until_jwks(
        self, token: str | None, claims: Mapping[str, Any] | None
    ) -> tuple[State, list[str]]:
        """Run the steps before ``JWKS``; returns the state and the steps from ``JWKS`` on."""
        state = State(token)
        if claims is not None:
            state.claims = dict(claims)
        steps = list(self.steps)
        at = steps.index("JWKS") if "JWKS" in steps else len(steps)
        for name in steps[:at]:
            self._step(name, state, _CHECKS[name])
        return state, steps[at:]

    def _from_jwks(
        self, state: State, steps: list[str], keys: Mapping[str, PublicKey] | AwsError
    ) -> State:
        """The ``JWKS`` step with the fetched ``keys`` (or the fetch's error), then the rest."""
        if isinstance(keys, AwsError):
            self._fail("JWKS", state, adopt(keys))
        self._step("JWKS", state, _publishes, keys)
        for name in steps[1:]:
            self._step(name, state, _CHECKS[name])
        return state

    def _step(self, name: str, state: State, check: Callable[..., str], *args: Any) -> None:
        try:
            note = check(self, state, *args)
        except AwsError as err:
            self._fail(name, state, adopt(err))
        state.notes.append((name, note))
        if self.observe is not None:
            self.observe(name, state, None)

    def _fail(self, name: str, state: State, err: StsError) -> NoReturn:
        err.step = name
        if self.observe is not None:
            self.observe(name, state, err)
        raise err


# --- the steps -----------------------------------------------------------------------------
def _publishes(p: Pipeline, s: State, keys: Mapping[str, PublicKey]) -> str:
    s.keys = dict(keys)
    kids = sorted(s.keys)
    return f"the issuer publishes {len(kids)} key{'s' if len(kids) != 1 else ''}: " + (
        ", ".join(k or "(no kid)" for k in kids)
    )


def _parse(p: Pipeline, s: State) -> str:
    if s.token is None:
        raise ValueError("the parse step needs a token")
    # Real projected tokens have no trailing newline; a hand-edited file often does.
    # [I] The lab forgives surrounding whitespace rather than refuse the token.
    try:
        s.jws = jose.parse_compact(s.token.strip())
    except jose.JoseError as exc:
        raise MalformedToken(explanation=str(exc)) from None
    s.header, s.claims = s.jws.header, s.jws.claims
    return "three base64url parts; the header and the claims are JSON objects"


def _algorithm(p: Pipeline, s: State) -> str:
    alg = s.header.get("alg")
    if alg not in jose.ALGORITHMS:
        # 'none' and HMAC ('HS256' signed with the public key as secret) end here.
        raise UnsupportedAlgorithm(
            f"Unsupported token signing algorithm: {alg}",
            f"alg {alg!r} is not one STS accepts ({', '.join(jose.ALGORITHMS)})",
            alg=str(alg),
        )
    s.alg = str(alg)
    return f"alg {alg} is one STS accepts"


def _claims(p: Pipeline, s: State) -> str:
    c = s.claims
    for name in REQUIRED_CLAIMS:
        if name not in c or c[name] in (None, "", []):
            raise MissingRequiredClaim(
                f"Missing a required claim: {name}", f"the token has no '{name}' claim", claim=name
            )
    for name in ("iss", "sub"):
        if not isinstance(c[name], str):
            raise MalformedToken(explanation=f"the '{name}' claim must be a string")
    aud = c["aud"]
    if not (
        isinstance(aud, str) or (isinstance(aud, list) and all(isinstance(a, str) for a in aud))
    ):
        raise MalformedToken(explanation="the 'aud' claim must be a string or a list of strings")
    for name in ("iat", "exp", "nbf"):
        value = c.get(name)
        if name in c and (isinstance(value, bool) or not isinstance(value, int)):
            # STS wants integer NumericDates; 1.5 or "123" are refused.
            raise InvalidClaimType(
                f"Invalid claim: {name} must be an integer",
                f"'{name}' is {value!r}, not an integer number of seconds",
                claim=name,
            )
    kid = s.header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise MalformedToken(explanation="the header's 'kid' must be a string")
    s.kid = kid
    s.session = read_session_claims(c)
    note = "iss, sub, aud, iat and exp are present; the times are integers"
    if s.session.tags or s.session.source_identity is not None:
        note += f"; the token passes {s.session.describe()}"
    return note


def _provider(p: Pipeline, s: State) -> str:
    iss = str(s.claims.get("iss", ""))
    provider = p.iam.oidc_provider_for_issuer(iss) if iss.startswith("https://") else None
    if provider is None:
        raise NoOpenIDConnectProvider(
            f"No OpenIDConnect provider found in your account for {iss}",
            f"IAM has no OIDC provider with URL {issuer_host_path(iss)!r} "
            "(the issuer without https://, compared exactly: case, trailing slash and "
            f"cluster id matter); the providers are {p.iam.provider_urls()}",
            iss=iss,
        )
    s.provider = provider
    return f"the IAM OIDC provider {provider.arn}"


def _kid(p: Pipeline, s: State) -> str:
    keys = s.keys or {}
    kid = s.kid
    if kid:
        if kid not in keys:
            raise KeyNotFound(
                explanation=f"kid {kid} is not in the JWKS (keys published: "
                f"{', '.join(sorted(keys)) or 'none'})",
                kid=kid,
                jwks_kids=sorted(keys),
            )
        s.key = keys[kid]
        return f"kid {kid} is in the JWKS"
    if "" in keys:
        s.key = keys[""]
        return "no kid in the header; the JWKS has a key without a kid, so that one is used"
    if len(keys) == 1:
        s.key = next(iter(keys.values()))
        return "no kid in the header; the JWKS has exactly one key, so that one is used"
    raise KeyNotFound(
        explanation=f"the token has no kid and the JWKS holds {len(keys)} keys: which one?"
    )


def _signature(p: Pipeline, s: State) -> str:
    assert s.jws is not None and s.alg is not None
    if not jose.verify(s.jws, s.alg, s.key):
        fits = jose.key_fits(s.alg, s.key)
        raise InvalidSignature(
            explanation="the signature does not match the header and payload: the token was "
            "changed after it was signed, or signed with another key"
            + ("" if fits else f" (the published key cannot verify {s.alg})"),
            alg=s.alg,
        )
    return f"the signature matches the header and payload under the published key ({s.alg})"


def _times(p: Pipeline, s: State) -> str:
    t = int(p.now)
    exp = s.claims["exp"]
    if t >= exp:
        raise ExpiredToken(
            f"Token expired: current date/time {t} must be before the expiration date/time {exp}",
            f"the token expired at {rfc3339(exp)}, {t - exp} s ago (STS allows no leeway)",
            now=t,
            exp=exp,
        )
    nbf = s.claims.get("nbf")
    if nbf is not None and nbf > t:
        raise ImmatureToken(
            f"Token not yet valid: current date/time {t} must be after the not-before date/time {nbf}",
            f"nbf is {nbf - t} s in the future (STS allows no leeway)",
            now=t,
            nbf=nbf,
        )
    iat = s.claims["iat"]
    if iat > t:
        raise IssuedInTheFuture(
            f"Token issued in the future: current date/time {t} must be after the issued-at date/time {iat}",
            f"iat is {iat - t} s in the future (STS allows no leeway)",
            now=t,
            iat=iat,
        )
    return f"valid now: exp is {exp - t} s away"


def _audience(p: Pipeline, s: State) -> str:
    assert s.provider is not None
    aud = s.claims.get("aud")
    values = [aud] if isinstance(aud, str) else list(aud or [])
    if len(values) == 1:
        chosen = values[0]
    else:
        # With several audiences STS matches the authorised party instead.
        azp = s.claims.get("azp")
        if not isinstance(azp, str):
            raise InvalidAudience(
                explanation=f"the token has several audiences {values} and no 'azp' claim",
                audience=values,
                client_ids=list(s.provider.client_ids),
                provider=s.provider.arn,
            )
        chosen = azp
    client_ids = list(s.provider.client_ids)
    if chosen not in client_ids:
        raise InvalidAudience(
            explanation=f"the token's audience {chosen!r} is not a client ID of the IAM OIDC "
            f"provider {s.provider.arn} (client IDs: {client_ids})",
            audience=chosen,
            client_ids=client_ids,
            provider=s.provider.arn,
        )
    s.audience = chosen
    return f"audience {chosen} is a client ID of the provider"


def _role(p: Pipeline, s: State) -> str:
    role = p.iam.role_by_arn(p.role_arn)
    if role is None:
        raise RoleNotFound(explanation=f"the role {p.role_arn} does not exist", role_arn=p.role_arn)
    s.role = role
    return f"the role {role.name} exists"


def _trust_context(p: Pipeline, s: State, session: SessionClaims) -> RequestContext:
    """The request STS evaluates the trust policy with: the provider's ``sub``/``aud``, the
    session tags (``aws:RequestTag/<key>``, ``aws:TagKeys``), ``sts:SourceIdentity`` and
    ``sts:RoleSessionName`` (IAM User Guide, "IAM and AWS STS condition context keys"),
    and the global keys of :func:`~irsa_lab.aws.policy.oidc_trust_context` at ``now``."""
    assert s.provider is not None
    ctx = oidc_trust_context(
        s.provider.arn,
        {"sub": s.claims.get("sub", ""), "aud": s.audience},
        session_name=p.session_name,
        now=p.now,
        region=p.region,
    )
    return replace(ctx, keys={**ctx.keys, **session.condition_keys()})


def _trust(p: Pipeline, s: State) -> str:
    assert s.role is not None and s.provider is not None
    role = s.role
    if s.session is None:
        # Edited claims (the playground) skip the ``claims`` step: read them here.
        s.session = read_session_claims(s.claims)
    session = s.session
    ctx = _trust_context(p, s, session)
    policy: str | Policy = role.trust_policy
    try:
        decision = evaluate([(f"{role.name} trust policy", policy)], ctx, kind="trust")
    except AwsError as bad:
        raise TrustPolicyDenied(
            explanation=f"the trust policy of {role.name} cannot be read: {bad.message}",
            role=role.name,
        ) from None
    s.decision = decision
    if decision.allowed:
        # Passing session tags or a source identity is an action of its own, which the
        # same trust policy must allow, with the same request context ("Permissions
        # required to add session tags", "... to set source identity").
        for action in session.extra_actions():
            extra = evaluate(
                [(f"{role.name} trust policy", policy)], replace(ctx, action=action), kind="trust"
            )
            if not extra.allowed:
                s.decision = extra
                _deny(role.name, extra, SessionPermissionDenied, action, session)
        also = "".join(f"; {a} allowed too" for a in session.extra_actions())
        return decision.verdict() + also
    _deny(role.name, decision, TrustPolicyDenied, None, session)


def _deny(
    role: str,
    decision: Decision,
    cls: type[TrustPolicyDenied],
    action: str | None,
    session: SessionClaims,
) -> NoReturn:
    explanation = decision.explain()
    if action is not None:
        explanation = (
            f"the token passes {session.describe()}, so the trust policy must also allow "
            f"{action}; it does not.\n{explanation}"
        )
    failed = [
        {
            "operator": c.operator,
            "key": c.key,
            "expected": c.expected,
            "actual": c.actual,
            "note": c.note,
        }
        for c in decision.failed_conditions()
    ]
    err = cls(
        explanation=explanation,
        role=role,
        reason=decision.reason,
        failed_conditions=failed,
        verdict=decision.verdict(),
        **({"action": action} if action is not None else {}),
    )
    err.decision = decision
    raise err


def _duration(p: Pipeline, s: State) -> str:
    assert s.role is not None
    wanted = DEFAULT_SESSION_DURATION_S if p.duration is None else p.duration
    if wanted > s.role.max_session_duration:
        raise DurationTooLong(
            explanation=f"{wanted} s asked, the role allows {s.role.max_session_duration} s"
        )
    return f"{wanted} s, within the role's {s.role.max_session_duration} s"


def _session_policy(p: Pipeline, s: State) -> str:
    # The session tags were measured in the ``claims`` step; STS reports the larger use.
    tags_percent = s.session.packed_tags_percent if s.session is not None else None
    if p.policy is None and not p.policy_arns:
        if tags_percent is None:
            return "no session policy"
        s.packed_policy_size = tags_percent
        return f"no session policy; the session tags use {tags_percent}% of the packed space"
    size = 0
    if p.policy is not None:
        try:
            parse_policy(p.policy, kind="identity")
        except AwsError as err:
            raise MalformedPolicyDocument(wire_text(err), err.explanation) from None
        size += len(json.dumps(json.loads(p.policy), separators=(",", ":")))
    size += sum(len(a) for a in p.policy_arns)
    # [I] STS reports how much of the packed space a session policy uses, in percent.
    percent = math.ceil(100 * size / SESSION_POLICY_LIMIT)
    if percent > 100:
        raise PackedPolicyTooLarge(
            f"Packed policy consumes {percent}% of allotted space, please use smaller policy."
        )
    s.packed_policy_size = max(percent, tags_percent or 0)
    return f"the session policy uses {percent}% of the packed space"


_CHECKS: dict[str, Check] = {
    "parse": _parse,
    "algorithm": _algorithm,
    "claims": _claims,
    "OIDC provider": _provider,
    "JWKS": _publishes,  # Pipeline fetches the keys first: it may wait for the network
    "kid": _kid,
    "signature": _signature,
    "times": _times,
    "audience": _audience,
    "role": _role,
    "trust policy": _trust,
    "duration": _duration,
    "session policy": _session_policy,
}
