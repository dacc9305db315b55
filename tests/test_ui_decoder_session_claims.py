"""The token decoder checks AWS's session claims as STS does, and explains them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from irsa_lab.aws.sts import errors as E
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.ids import Ids
from irsa_lab.kube.tokens import TokenIssuer
from irsa_lab.pki import SigningKey
from irsa_lab.ui.decoder import explain_claims, tamper, verify_token

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
AUD = "sts.amazonaws.com"
TAGS = "https://aws.amazon.com/tags"
SOURCE_IDENTITY = "https://aws.amazon.com/source_identity"
DEMO_PEM = Path(__file__).resolve().parents[1] / "irsa_lab" / "data" / "keys" / "demo-sa-signer.pem"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.from_pem(DEMO_PEM.read_bytes())


@pytest.fixture(scope="module")
def token(key: SigningKey) -> str:
    issuer = TokenIssuer(ISSUER, key, clock=ManualClock(LAB_EPOCH), ids=Ids(7))
    return issuer.issue(
        namespace="default",
        service_account=("s3-readonly-sa", "sa-uid"),
        audiences=[AUD],
        expiration_seconds=86400,
        pod=("mypod", "pod-uid"),
    ).token


def check(token: str, key: SigningKey) -> Any:
    return verify_token(
        token, {"keys": [key.public_jwk()]}, issuer=ISSUER, audience=AUD, now=LAB_EPOCH + 60
    )


@pytest.mark.parametrize(
    ("claim", "value", "failure", "answer"),
    [
        (
            TAGS,
            {"principal_tags": {"aws:Project": ["a"]}},
            E.InvalidSessionTags,
            ("ValidationError", "Unable to validate tags"),
        ),
        (
            TAGS,
            {"principal_tags": {f"T{i}": ["a" * 250] for i in range(1, 10)}},
            E.SessionTagsTooLarge,
            (
                "PackedPolicyTooLarge",
                "Packed size of session tags consumes 498% of allotted space.",
            ),
        ),
        (
            SOURCE_IDENTITY,
            "a",
            E.InvalidSourceIdentity,
            (
                "ValidationError",
                "1 validation error detected: Value 'a' at 'sourceIdentity' failed to satisfy "
                "constraint: Member must have length greater than or equal to 2",
            ),
        ),
    ],
)
def test_a_session_claim_breaking_awss_rules_fails_at_the_claims_step(
    token, key, claim, value, failure, answer
) -> None:
    v = check(tamper(token, claim, value, resign_with=key), key)
    assert not v.ok and v.failed_step == "claims"
    assert type(v.failure) is failure
    assert v.failure is not None and (v.failure.code, v.failure.message) == answer


def test_good_session_claims_pass_and_are_named_in_the_claims_step(token, key) -> None:
    signed = tamper(token, TAGS, {"principal_tags": {"Project": ["Automation"]}}, resign_with=key)
    signed = tamper(signed, SOURCE_IDENTITY, "Admin", resign_with=key)
    v = check(signed, key)
    assert v.ok
    note = dict((s, m) for s, _ok, m in v.step_results)["claims"]
    assert "1 session tag (Project)" in note and "source identity 'Admin'" in note


def test_the_session_claims_are_explained_with_what_iam_needs(token, key) -> None:
    signed = tamper(token, TAGS, {"principal_tags": {"Project": ["a"]}}, resign_with=key)
    signed = tamper(signed, SOURCE_IDENTITY, "Admin", resign_with=key)
    rows = {r.name: r for r in explain_claims(check(signed, key).claims)}
    assert "sts:TagSession" in rows[TAGS].iam and "aws:PrincipalTag" in rows[TAGS].iam
    assert "sts:SetSourceIdentity" in rows[SOURCE_IDENTITY].iam
