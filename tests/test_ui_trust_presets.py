"""Each preset is the article's set-up with one thing changed, and STS's answer to it."""

from __future__ import annotations

import json

from irsa_lab.constants import DEFAULT_AUDIENCE, SERVICE_ACCOUNT
from irsa_lab.ui.trust_presets import PRESETS, presets, trust_policy_text

ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
FIELDS = ("policy_text", "namespace", "service_account", "audience", "provider_registered")


def test_each_mistake_differs_from_the_correct_set_up_in_one_field() -> None:
    found = presets(ISSUER)
    assert tuple(found) == PRESETS
    correct = found["correct"]
    for name in PRESETS[1:]:
        changed = [f for f in FIELDS if getattr(found[name], f) != getattr(correct, f)]
        assert len(changed) == 1, (name, changed)
        assert found[name].expected_code in ("AccessDenied", "InvalidIdentityToken")


def test_the_claims_of_a_preset_follow_its_fields() -> None:
    wrong_ns = presets(ISSUER)["wrong namespace"]
    assert wrong_ns.claims["sub"] == f"system:serviceaccount:dev:{SERVICE_ACCOUNT}"
    assert wrong_ns.claims["aud"] == [DEFAULT_AUDIENCE]


def test_a_situation_given_in_part_keeps_the_article_s_defaults_for_the_rest() -> None:
    found = presets(ISSUER, namespace="prod")
    assert found["correct"].service_account == SERVICE_ACCOUNT
    doc = json.loads(found["correct"].policy_text)
    assert doc == json.loads(trust_policy_text(ISSUER, namespace="prod"))
