"""The trust-policy playground: each preset gets STS's code and names the failing check."""

from __future__ import annotations

import json
from typing import Any

import pytest
from widget_fit import assert_layouts_fit, assert_tables_fit

from irsa_lab.constants import ROLE_ARN
from irsa_lab.ui.playground import (
    PRESETS,
    Playground,
    Verdict,
    claims_for,
    judge,
    presets,
    trust_policy_text,
)

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
HOST = ISSUER.removeprefix("https://")
PROVIDERS = {HOST: ["sts.amazonaws.com"]}
DENIED = "Not authorized to perform sts:AssumeRoleWithWebIdentity"

# preset -> (code, message, key of the first failing row)
EXPECTED = {
    "correct": (None, "AssumeRoleWithWebIdentity succeeds", None),
    "wrong namespace": ("AccessDenied", DENIED, f"{HOST}:sub"),
    "ServiceAccount typo": ("AccessDenied", DENIED, f"{HOST}:sub"),
    "wildcard under StringEquals": ("AccessDenied", DENIED, f"{HOST}:sub"),
    "audience mismatch": ("InvalidIdentityToken", "Incorrect token audience", "aud"),
    "missing OIDC provider": (
        "InvalidIdentityToken",
        f"No OpenIDConnect provider found in your account for {ISSUER}",
        "iss",
    ),
    "https:// in the condition key": ("AccessDenied", DENIED, f"{ISSUER}:sub"),
}


def test_every_preset_has_an_expectation() -> None:
    assert set(EXPECTED) == set(PRESETS) == set(presets(ISSUER))


@pytest.mark.parametrize("name", PRESETS)
def test_each_preset_yields_the_sts_code_message_and_failing_row(name: str) -> None:
    code, message, failing_key = EXPECTED[name]
    pg = Playground(ISSUER, providers=PROVIDERS)
    verdict = pg.apply_preset(name)
    assert (pg.error_code, verdict.message) == (code, message)
    assert verdict.allowed is (code is None)
    assert (
        verdict.http_status == {None: 200, "AccessDenied": 403, "InvalidIdentityToken": 400}[code]
    )
    assert presets(ISSUER)[name].expected_code == code
    if failing_key is None:
        assert pg.failed_conditions == []
    else:
        assert pg.failed_conditions[0].key == failing_key
        assert pg.state()["failed_conditions"][0][0] == failing_key


def test_the_failing_rows_carry_the_evaluators_reasons() -> None:
    pg = Playground(ISSUER, providers=PROVIDERS)
    pg.apply_preset("wrong namespace")
    (row,) = pg.failed_conditions
    assert row.actual == ["system:serviceaccount:dev:s3-readonly-sa"]
    assert row.expected == ["system:serviceaccount:default:s3-readonly-sa"]
    assert "namespace differs" in row.note
    pg.apply_preset("wildcard under StringEquals")
    assert "StringLike" in pg.failed_conditions[0].note
    pg.apply_preset("https:// in the condition key")
    assert all(r.actual is None for r in pg.failed_conditions)
    assert "without 'https://'" in pg.failed_conditions[0].note


def test_the_verdict_updates_live_when_the_policy_text_changes() -> None:
    pg = Playground(ISSUER, providers=PROVIDERS)
    assert pg.verdict.allowed
    pg.policy_text = pg.policy_text.replace("StringEquals", "StringLike").replace(
        "s3-readonly-sa", "*"
    )
    assert pg.verdict.allowed  # StringLike honours the wildcard
    pg.policy_text = "{ not json"
    assert pg.error_code == "MalformedPolicyDocument"
    assert pg.verdict.step == "policy syntax"
    assert "MalformedPolicyDocument" in pg.verdict_html.value


def test_the_verdict_updates_live_when_a_claim_field_changes() -> None:
    pg = Playground(ISSUER, providers=PROVIDERS)
    pg.namespace_input.value = "dev"
    assert pg.error_code == "AccessDenied"
    assert "- FAILED" in pg.verdict_html.value and "+ ok" in pg.verdict_html.value
    pg.namespace_input.value = "default"
    assert pg.verdict.allowed
    pg.audience_input.value = "sts.amazon.com"
    assert pg.verdict.message == "Incorrect token audience"
    pg.set_claims(audience="sts.amazonaws.com", issuer=ISSUER + "/")
    assert pg.verdict.message == f"No OpenIDConnect provider found in your account for {ISSUER}/"
    pg.issuer_input.value = ISSUER
    pg.provider_box.value = False
    assert pg.verdict.code == "InvalidIdentityToken"


def test_editing_after_a_preset_marks_the_situation_custom() -> None:
    pg = Playground(ISSUER, providers=PROVIDERS)
    pg.preset_input.value = "ServiceAccount typo"
    assert pg.error_code == "AccessDenied"
    pg.service_account_input.value = "s3readonly-sa"  # make the token match the typo
    assert pg.preset_input.value == "(custom)"
    assert pg.verdict.allowed


def test_judge_follows_the_sts_order_provider_before_audience_before_policy() -> None:
    bad_everything = claims_for(ISSUER + "x", "dev", "other", "nope")
    assert judge("{}", bad_everything, providers=PROVIDERS).code == "MalformedPolicyDocument"
    good_policy = trust_policy_text(ISSUER)
    assert judge(good_policy, bad_everything, providers=PROVIDERS).message.startswith(
        "No OpenIDConnect provider"
    )
    wrong_aud = claims_for(ISSUER, "dev", "other", "nope")
    assert judge(good_policy, wrong_aud, providers=PROVIDERS).message == "Incorrect token audience"
    v = judge(
        good_policy, claims_for(ISSUER, "dev", "other", "sts.amazonaws.com"), providers=PROVIDERS
    )
    assert v.code == "AccessDenied" and v.http_status == 403


def test_a_wrong_provider_arn_in_the_principal_is_a_failed_row() -> None:
    doc = json.loads(trust_policy_text(ISSUER))
    doc["Statement"][0]["Principal"]["Federated"] = (
        "arn:aws:iam::210987654321:oidc-provider/" + HOST
    )
    v = judge(
        json.dumps(doc),
        claims_for(ISSUER, "default", "s3-readonly-sa", "sts.amazonaws.com"),
        providers=PROVIDERS,
        role_arn=ROLE_ARN,
    )
    assert v.code == "AccessDenied"
    assert [r.key for r in v.failed_conditions] == ["Principal"]


def test_try_for_real_shows_both_verdicts() -> None:
    seen: list[dict[str, Any]] = []

    def fake_real(claims: dict[str, Any]) -> Verdict:
        seen.append(claims)
        return Verdict(False, "AccessDenied", DENIED, 403, [], "from the stand-in", source="STS")

    pg = Playground(ISSUER, providers=PROVIDERS, try_for_real=fake_real)
    assert not pg.real_button.disabled
    pg.real_button.click()
    assert seen == [pg.claims]
    assert pg.state()["real"] == {"allowed": False, "error_code": "AccessDenied"}
    assert "answered differently" in pg.real_html.value
    assert Playground(ISSUER).real_button.disabled


def test_a_playground_on_the_seeded_account_allows_the_article_set_up() -> None:
    from irsa_lab.aws.model import Account
    from irsa_lab.aws.scenario import seed_default
    from irsa_lab.constants import ROLE_NAME
    from irsa_lab.ids import Ids

    account = Account(ids=Ids(3))
    seed_default(account, issuer=ISSUER)
    pg = Playground.from_account(account, issuer=ISSUER, role_name=ROLE_NAME)
    assert pg.verdict.allowed, pg.verdict.text()
    pg.apply_preset("missing OIDC provider")
    assert pg.error_code == "InvalidIdentityToken"


def test_a_refusal_carries_the_sts_exception_class_and_its_step() -> None:
    from irsa_lab.aws.sts import errors as E

    pg = Playground(ISSUER, providers=PROVIDERS)
    expected = {
        "audience mismatch": (E.InvalidAudience, "audience"),
        "missing OIDC provider": (E.NoOpenIDConnectProvider, "OIDC provider"),
        "wrong namespace": (E.TrustPolicyDenied, "trust policy"),
    }
    for name, (cls, step) in expected.items():
        v = pg.apply_preset(name)
        assert type(v.failure) is cls and v.step == step, name
    assert pg.apply_preset("correct").failure is None


def test_judging_a_signed_token_runs_every_sts_step_with_no_leeway() -> None:
    from irsa_lab.aws.sts import errors as E
    from irsa_lab.clock import LAB_EPOCH, ManualClock
    from irsa_lab.ids import Ids
    from irsa_lab.kube.tokens import TokenIssuer
    from irsa_lab.pki import SigningKey

    key = SigningKey.generate()
    issued = TokenIssuer(ISSUER, key, clock=ManualClock(LAB_EPOCH), ids=Ids(7)).issue(
        namespace="default",
        service_account=("s3-readonly-sa", "uid"),
        audiences=["sts.amazonaws.com"],
        expiration_seconds=3600,
    )
    jwks = {"keys": [key.public_jwk()]}
    policy = trust_policy_text(ISSUER)

    def at(now: float) -> Verdict:
        return judge(policy, providers=PROVIDERS, token=issued.token, jwks=jwks, now=now)

    assert at(LAB_EPOCH + 3599).allowed
    late = at(LAB_EPOCH + 3600)
    assert (late.code, late.step, type(late.failure)) == (
        "ExpiredTokenException",
        "times",
        E.ExpiredToken,
    )
    forged = issued.token[:-4] + ("AAAA" if not issued.token.endswith("AAAA") else "BBBB")
    bad = judge(policy, providers=PROVIDERS, token=forged, jwks=jwks, now=LAB_EPOCH)
    assert bad.step == "signature" and isinstance(bad.failure, E.InvalidSignature)
    assert bad.failed_conditions[0].key == "signature"


# --- session tags and source identity (IAM User Guide, "Passing session tags using
# AssumeRoleWithWebIdentity", "Monitor and control actions taken with assumed roles") ---
def _with_actions(*actions: str) -> str:
    document = json.loads(trust_policy_text(ISSUER))
    document["Statement"][0]["Action"] = list(actions)
    return json.dumps(document)


def test_tags_in_the_claims_need_tag_session_and_the_verdict_names_that_action() -> None:
    claims = {
        **claims_for(ISSUER, "default", "s3-readonly-sa", "sts.amazonaws.com"),
        "https://aws.amazon.com/tags": {"principal_tags": {"Project": ["Automation"]}},
    }
    v = judge(trust_policy_text(ISSUER), claims, providers=PROVIDERS)
    assert (v.code, v.message, v.step) == ("AccessDenied", DENIED, "trust policy")
    action = next(r for r in v.failed_conditions if r.key == "Action")
    assert action.actual == ["sts:TagSession"]
    assert "sts:TagSession" in v.explanation
    policy = _with_actions("sts:AssumeRoleWithWebIdentity", "sts:TagSession")
    assert judge(policy, claims, providers=PROVIDERS).allowed


def test_a_source_identity_condition_is_judged_on_the_claim() -> None:
    document = json.loads(_with_actions("sts:AssumeRoleWithWebIdentity", "sts:SetSourceIdentity"))
    document["Statement"][0]["Condition"]["StringEquals"]["sts:SourceIdentity"] = "Admin"
    policy = json.dumps(document)
    base = claims_for(ISSUER, "default", "s3-readonly-sa", "sts.amazonaws.com")
    key = "https://aws.amazon.com/source_identity"
    assert judge(policy, {**base, key: "Admin"}, providers=PROVIDERS).allowed
    v = judge(policy, {**base, key: "Mallory"}, providers=PROVIDERS)
    assert not v.allowed
    assert [r.key for r in v.failed_conditions] == ["sts:SourceIdentity"]


def test_a_role_session_name_condition_is_judged_on_the_session_name() -> None:
    document = json.loads(trust_policy_text(ISSUER))
    document["Statement"][0]["Condition"]["StringEquals"]["sts:RoleSessionName"] = "ci"
    policy = json.dumps(document)
    claims = claims_for(ISSUER, "default", "s3-readonly-sa", "sts.amazonaws.com")
    assert judge(policy, claims, providers=PROVIDERS, session_name="ci").allowed
    assert not judge(policy, claims, providers=PROVIDERS, session_name="other").allowed


def test_the_widget_judges_extra_session_claims_and_shows_them_in_its_state() -> None:
    tags = {"https://aws.amazon.com/tags": {"principal_tags": {"Project": ["Automation"]}}}
    pg = Playground(ISSUER, providers=PROVIDERS, extra_claims=tags, session_name="ci")
    assert pg.error_code == "AccessDenied"
    assert (
        pg.state()["claims"]["https://aws.amazon.com/tags"] == tags["https://aws.amazon.com/tags"]
    )
    pg.policy_text = _with_actions("sts:AssumeRoleWithWebIdentity", "sts:TagSession")
    assert pg.verdict.allowed
    assert pg.set_extra_claims({"https://aws.amazon.com/source_identity": "Admin"}).code == (
        "AccessDenied"
    )
    assert pg.set_extra_claims({}).allowed


# --- fits the cell, side by side, static fallback -----------------------------------


def test_the_checks_table_fits_the_cell_with_every_column_kept() -> None:
    pg = Playground(ISSUER, providers=PROVIDERS)
    pg.apply_preset("wrong namespace")
    (table,) = assert_tables_fit(pg.verdict_html.value)
    assert len(table.cols) == 6 and table.rows == 1 + len(pg.verdict.rows)
    for word in ("actual", "why", "system:serviceaccount:dev:s3-readonly-sa"):
        assert word in pg.verdict_html.value


def test_no_layout_in_the_playground_is_wider_than_a_cell_and_its_rows_wrap() -> None:
    pg = Playground(ISSUER, providers=PROVIDERS, try_for_real=lambda _c: pg.verdict)
    assert_layouts_fit(pg)
    wide = Playground(ISSUER)
    wide.children[3].layout.width = "1590px"
    with pytest.raises(AssertionError, match="1590px"):
        assert_layouts_fit(wide)
    margins = Playground(ISSUER)
    margins.policy_input.layout.width = "100%"
    with pytest.raises(AssertionError, match="Textarea.layout.width = 100%"):
        assert_layouts_fit(margins)


def test_try_for_real_puts_the_two_verdicts_in_two_half_width_columns() -> None:
    def fake_real(_claims: dict[str, Any]) -> Verdict:
        return Verdict(False, "AccessDenied", DENIED, 403, [], "from the stand-in", source="STS")

    pg = Playground(ISSUER, providers=PROVIDERS, try_for_real=fake_real)
    pg.run_for_real()
    columns, predicted, real = assert_tables_fit(pg.real_html.value)
    assert columns.cols == ["50%", "50%"] and columns.rows == 2
    assert len(predicted.cols) == 2 and predicted.rows == 1 + len(pg.verdict.rows)
    assert real.rows == 1
    html = pg.real_html.value
    assert html.index("ALLOWED") < html.index("DENIED: AccessDenied")


def test_the_stored_output_summarises_the_preset_verdict_and_failed_checks() -> None:
    pg = Playground(ISSUER, providers=PROVIDERS)
    start = pg._repr_mimebundle_()
    assert start["text/plain"].splitlines() == [
        "Trust-policy playground. Interactive widget: run this cell to use it.",
        "preset: none (the policy and token fields as given)",
        "verdict: + ALLOWED: STS would return temporary credentials (HTTP 200)",
        "failed checks: none",
    ]
    pg.apply_preset("wrong namespace")
    bundle = pg._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    lines = bundle["text/plain"].splitlines()
    assert lines[1:3] == [
        "preset: wrong namespace",
        f"verdict: - DENIED: AccessDenied (HTTP 403): {DENIED}",
    ]
    assert lines[3:] == [
        f"failed check: {HOST}:sub [StringEquals]: expected "
        "system:serviceaccount:default:s3-readonly-sa; actual system:serviceaccount:dev:s3-readonly-sa"
    ]
    assert "Playground(" not in bundle["text/plain"] + bundle["text/html"]
    assert "<li>preset: wrong namespace</li>" in bundle["text/html"]


def test_restore_puts_back_every_input_a_snapshot_found() -> None:
    pg = Playground(ISSUER, providers=PROVIDERS)
    pg.apply_preset("https:// in the condition key")
    before, shown = pg.snapshot(), pg.static_text()
    pg.apply_preset("missing OIDC provider")
    pg.set_claims(namespace="dev")
    assert pg.snapshot() != before
    assert pg.restore(before).code == "AccessDenied"
    assert pg.static_text() == shown
    assert pg.snapshot() == before
    assert "https://" in pg.preset_note.value
