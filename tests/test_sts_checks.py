"""Every misconfiguration of docs/reference/sts.md §2.4 and every token attack, through boto3."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from aws_fixtures import (  # noqa: F401 - fixtures
    ISSUER,
    ISSUER_HOST_PATH,
    ROGUE_ISSUER,
    StsLab,
    sts_lab,
    sts_servers,
)
from botocore.exceptions import ClientError
from cryptography.hazmat.primitives import serialization

from irsa_lab.aws.arns import irsa_trust_policy
from irsa_lab.constants import ACCOUNT_ID, ROLE_NAME

DENIED = ("AccessDenied", 403, "Not authorized to perform sts:AssumeRoleWithWebIdentity")
UNREACHABLE = (
    "Couldn't retrieve verification key from your identity provider,  "
    "please reference AssumeRoleWithWebIdentity documentation for requirements"
)


def refused(sts_lab: StsLab, token: str | None = None, **params: Any) -> tuple[str, int, str]:
    sts = sts_lab.sts(retries={"total_max_attempts": 1})
    with pytest.raises(ClientError) as exc:
        sts_lab.assume(token, sts=sts, **params)
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def set_trust(sts_lab: StsLab, document: dict[str, Any]) -> None:
    sts_lab.account.roles[ROLE_NAME].trust_policy = json.dumps(document)


def default_trust(sts_lab: StsLab, **kw: Any) -> dict[str, Any]:
    return irsa_trust_policy(sts_lab.scenario.provider_arn, ISSUER, **kw)


# --- §2.4, row by row ----------------------------------------------------------------
def test_no_oidc_provider_for_the_issuer_is_invalid_identity_token(sts_lab: StsLab):
    sts_lab.account.oidc_providers.pop(sts_lab.scenario.provider_arn)
    assert refused(sts_lab) == (
        "InvalidIdentityToken",
        400,
        f"No OpenIDConnect provider found in your account for {ISSUER}",
    )


@pytest.mark.parametrize(
    "iss", [ISSUER + "/", ISSUER.lower(), ISSUER.replace("eu-west-1", "us-west-2")]
)
def test_an_issuer_that_differs_by_a_slash_case_or_region_has_no_provider(sts_lab: StsLab, iss):
    code, status, message = refused(sts_lab, sts_lab.token(iss=iss))
    assert (code, status, message) == (
        "InvalidIdentityToken",
        400,
        f"No OpenIDConnect provider found in your account for {iss}",
    )


def test_a_token_audience_not_in_the_provider_client_ids_is_incorrect_token_audience(
    sts_lab: StsLab,
):
    assert refused(sts_lab, sts_lab.token(aud=["sts.amazon.com"])) == (
        "InvalidIdentityToken",
        400,
        "Incorrect token audience",
    )
    sts_lab.account.oidc_providers[sts_lab.scenario.provider_arn].client_ids = ["sts.amazon.com"]
    assert refused(sts_lab)[2] == "Incorrect token audience"


def test_an_issuer_with_an_untrusted_certificate_fails_the_thumbprint_check(sts_lab: StsLab):
    assert refused(sts_lab, sts_lab.token(iss=ROGUE_ISSUER)) == (
        "InvalidIdentityToken",
        400,
        "OpenIDConnect provider's HTTPS certificate doesn't match configured thumbprint",
    )


@pytest.mark.parametrize("status", [404, 500])
def test_unreachable_discovery_is_idp_communication_error(sts_lab: StsLab, status):
    sts_lab.issuer.status = status
    assert refused(sts_lab) == ("IDPCommunicationError", 400, UNREACHABLE)


def test_an_issuer_mapped_nowhere_is_refused_without_any_network_attempt(sts_lab: StsLab):
    sts_lab.fetcher.resolve.pop("https://oidc.eks.eu-west-1.amazonaws.com")
    try:
        assert refused(sts_lab)[0] == "IDPCommunicationError"
    finally:
        sts_lab.fetcher.resolve["https://oidc.eks.eu-west-1.amazonaws.com"] = sts_lab.issuer_url
    assert sts_lab.issuer.hits == {}


def test_a_discovery_issuer_that_differs_from_the_token_iss_is_refused(sts_lab: StsLab):
    sts_lab.issuer.advertised_issuer = ISSUER + "/"
    assert refused(sts_lab) == ("IDPCommunicationError", 400, UNREACHABLE)


def test_botocore_retries_idp_communication_error_three_times(sts_lab: StsLab):
    sts_lab.issuer.status = 503
    with pytest.raises(ClientError) as exc:
        sts_lab.assume(sts=sts_lab.sts())
    assert exc.value.response["Error"]["Code"] == "IDPCommunicationError"
    received = [e for e in sts_lab.trace.events() if e.call == "AssumeRoleWithWebIdentity"]
    assert len(received) == 3


def test_a_token_signed_by_a_key_missing_from_the_jwks_is_invalid(sts_lab: StsLab):
    other = sts_lab.other_key
    code, status, message = refused(sts_lab, sts_lab.token(key=other))
    assert (code, status) == ("InvalidIdentityToken", 400)
    assert "kid" in message


def test_an_expired_token_is_expired_token_exception_with_both_times(sts_lab: StsLab):
    now = int(sts_lab.now)
    token = sts_lab.token(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    assert refused(sts_lab, token) == (
        "ExpiredTokenException",
        400,
        f"Token expired: current date/time {now} must be before the expiration date/time {now - 3600}",
    )


# No leeway: real STS refused a token 198 s past exp (awslabs/aws-orbit-workbench#707).
@pytest.mark.parametrize("past_by", [1, 198, 290])
def test_a_token_past_exp_by_any_seconds_is_expired_with_aws_message(sts_lab: StsLab, past_by):
    now = int(sts_lab.now)
    token = sts_lab.token(iat=now - 3600, nbf=now - 3600, exp=now - past_by)
    assert refused(sts_lab, token) == (
        "ExpiredTokenException",
        400,
        f"Token expired: current date/time {now} must be before the expiration date/time "
        f"{now - past_by}",
    )


def test_a_token_at_exactly_exp_is_expired(sts_lab: StsLab):
    now = int(sts_lab.now)
    assert refused(sts_lab, sts_lab.token(iat=now - 60, nbf=now - 60, exp=now))[0] == (
        "ExpiredTokenException"
    )


def test_a_token_one_second_before_exp_is_accepted(sts_lab: StsLab):
    now = int(sts_lab.now)
    out = sts_lab.assume(sts_lab.token(iat=now - 3600, nbf=now - 3600, exp=now + 1))
    assert out["Credentials"]["AccessKeyId"].startswith("ASIA")


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_nbf_or_iat_in_the_future_by_any_seconds_is_refused(sts_lab: StsLab, claim):
    now = int(sts_lab.now)
    for ahead in (1, 200):
        code, _, message = refused(sts_lab, sts_lab.token(**{claim: now + ahead}))
        assert code == "InvalidIdentityToken" and f"date/time {now + ahead}" in message


@pytest.mark.parametrize(
    ("namespace", "service_account"), [("kube-system", "s3-readonly-sa"), ("default", "other-sa")]
)
def test_a_wrong_namespace_or_service_account_in_sub_is_access_denied(
    sts_lab: StsLab, namespace, service_account
):
    token = sts_lab.token(sub=f"system:serviceaccount:{namespace}:{service_account}")
    sts = sts_lab.sts(retries={"total_max_attempts": 1})
    with pytest.raises(ClientError) as exc:
        sts_lab.assume(token, sts=sts)
    r = exc.value.response
    assert (
        r["Error"]["Code"],
        r["ResponseMetadata"]["HTTPStatusCode"],
        r["Error"]["Message"],
    ) == DENIED
    failed = [e for e in sts_lab.trace.events() if e.call == "evaluate trust policy"][-1]
    assert failed.outcome == "AccessDenied"
    assert failed.detail["failed_conditions"][0]["key"] == f"{ISSUER_HOST_PATH}:sub"


def test_the_access_denied_error_carries_the_failed_condition_for_the_learner(sts_lab: StsLab):
    import asyncio

    from irsa_lab.aws.errors import AwsError
    from irsa_lab.aws.sts import assume_role_with_web_identity
    from irsa_lab.constants import ROLE_ARN

    keys = {sts_lab.issuer.key.kid: sts_lab.issuer.key.private_key.public_key()}
    params = {
        "RoleArn": ROLE_ARN,
        "RoleSessionName": "s3access-sa",
        "WebIdentityToken": sts_lab.token(sub="system:serviceaccount:default:other"),
    }
    with pytest.raises(AwsError) as exc:
        asyncio.run(
            assume_role_with_web_identity(
                sts_lab.account,
                params,
                clock=sts_lab.clock,
                wall_clock=sts_lab.clock,
                keys_for_issuer=lambda iss, kid: keys,
                trace=sts_lab.trace,
            )
        )
    err = exc.value
    assert err.code == "AccessDenied"
    assert "system:serviceaccount:default:other" in err.explanation
    cond = err.detail["failed_conditions"][0]
    assert cond["expected"] == ["system:serviceaccount:default:s3-readonly-sa"]
    assert cond["actual"] == ["system:serviceaccount:default:other"]


@pytest.mark.parametrize(
    "change",
    [
        "aud condition value",
        "wildcard under StringEquals",
        "condition on an unsupported claim",
        "wrong Federated provider",
        "wrong action",
    ],
)
def test_trust_policy_mistakes_are_access_denied(sts_lab: StsLab, change):
    doc = default_trust(sts_lab)
    stmt = doc["Statement"][0]
    cond = stmt["Condition"]["StringEquals"]
    if change == "aud condition value":
        cond[f"{ISSUER_HOST_PATH}:aud"] = "sts.amazon.com"
    elif change == "wildcard under StringEquals":
        cond[f"{ISSUER_HOST_PATH}:sub"] = "system:serviceaccount:default:*"
    elif change == "condition on an unsupported claim":
        cond[f"{ISSUER_HOST_PATH}:kubernetes.io/namespace"] = "default"
    elif change == "wrong Federated provider":
        stmt["Principal"]["Federated"] = stmt["Principal"]["Federated"].replace(
            "eu-west-1", "us-east-1"
        )
    else:
        stmt["Action"] = "sts:AssumeRole"
    set_trust(sts_lab, doc)
    assert refused(sts_lab) == DENIED


def test_string_like_with_a_namespace_wildcard_is_allowed(sts_lab: StsLab):
    doc = default_trust(sts_lab)
    cond = doc["Statement"][0]["Condition"]
    sub = cond["StringEquals"].pop(f"{ISSUER_HOST_PATH}:sub")
    cond["StringLike"] = {f"{ISSUER_HOST_PATH}:sub": sub.rsplit(":", 1)[0] + ":*"}
    set_trust(sts_lab, doc)
    assert sts_lab.assume()["Credentials"]["AccessKeyId"].startswith("ASIA")


def test_a_role_that_does_not_exist_is_access_denied(sts_lab: StsLab):
    arn = f"arn:aws:iam::{ACCOUNT_ID}:role/NoSuchRole"
    assert refused(sts_lab, RoleArn=arn) == DENIED


def test_a_role_arn_that_is_not_an_arn_is_request_arn_is_invalid(sts_lab: StsLab):
    assert refused(sts_lab, RoleArn="AmazonEKSPodS3ReadOnlyAccessRole") == (
        "ValidationError",
        400,
        "Request ARN is invalid",
    )


@pytest.mark.parametrize(
    ("session", "message"),
    [
        (
            "a b",
            "1 validation error detected: Value 'a b' at 'roleSessionName' failed to satisfy "
            r"constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*",
        ),
        (
            "ns/pod",
            "1 validation error detected: Value 'ns/pod' at 'roleSessionName' failed to satisfy "
            r"constraint: Member must satisfy regular expression pattern: [\w+=,.@-]*",
        ),
        (
            "x" * 65,
            f"1 validation error detected: Value '{'x' * 65}' at 'roleSessionName' failed to "
            "satisfy constraint: Member must have length less than or equal to 64",
        ),
    ],
)
def test_a_bad_role_session_name_is_a_validation_error(sts_lab: StsLab, session, message):
    assert refused(sts_lab, RoleSessionName=session) == ("ValidationError", 400, message)


def test_several_broken_constraints_are_listed_together(sts_lab: StsLab):
    code, _, message = refused(sts_lab, RoleSessionName="a b" + "x" * 64, DurationSeconds=99999)
    assert code == "ValidationError"
    assert message.startswith("3 validation errors detected: ")
    assert message.count("; ") == 2
    assert (
        "Value '99999' at 'durationSeconds' failed to satisfy constraint: Member must have "
        "value less than or equal to 43200" in message
    )


def test_duration_seconds_above_the_role_maximum_is_a_validation_error(sts_lab: StsLab):
    assert refused(sts_lab, DurationSeconds=7200) == (
        "ValidationError",
        400,
        "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
    )


def test_a_session_policy_that_is_not_json_is_malformed_policy_document(sts_lab: StsLab):
    code, status, _ = refused(sts_lab, Policy="{not json")
    assert (code, status) == ("MalformedPolicyDocument", 400)


def test_a_valid_session_policy_reports_its_packed_size(sts_lab: StsLab):
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}],
    }
    out = sts_lab.assume(Policy=json.dumps(policy))
    assert 0 < out["PackedPolicySize"] <= 100


# --- attacks ---------------------------------------------------------------------------
def _tamper_payload(token: str, **changes: Any) -> str:
    header, body, sig = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims.update(changes)
    raw = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{raw}.{sig}"


def _public_pem(sts_lab: StsLab) -> bytes:
    return sts_lab.issuer.key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


ATTACKS = {
    "alg none": lambda lab: lab.issuer.forge(lab.now, "none"),
    "HS256 keyed with the public key": lambda lab: lab.issuer.forge(
        lab.now, "HS256", _public_pem(lab)
    ),
    "unknown kid": lambda lab: lab.token(kid="not-a-kid"),
    "key not in the JWKS": lambda lab: lab.token(key=lab.other_key, kid=lab.issuer.key.kid),
    "tampered payload": lambda lab: _tamper_payload(
        lab.token(), sub="system:serviceaccount:kube-system:admin"
    ),
    "tampered signature": lambda lab: (
        lab.token()[:-6] + ("AAAAAA" if not lab.token().endswith("AAAAAA") else "BBBBBB")
    ),
    "garbage": lambda lab: "garbage-that-is-not-a-jwt",
    "two parts": lambda lab: "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0",
    "wrong issuer": lambda lab: lab.token(iss="https://attacker.example.com/id/ABC"),
    "audience not in provider": lambda lab: lab.token(aud="attacker"),
    "fractional exp": lambda lab: lab.token(exp=lab.now + 3600.5),
    "missing sub": lambda lab: lab.token(sub=None),
    "missing aud": lambda lab: lab.token(aud=None),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_forged_tokens_are_invalid_identity_token(sts_lab: StsLab, attack):
    code, status, message = refused(sts_lab, ATTACKS[attack](sts_lab))
    assert (code, status) == ("InvalidIdentityToken", 400), message
    assert not sts_lab.account.credentials.keys() - {sts_lab.scenario.admin.access_key_id}


def test_missing_claims_are_named_in_the_message(sts_lab: StsLab):
    assert refused(sts_lab, sts_lab.token(sub=None))[2] == "Missing a required claim: sub"
    assert refused(sts_lab, sts_lab.token(aud=None))[2] == "Missing a required claim: aud"


def test_a_token_not_yet_valid_is_refused(sts_lab: StsLab):
    now = int(sts_lab.now)
    code, status, message = refused(sts_lab, sts_lab.token(nbf=now + 3600))
    assert (code, status) == ("InvalidIdentityToken", 400)
    assert str(now + 3600) in message
    assert refused(sts_lab, sts_lab.token(iat=now + 3600))[0] == "InvalidIdentityToken"


def test_an_expired_token_attack_is_expired_token_exception(sts_lab: StsLab):
    now = int(sts_lab.now)
    assert refused(sts_lab, sts_lab.token(exp=now - 1000))[0] == "ExpiredTokenException"


def test_an_oversized_token_is_refused_by_the_service_model(sts_lab: StsLab):
    token = sts_lab.token(padding="x" * 20000)
    assert refused(sts_lab, token) == (
        "ValidationError",
        400,
        "1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: "
        "Member must have length less than or equal to 20000",
    )


def test_the_lab_clock_decides_token_expiry(sts_lab: StsLab):
    token = sts_lab.token()
    sts_lab.clock.advance(86400 - 1)
    sts_lab.assume(token)
    sts_lab.clock.advance(1)
    assert refused(sts_lab, token)[0] == "ExpiredTokenException"


# --- the exception tree -------------------------------------------------------------------
def _all_failures() -> list[type]:
    from irsa_lab.aws.sts import errors

    return [getattr(errors, n) for n in errors.__all__ if isinstance(getattr(errors, n), type)]


def test_every_failure_class_says_when_it_is_raised_and_carries_its_wire_code():
    from irsa_lab.aws.errors import AwsError
    from irsa_lab.aws.sts.errors import StsError

    for cls in _all_failures():
        assert issubclass(cls, StsError) and issubclass(cls, AwsError), cls
        assert (cls.__doc__ or "").startswith("Raised when "), cls
        err = cls(explanation="why, for the learner")
        assert (err.code, err.status) == (cls.wire_code, cls.http_status)
        assert err.explanation == "why, for the learner"


@pytest.mark.parametrize(
    ("code", "message", "name"),
    [
        ("InvalidIdentityToken", "Incorrect token audience", "InvalidAudience"),
        (
            "InvalidIdentityToken",
            f"No OpenIDConnect provider found in your account for {ISSUER}",
            "NoOpenIDConnectProvider",
        ),
        ("InvalidIdentityToken", "Missing a required claim: sub", "MissingRequiredClaim"),
        ("InvalidIdentityToken", "something new", "InvalidIdentityToken"),
        ("ExpiredTokenException", "Token expired: current date/time 2 must be ...", "ExpiredToken"),
        ("AccessDenied", DENIED[2], "AccessDenied"),
        ("ValidationError", "Request ARN is invalid", "InvalidRoleArn"),
        ("IDPCommunicationError", UNREACHABLE, "IDPCommunicationError"),
    ],
)
def test_a_wire_error_is_classified_by_class_not_by_its_callers(code, message, name):
    from irsa_lab.aws.sts.errors import failure_from_wire

    got = failure_from_wire(code, message)
    assert got is not None and got.__name__ == name
    assert failure_from_wire("SignatureDoesNotMatch", "anything") is None


def test_refusals_through_the_wire_come_back_as_the_class_that_raised_them(sts_lab: StsLab):
    from irsa_lab.aws.sts import errors
    from irsa_lab.aws.sts.errors import failure_from_wire

    now = int(sts_lab.now)
    cases = {
        errors.InvalidAudience: sts_lab.token(aud=["sts.amazon.com"]),
        errors.ExpiredToken: sts_lab.token(exp=now - 1),
        errors.ImmatureToken: sts_lab.token(nbf=now + 1),
        errors.KeyNotFound: sts_lab.token(kid="not-a-kid"),
        errors.MissingRequiredClaim: sts_lab.token(sub=None),
        errors.InvalidClaimType: sts_lab.token(exp=now + 3600.5),
        errors.MalformedToken: "garbage-that-is-not-a-jwt",
    }
    for cls, token in cases.items():
        code, _, message = refused(sts_lab, token)
        assert failure_from_wire(code, message) is cls, (cls, message)


def test_the_pipeline_names_the_step_that_refused(sts_lab: StsLab):
    import asyncio

    from irsa_lab.aws.sts import StsError, assume_role_with_web_identity
    from irsa_lab.aws.sts.checks import keys_from_jwks
    from irsa_lab.constants import ROLE_ARN

    now = int(sts_lab.now)
    jwks = {"keys": [sts_lab.issuer.key.public_jwk()]}
    expected = {
        "parse": "a.b.c",
        "algorithm": sts_lab.issuer.forge(sts_lab.now, "none"),
        "claims": sts_lab.token(aud=None),
        "OIDC provider": sts_lab.token(iss="https://example.com/id/X"),
        "kid": sts_lab.token(kid="unknown"),
        "signature": sts_lab.token(key=sts_lab.other_key, kid=sts_lab.issuer.key.kid),
        "times": sts_lab.token(exp=now),
        "audience": sts_lab.token(aud="other"),
        "trust policy": sts_lab.token(sub="system:serviceaccount:default:other"),
    }
    for step, token in expected.items():
        params = {"RoleArn": ROLE_ARN, "RoleSessionName": "steps", "WebIdentityToken": token}
        with pytest.raises(StsError) as exc:
            asyncio.run(
                assume_role_with_web_identity(
                    sts_lab.account,
                    params,
                    clock=sts_lab.clock,
                    wall_clock=sts_lab.clock,
                    keys_for_issuer=keys_from_jwks(jwks),
                    trace=sts_lab.trace,
                )
            )
        assert exc.value.step == step, (step, exc.value)
    failed = [e for e in sts_lab.trace.events() if not e.ok and "step" in e.detail]
    assert [e.detail["step"] for e in failed] == list(expected)
