"""The token decoder: a good token verifies; each kind of tampering fails at its step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from widget_fit import assert_layouts_fit, assert_tables_fit

from irsa_lab.aws.sts import errors as E
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.ids import Ids
from irsa_lab.kube.tokens import IssuedToken, TokenIssuer
from irsa_lab.pki import SigningKey
from irsa_lab.ui.decoder import STEPS, TokenDecoder, explain_claims, tamper, verify_token

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
AUD = "sts.amazonaws.com"
# AWS's session claims (docs/reference/sts.md §2.2, step 11).
TAGS = "https://aws.amazon.com/tags"
SOURCE_IDENTITY = "https://aws.amazon.com/source_identity"


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
    assert isinstance(v.failure, E.InvalidSignature)
    assert "signature does not match the header and payload" in (v.error or "")
    assert v.claims["sub"] == "system:serviceaccount:kube-system:admin"
    # the signature segment itself was kept
    assert forged.rsplit(".", 1)[1] == issued.token.rsplit(".", 1)[1]


def test_an_unknown_kid_fails_before_the_signature(issued, jwks) -> None:
    v = check(tamper(issued.token, "kid", "rotated-away", part="header"), jwks)
    assert v.failed_step == "kid" and isinstance(v.failure, E.KeyNotFound)
    assert "rotated-away is not in the JWKS" in (v.error or "")


def test_garbage_fails_at_parse(jwks) -> None:
    for text in ("not.a-jwt", "a.b.c"):
        v = check(text, jwks)
        assert v.failed_step == "parse" and isinstance(v.failure, E.MalformedToken)


def test_alg_none_is_refused(issued, jwks) -> None:
    v = check(tamper(issued.token, "alg", "none", part="header"), jwks)
    assert v.failed_step == "algorithm" and isinstance(v.failure, E.UnsupportedAlgorithm)
    assert "alg 'none' is not one STS accepts" in (v.error or "")
    assert v.failure.message == "Unsupported token signing algorithm: none"


@pytest.mark.parametrize(
    ("claim", "value", "step", "failure"),
    [
        ("sub", None, "claims", E.MissingRequiredClaim),
        ("exp", int(LAB_EPOCH) + 3600.5, "claims", E.InvalidClaimType),
        (
            "iss",
            "https://oidc.eks.eu-west-1.amazonaws.com/id/OTHER",
            "OIDC provider",
            E.NoOpenIDConnectProvider,
        ),
        ("aud", ["sts.amazon.com"], "audience", E.InvalidAudience),
        ("aud", [AUD, "other"], "audience", E.InvalidAudience),
        ("exp", int(LAB_EPOCH) + 60, "times", E.ExpiredToken),
        ("nbf", int(LAB_EPOCH) + 61, "times", E.ImmatureToken),
        ("iat", int(LAB_EPOCH) + 61, "times", E.IssuedInTheFuture),
    ],
)
def test_re_signed_tokens_fail_at_the_claim_check(
    issued, jwks, key, claim, value, step, failure
) -> None:
    if value is None:
        v = check(tamper(issued.token, claim, resign_with=key), jwks)
    else:
        v = check(tamper(issued.token, claim, value, resign_with=key), jwks)
    assert v.failed_step == step and type(v.failure) is failure
    assert [s for s, ok, _m in v.step_results if ok] == list(STEPS[: STEPS.index(step)])


def test_several_audiences_are_matched_on_azp_as_sts_does(issued, jwks, key) -> None:
    token = tamper(issued.token, "aud", [AUD, "other"], resign_with=key)
    assert check(tamper(token, "azp", AUD, resign_with=key), jwks).ok
    v = check(tamper(token, "azp", "other", resign_with=key), jwks)
    assert isinstance(v.failure, E.InvalidAudience)


def test_no_leeway_one_second_before_exp_passes_and_at_exp_fails(issued, jwks) -> None:
    exp = int(issued.claims["exp"])
    assert check(issued.token, jwks, now=exp - 1).ok
    v = check(issued.token, jwks, now=exp)
    assert v.failed_step == "times" and isinstance(v.failure, E.ExpiredToken)
    assert v.failure.message == (
        f"Token expired: current date/time {exp} must be before the expiration date/time {exp}"
    )


def test_an_expired_token_is_reported_relative_to_the_lab_clock(issued, jwks) -> None:
    v = check(issued.token, jwks, now=LAB_EPOCH + 86400 + 3600)
    assert v.failed_step == "times"
    assert v.error == (
        "times: the token expired at 2024-03-28T14:00:00Z, 3600 s ago (STS allows no leeway)"
    )
    assert v.text().endswith(
        "=> token rejected at step 'times': STS answers ExpiredTokenException (400): Token "
        f"expired: current date/time {int(LAB_EPOCH) + 90000} must be before the expiration "
        f"date/time {int(LAB_EPOCH) + 86400}"
    )


def test_a_jwks_without_usable_keys_is_an_idp_communication_error(issued) -> None:
    v = check(issued.token, {"keys": []})
    assert v.failed_step == "JWKS" and isinstance(v.failure, E.IDPCommunicationError)


def test_without_expectations_the_tokens_own_issuer_and_audience_pass(issued, jwks) -> None:
    assert verify_token(issued.token, jwks, now=LAB_EPOCH + 60).ok


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
    assert w.state()["failed_step"] == "audience"
    assert w.state()["sts_answer"] == ("InvalidIdentityToken", "Incorrect token audience")

    w.token = "garbage"
    assert w.state()["failed_step"] == "parse"
    assert w.header == {}


# --- AWS's session claims ---------------------------------------------------------


def _check_session(token: str, key: SigningKey) -> Any:
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
    issued, key, claim, value, failure, answer
) -> None:
    v = _check_session(tamper(issued.token, claim, value, resign_with=key), key)
    assert not v.ok and v.failed_step == "claims"
    assert type(v.failure) is failure
    assert v.failure is not None and (v.failure.code, v.failure.message) == answer


def test_good_session_claims_pass_and_are_named_in_the_claims_step(issued, key) -> None:
    signed = tamper(
        issued.token, TAGS, {"principal_tags": {"Project": ["Automation"]}}, resign_with=key
    )
    signed = tamper(signed, SOURCE_IDENTITY, "Admin", resign_with=key)
    v = _check_session(signed, key)
    assert v.ok
    note = dict((s, m) for s, _ok, m in v.step_results)["claims"]
    assert "1 session tag (Project)" in note and "source identity 'Admin'" in note


def test_the_session_claims_are_explained_with_what_iam_needs(issued, key) -> None:
    signed = tamper(issued.token, TAGS, {"principal_tags": {"Project": ["a"]}}, resign_with=key)
    signed = tamper(signed, SOURCE_IDENTITY, "Admin", resign_with=key)
    rows = {r.name: r for r in explain_claims(_check_session(signed, key).claims)}
    assert "sts:TagSession" in rows[TAGS].iam and "aws:PrincipalTag" in rows[TAGS].iam
    assert "sts:SetSourceIdentity" in rows[SOURCE_IDENTITY].iam


# --- the kubernetes.io claim, fitting the cell, the static fallback ----------------


def test_the_kubernetes_io_meaning_names_only_what_the_claim_holds(key: SigningKey) -> None:
    issuer = TokenIssuer(ISSUER, key, clock=ManualClock(LAB_EPOCH), ids=Ids(7))

    def issue(node: tuple[str, str] | None) -> IssuedToken:
        return issuer.issue(
            namespace="default",
            service_account=("s3-readonly-sa", "sa-uid"),
            audiences=[AUD],
            expiration_seconds=86400,
            pod=("mypod", "pod-uid"),
            node=node,
        )

    without, with_node = issue(None), issue(("node-1", "node-uid"))
    meaning = {r.name: r for r in explain_claims(without.claims)}["kubernetes.io"].meaning
    assert meaning == (
        "what the token is bound to: namespace, pod (name, uid), service account (name, uid)"
    )
    assert "node" not in meaning
    meaning = {r.name: r for r in explain_claims(with_node.claims)}["kubernetes.io"].meaning
    assert meaning.endswith("service account (name, uid), node (name, uid)")
    bare = {"kubernetes.io": {"namespace": "dev", "serviceaccount": {"name": "sa"}}}
    assert explain_claims(bare)[0].meaning == (
        "what the token is bound to: namespace, service account (name)"
    )


def test_the_re_sign_box_says_why_it_is_disabled_and_what_enables_it(issued, jwks, key) -> None:
    without = TokenDecoder(issued.token, jwks=jwks, now=LAB_EPOCH)
    assert without.resign_box.disabled
    assert "without the lab's signing key" in without.resign_box.tooltip
    assert "signing_key=" in without.resign_box.tooltip
    with_key = TokenDecoder(issued.token, jwks=jwks, now=LAB_EPOCH, signing_key=key)
    assert not with_key.resign_box.disabled
    assert with_key.resign_box.tooltip.startswith("sign the edited token")


def test_every_decoder_table_fits_the_cell_and_no_layout_is_wider(issued, jwks, key) -> None:
    w = TokenDecoder(issued.token, jwks=jwks, now=LAB_EPOCH, signing_key=key)
    (claims,) = assert_tables_fit(w.claims_html.value)
    assert len(claims.cols) == 4 and "where IAM/STS uses it" in w.claims_html.value
    assert_tables_fit(w.header_html.value)
    assert_tables_fit(w.verify_html.value)
    assert_layouts_fit(w)


def test_the_stored_output_summarises_header_claims_expiry_and_verdict(issued, jwks) -> None:
    w = TokenDecoder(issued.token, jwks=jwks, now=LAB_EPOCH, issuer=ISSUER, audience=AUD)
    bundle = w._repr_mimebundle_()
    assert bundle["text/plain"].splitlines() == [
        "Token decoder. Interactive widget: run this cell to use it.",
        f"header: alg RS256, kid {issued.header['kid']}",
        f"iss: {ISSUER}",
        "sub: system:serviceaccount:default:s3-readonly-sa",
        f"aud: {AUD}",
        "exp: 2024-03-28 14:00:00 UTC",
        "verification: token accepted",
    ]
    assert "TokenDecoder(" not in bundle["text/plain"] + bundle["text/html"]
    w.token = tamper(issued.token, "sub", "system:serviceaccount:kube-system:admin")
    assert w.static_lines()[-1] == (
        "verification: token rejected at step 'signature': STS answers InvalidIdentityToken "
        f"(400): {w.state()['sts_answer'][1]}"
    )
    w.token = "garbage"
    assert w.static_lines()[0] == "no readable token"
