"""The token decoder: a good token verifies; each kind of tampering fails at its step."""

from __future__ import annotations

from pathlib import Path

import pytest

from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.ids import Ids
from irsa_lab.kube.tokens import IssuedToken, TokenIssuer
from irsa_lab.pki import SigningKey
from irsa_lab.ui.decoder import STEPS, TokenDecoder, explain_claims, tamper, verify_token

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
AUD = "sts.amazonaws.com"


DEMO_PEM = Path(__file__).resolve().parents[1] / "irsa_lab" / "data" / "keys" / "demo-sa-signer.pem"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    # The demo key by path: SigningKey.demo() goes through importlib.resources, which
    # fails when the package resolves through the editable-install finder.
    return SigningKey.from_pem(DEMO_PEM.read_bytes())


@pytest.fixture(scope="module")
def issued(key: SigningKey) -> IssuedToken:
    issuer = TokenIssuer(ISSUER, key, clock=ManualClock(LAB_EPOCH), ids=Ids(7))
    return issuer.issue(
        namespace="default",
        service_account=("s3-readonly-sa", "sa-uid"),
        audiences=[AUD],
        expiration_seconds=86400,
        pod=("mypod", "pod-uid"),
    )


@pytest.fixture(scope="module")
def jwks(key: SigningKey) -> dict[str, list[dict[str, str]]]:
    return {"keys": [key.public_jwk()]}


def check(token: str, jwks: dict[str, list[dict[str, str]]], now: float = LAB_EPOCH + 60):
    return verify_token(token, jwks, issuer=ISSUER, audience=AUD, now=now)


def test_a_token_from_the_issuer_passes_every_step(issued: IssuedToken, jwks) -> None:
    v = check(issued.token, jwks)
    assert v.ok and v.error is None and v.failed_step is None
    assert [s for s, _ok, _msg in v.step_results] == list(STEPS)
    assert all(ok for _s, ok, _m in v.step_results)


def test_a_changed_claim_with_the_old_signature_fails_at_the_signature(issued, jwks) -> None:
    forged = tamper(issued.token, "sub", "system:serviceaccount:kube-system:admin")
    v = check(forged, jwks)
    assert not v.ok and v.failed_step == "signature"
    assert "signature does not match the payload" in (v.error or "")
    assert v.claims["sub"] == "system:serviceaccount:kube-system:admin"
    # the signature segment itself was kept
    assert forged.rsplit(".", 1)[1] == issued.token.rsplit(".", 1)[1]


def test_an_unknown_kid_fails_before_the_signature(issued, jwks) -> None:
    v = check(tamper(issued.token, "kid", "rotated-away", part="header"), jwks)
    assert v.failed_step == "kid in JWKS"
    assert "rotated-away is not in the JWKS" in (v.error or "")


def test_garbage_fails_at_parse(jwks) -> None:
    assert check("not.a-jwt", jwks).failed_step == "parse"
    assert check("a.b.c", jwks).failed_step == "parse"


def test_alg_none_is_refused(issued, jwks) -> None:
    v = check(tamper(issued.token, "alg", "none", part="header"), jwks)
    assert v.failed_step == "parse" and "'none' is not accepted" in (v.error or "")


@pytest.mark.parametrize(
    ("claim", "value", "step"),
    [
        ("iss", "https://oidc.eks.eu-west-1.amazonaws.com/id/OTHER", "iss"),
        ("aud", ["sts.amazon.com"], "aud"),
        ("exp", int(LAB_EPOCH) - 1, "exp/nbf"),
        ("nbf", int(LAB_EPOCH) + 3600, "exp/nbf"),
    ],
)
def test_re_signed_tokens_fail_at_the_claim_check(issued, jwks, key, claim, value, step) -> None:
    v = check(tamper(issued.token, claim, value, resign_with=key), jwks)
    assert v.failed_step == step
    assert [s for s, ok, _m in v.step_results if ok] == list(STEPS[: STEPS.index(step)])


def test_an_expired_token_is_reported_relative_to_the_lab_clock(issued, jwks) -> None:
    v = check(issued.token, jwks, now=LAB_EPOCH + 86400 + 3600)
    assert v.failed_step == "exp/nbf"
    assert v.error == "exp/nbf: token expired at 2024-03-28 14:00:00 UTC (1 h ago)"


def test_claims_are_explained_with_their_trust_policy_keys(issued) -> None:
    rows = {r.name: r for r in explain_claims(issued.claims, now=LAB_EPOCH)}
    host = ISSUER.removeprefix("https://")
    assert rows["sub"].iam == f"trust-policy condition key {host}:sub"
    assert f"{host}:aud" in rows["aud"].iam and "client IDs" in rows["aud"].iam
    assert "OIDC provider" in rows["iss"].iam and repr(host) in rows["iss"].iam
    assert rows["exp"].value == f"{int(LAB_EPOCH) + 86400} = 2024-03-28 14:00:00 UTC (in 24 h)"
    assert rows["iat"].value.endswith("(now)")
    assert "ignores custom claims" in rows["kubernetes.io"].iam


def test_the_widget_follows_its_textarea_and_the_tamper_button(issued, jwks, key) -> None:
    w = TokenDecoder(
        issued.token,
        jwks=jwks,
        now=ManualClock(LAB_EPOCH),
        issuer=ISSUER,
        audience=AUD,
        signing_key=key,
    )
    assert w.state()["ok"] is True
    assert "system:serviceaccount:default:s3-readonly-sa" in w.claims_html.value

    w.claim_input.value = "sub"
    w.value_input.value = '"system:serviceaccount:kube-system:admin"'
    w.tamper_button.click()
    state = w.state()
    assert state["ok"] is False and state["failed_step"] == "signature"
    assert state["claims"]["sub"] == "system:serviceaccount:kube-system:admin"
    assert "- FAILED" in w.verify_html.value and "~ not reached" in w.verify_html.value

    w.reset_button.click()
    assert w.state()["ok"] is True

    w.claim_input.value = "aud"
    w.value_input.value = '["someone-else"]'
    w.resign_box.value = True
    w.apply_tamper()
    assert w.state()["failed_step"] == "aud"

    w.token = "garbage"
    assert w.state()["failed_step"] == "parse"
    assert w.header == {}
