"""The decoder, the playground and the STS stand-in give the same verdict at the same step.

Generated tokens (valid or broken signatures, known and unknown kids, every algorithm
family, issuers, audiences as strings and lists with and without ``azp``, times around
``exp``/``nbf``/``iat`` (one second either side, no leeway), missing claims, non-integer
times, session tags and a source identity in AWS's claims, valid or breaking their
rules) meet generated trust policies (conditions on ``<issuer>:sub`` and ``:aud`` under
StringEquals/StringLike, on ``aws:RequestTag/<key>``, ``aws:TagKeys``,
``sts:SourceIdentity`` and ``sts:RoleSessionName``, wrong values, another provider,
another action, with and without ``sts:TagSession`` / ``sts:SetSourceIdentity``) and
provider client IDs. Each case goes to

- the STS stand-in: :func:`irsa_lab.aws.sts.assume_role_with_web_identity`, the very
  call its HTTP handler makes, on an IAM account seeded as the lab seeds it;
- the playground: :func:`irsa_lab.ui.playground.judge` with the token and the JWKS;
- the decoder: :func:`irsa_lab.ui.decoder.verify_token` with the same providers.

STS and the playground must agree on everything (allowed, step, exception class, code,
message). The decoder checks the token only, so it must fail at the same step with the
same class when STS fails at a token step, and accept the token otherwise.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jwt.algorithms import ECAlgorithm

from irsa_lab import jose
from irsa_lab.aws.model import Account
from irsa_lab.aws.scenario import seed_default
from irsa_lab.aws.sts import TOKEN_STEPS, StsError, assume_role_with_web_identity
from irsa_lab.aws.sts.checks import keys_from_jwks
from irsa_lab.clock import LAB_EPOCH, ManualClock, SystemClock
from irsa_lab.constants import DEFAULT_AUDIENCE, ROLE_ARN, ROLE_NAME
from irsa_lab.ids import Ids
from irsa_lab.pki import SigningKey
from irsa_lab.trace import Trace
from irsa_lab.ui.decoder import verify_token
from irsa_lab.ui.playground import judge

EXAMPLES = 800
ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
HOST = ISSUER.removeprefix("https://")
NOW = int(LAB_EPOCH)
SUB = "system:serviceaccount:default:s3-readonly-sa"
SESSION_NAME = "agreement"
TAGS_CLAIM = "https://aws.amazon.com/tags"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
DEMO_PEM = Path(__file__).resolve().parents[1] / "irsa_lab" / "data" / "keys" / "demo-sa-signer.pem"

RSA_KEY = SigningKey.from_pem(DEMO_PEM.read_bytes())
OTHER_RSA_KEY = SigningKey.generate()  # signs, but is not in the JWKS
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_KID = "ec-p256"
EC_JWK = {**ECAlgorithm.to_jwk(EC_KEY.public_key(), as_dict=True), "kid": EC_KID, "use": "sig"}
JWKS = {"keys": [RSA_KEY.public_jwk(), EC_JWK]}
PUBLIC_PEM = RSA_KEY.private_key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
ABSENT = object()
BAD_TAGS: list[Any] = [
    {"principal_tags": {f"k{i}": [""] for i in range(51)}},
    {"principal_tags": {"aws:Project": ["a"]}},
    {"principal_tags": {"Project": ["a", "b"]}},
    {"principal_tags": {"Project": ["a"], "project": ["b"]}},
    {"principal_tags": {f"T{i}": ["a" * 250] for i in range(9)}},
    ["Project"],
]
BAD_SOURCE_IDS: list[Any] = ["a", "aws:admin", "x" * 65, 42]


def weighted(good: Any, *bad: Any, weight: int = 4) -> st.SearchStrategy[Any]:
    """``good`` ``weight`` times as likely as each bad value."""
    return st.sampled_from([good] * weight + list(bad))


@dataclass(frozen=True)
class Case:
    token: str
    policy: str
    client_ids: tuple[str, ...]

    def describe(self) -> str:
        try:
            jws = jose.parse_compact(self.token)
            token = json.dumps({"header": jws.header, "claims": jws.claims})
        except jose.JoseError:
            token = repr(self.token)
        return f"token {token}\nclient IDs {self.client_ids}\npolicy {self.policy}"


@st.composite
def tokens(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from(["garbage", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.e30", "xx.yy"]))
    # Most tokens pass the token steps, so the audience and the trust policy decide.
    clean = draw(weighted(True, False, weight=3))

    def field(good: Any, *bad: Any, weight: int = 4) -> Any:
        return good if clean else draw(weighted(good, *bad, weight=weight))

    alg = field("RS256", "RS384", "RS512", "ES256", "HS256", "none", "PS256", weight=8)
    kid = field("right", "other", "unknown", "absent", "number", weight=8)
    signer = field("right", "other key", weight=8)
    tampered = field(False, True, weight=8)
    claims: dict[str, Any] = {
        "iss": field(ISSUER, ISSUER + "/", ISSUER.lower(), "http://" + HOST, ABSENT, 42, weight=8),
        # the subject and the audiences meet the trust policy too: varied even when clean
        "sub": draw(
            weighted(
                SUB,
                "system:serviceaccount:kube-system:s3-readonly-sa",
                "system:serviceaccount:default:other-sa",
                weight=3,
            )
        ),
        "aud": draw(
            weighted(
                [DEFAULT_AUDIENCE],
                DEFAULT_AUDIENCE,
                ["sts.amazon.com"],
                [DEFAULT_AUDIENCE, "other"],
                ["other", "sts.amazon.com"],
                weight=6,
            )
        ),
        "azp": draw(weighted(ABSENT, DEFAULT_AUDIENCE, "other", weight=3)),
        # around the boundaries: 1 s before exp, at exp, 1 s, 198 s, 290 s, 300 s past it
        "exp": NOW + field(86400, 3600, 301, 1, 0, -1, -198, -290, -300, -301, -86400, weight=2),
        "iat": NOW + field(0, -3600, -86400, 1, 200, weight=3),
        "nbf": NOW + field(0, -3600, 1, 200, weight=2),
        "kubernetes.io": {"namespace": "default"},
        # AWS's session claims: absent from IRSA tokens, often absent here too; the ones
        # breaking AWS's rules only in tokens that are not clean
        TAGS_CLAIM: draw(
            st.sampled_from(
                [ABSENT] * 6
                + [{"principal_tags": {"Project": ["Automation"]}}] * 3
                + [
                    {"principal_tags": {"Project": ["Other"], "Team": ["a"]}},
                    {"principal_tags": {"Project": ["Automation"]}, "transitive_tag_keys": ["P"]},
                    {"principal_tags": {}},
                ]
                + BAD_TAGS * (not clean)
            )
        ),
        SOURCE_IDENTITY_CLAIM: draw(
            st.sampled_from([ABSENT] * 6 + ["Admin"] * 3 + ["Diego"] + BAD_SOURCE_IDS * (not clean))
        ),
    }
    if not clean:
        if draw(st.integers(0, 7)) == 0:
            claims[draw(st.sampled_from(["sub", "aud"]))] = draw(st.sampled_from(["", [], 7]))
        for name in ("iss", "sub", "aud", "exp", "iat", "nbf"):
            kind = draw(weighted("keep", "absent", "float", "text", "bool", weight=60))
            if kind == "absent":
                claims[name] = ABSENT
            elif name not in ("exp", "iat", "nbf") or kind == "keep":
                continue
            elif kind == "float":
                claims[name] = claims[name] + 0.5
            elif kind == "text":
                claims[name] = str(claims[name])
            elif kind == "bool":
                claims[name] = True
    claims = {k: v for k, v in claims.items() if v is not ABSENT}

    header: dict[str, Any] = {"alg": alg}
    own_kid = EC_KID if alg.startswith("ES") else RSA_KEY.kid
    header_kid = {
        "right": own_kid,
        "other": RSA_KEY.kid if own_kid == EC_KID else EC_KID,
        "unknown": "rotated-away",
        "absent": ABSENT,
        "number": 7,
    }[kid]
    if header_kid is not ABSENT:
        header["kid"] = header_kid
    if alg.startswith("ES"):
        key: Any = EC_KEY
    elif alg == "HS256":
        key = PUBLIC_PEM  # the classic confusion attack: HMAC keyed with the public key
    elif alg == "PS256":
        key = RSA_KEY.private_key
    else:
        key = (OTHER_RSA_KEY if signer == "other key" else RSA_KEY).private_key
    token = jose.sign_compact(header, claims, key)
    if tampered:
        head, body, sig = token.split(".")
        token = f"{head}.{body}.{sig[:-4]}{'AAAA' if not sig.endswith('AAAA') else 'BBBB'}"
    return token


@st.composite
def policies(draw: st.DrawFn) -> str:
    prefix = draw(weighted(HOST, ISSUER, weight=6))
    provider = draw(weighted(HOST, HOST.replace("eu-west-1", "us-east-1"), weight=6))
    operator = draw(st.sampled_from(["StringEquals", "StringLike"]))
    conditions: dict[str, str] = {}
    sub = draw(
        weighted(
            SUB,
            "system:serviceaccount:default:*",
            "system:serviceaccount:*:s3-readonly-sa",
            "system:serviceaccount:dev:s3-readonly-sa",
            "system:serviceaccount:default:s3-read-only-sa",
            None,
            weight=4,
        )
    )
    aud = draw(weighted(DEFAULT_AUDIENCE, "sts.amazon.com", "sts.*", None, weight=4))
    if sub is not None:
        conditions[f"{prefix}:sub"] = sub
    if aud is not None:
        conditions[f"{prefix}:aud"] = aud
    # the request keys of session tags, source identity and session name
    session_keys = draw(
        weighted(
            {},
            {"aws:RequestTag/Project": "Automation"},
            {"aws:TagKeys": "Project"},
            {"sts:SourceIdentity": "Admin"},
            {"sts:RoleSessionName": SESSION_NAME},
            {"sts:RoleSessionName": "other"},
            weight=8,
        )
    )
    conditions.update(session_keys)
    web = "sts:AssumeRoleWithWebIdentity"
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Federated": f"arn:aws:iam::123456789012:oidc-provider/{provider}"},
        "Action": draw(
            weighted(
                web,
                [web, "sts:TagSession"],
                [web, "sts:SetSourceIdentity"],
                [web, "sts:TagSession", "sts:SetSourceIdentity"],
                "sts:AssumeRole",
                "sts:*",
                weight=5,
            )
        ),
    }
    if conditions:
        statement["Condition"] = {operator: conditions}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


cases = st.builds(
    Case,
    tokens(),
    policies(),
    weighted(
        (DEFAULT_AUDIENCE,), ("sts.amazon.com",), (DEFAULT_AUDIENCE, "other"), ("other",), weight=5
    ),
)


@dataclass(frozen=True)
class Answer:
    allowed: bool
    step: str | None = None
    failure: type[StsError] | None = None
    code: str | None = None
    message: str | None = None


@pytest.fixture(scope="module")
def account() -> Iterator[Account]:
    acct = Account(clock=ManualClock(NOW), ids=Ids(7))
    seed_default(acct, issuer=ISSUER)
    yield acct


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


def sts_answer(runner: asyncio.Runner, account: Account, case: Case) -> Answer:
    """What the STS stand-in answers: the function its HTTP handler awaits."""
    account.roles[ROLE_NAME].trust_policy = case.policy
    (provider,) = account.oidc_providers.values()
    provider.client_ids = list(case.client_ids)
    params = {
        "RoleArn": ROLE_ARN,
        "RoleSessionName": SESSION_NAME,
        "WebIdentityToken": case.token,
    }
    keys = keys_from_jwks(JWKS)
    try:
        runner.run(
            assume_role_with_web_identity(
                account,
                params,
                clock=ManualClock(NOW),
                wall_clock=SystemClock(),
                keys_for_issuer=keys,
                trace=Trace(),
            )
        )
    except StsError as err:
        return Answer(False, err.step, type(err), err.code, err.message)
    account.credentials.clear()
    return Answer(True)


def playground_answer(case: Case) -> Answer:
    v = judge(
        case.policy,
        providers={HOST: list(case.client_ids)},
        role_arn=ROLE_ARN,
        token=case.token,
        jwks=JWKS,
        now=NOW,
        session_name=SESSION_NAME,
    )
    if v.allowed:
        return Answer(True)
    return Answer(False, v.step, type(v.failure) if v.failure else None, v.code, v.message)


def decoder_answer(case: Case) -> Answer:
    v = verify_token(case.token, JWKS, providers={HOST: list(case.client_ids)}, now=NOW)
    if v.ok:
        return Answer(True)
    f = v.failure
    assert f is not None
    return Answer(False, v.failed_step, type(f), f.code, f.message)


def test_decoder_playground_and_sts_agree_on_generated_tokens_and_policies(
    runner: asyncio.Runner, account: Account
) -> None:
    seen: Counter[str] = Counter()
    classes: Counter[str] = Counter()
    session: Counter[str] = Counter()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(case=cases)
    def agree(case: Case) -> None:
        sts = sts_answer(runner, account, case)
        assert playground_answer(case) == sts, case.describe()
        decoder = decoder_answer(case)
        if sts.step in TOKEN_STEPS:
            assert decoder == sts, case.describe()
        else:
            assert decoder == Answer(True), case.describe()
        seen[sts.step or "allowed"] += 1
        classes[sts.failure.__name__ if sts.failure else "allowed"] += 1
        claims = _claims(case.token)
        if sts.allowed and claims.get(TAGS_CLAIM, {}).get("principal_tags"):
            session["allowed with session tags"] += 1
        if sts.allowed and SOURCE_IDENTITY_CLAIM in claims:
            session["allowed with a source identity"] += 1

    agree()
    print(f"\n{sum(seen.values())} cases; verdict at each step: {dict(seen.most_common())}")
    print(f"by class: {dict(classes.most_common())}")
    print(f"session claims: {dict(session)}")
    assert sum(seen.values()) >= EXAMPLES
    # Every step a token or a trust policy can fail at was reached, and so was success.
    wanted = {"parse", "algorithm", "claims", "OIDC provider", "kid", "signature"}
    wanted |= {"times", "audience", "trust policy", "allowed"}
    assert wanted <= set(seen), seen
    for name in ("ExpiredToken", "ImmatureToken", "IssuedInTheFuture", "InvalidClaimType"):
        assert classes[name] > 0, classes
    # ... and so was every way the session claims fail, and success with them.
    for name in (
        "InvalidSessionTags",
        "InvalidSourceIdentity",
        "SessionTagsTooLarge",
        "SessionPermissionDenied",
    ):
        assert classes[name] > 0, classes
    assert session["allowed with session tags"] > 0, session
    assert session["allowed with a source identity"] > 0, session


def _claims(token: str) -> dict[str, Any]:
    try:
        return dict(jose.parse_compact(token).claims)
    except jose.JoseError:
        return {}
