"""Session tags and source identity in web identity tokens, through boto3 and the aws CLI.

IAM User Guide, "Passing session tags using AssumeRoleWithWebIdentity" and "Monitor and
control actions taken with assumed roles": a token may carry
``https://aws.amazon.com/tags`` and ``https://aws.amazon.com/source_identity``; the trust
policy must then also allow ``sts:TagSession`` / ``sts:SetSourceIdentity``, the claims
must follow the rules of tags and source identities, and the session carries them.
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_fixtures import (  # noqa: F401 - fixtures
    ISSUER,
    StsLab,
    sts_lab,
    sts_servers,
)
from botocore.exceptions import ClientError

from irsa_lab.aws.arns import irsa_trust_policy
from irsa_lab.constants import ROLE_NAME

AWS_CLI = Path(sys.executable).with_name("aws")
TAGS = "https://aws.amazon.com/tags"
SOURCE_IDENTITY = "https://aws.amazon.com/source_identity"
DENIED = ("AccessDenied", 403, "Not authorized to perform sts:AssumeRoleWithWebIdentity")
BAD_TAGS = ("ValidationError", 400, "Unable to validate tags")
WEB_IDENTITY = "sts:AssumeRoleWithWebIdentity"


def refused(sts_lab: StsLab, token: str, **params: Any) -> tuple[str, int, str]:
    sts = sts_lab.sts(retries={"total_max_attempts": 1})
    with pytest.raises(ClientError) as exc:
        sts_lab.assume(token, sts=sts, **params)
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def trust(sts_lab: StsLab, *actions: str, condition: dict[str, Any] | None = None) -> None:
    """The scenario's IRSA trust policy, with ``actions`` and extra conditions."""
    document = irsa_trust_policy(sts_lab.scenario.provider_arn, ISSUER)
    statement = document["Statement"][0]
    statement["Action"] = list(actions) if len(actions) > 1 else actions[0]
    for operator, keys in (condition or {}).items():
        statement.setdefault("Condition", {}).setdefault(operator, {}).update(keys)
    sts_lab.account.roles[ROLE_NAME].trust_policy = json.dumps(document)


def tags(**values: str) -> dict[str, Any]:
    return {"principal_tags": {k: [v] for k, v in values.items()}}


# --- the trust policy must allow the extra actions -------------------------------------
def test_a_token_with_session_tags_needs_tag_session_in_the_trust_policy(sts_lab: StsLab):
    token = sts_lab.token(**{TAGS: tags(Project="Automation")})
    assert refused(sts_lab, token) == DENIED
    trust(sts_lab, WEB_IDENTITY, "sts:TagSession")
    assert sts_lab.assume(token)["Credentials"]["AccessKeyId"].startswith("ASIA")


def test_a_token_with_a_source_identity_needs_set_source_identity(sts_lab: StsLab):
    token = sts_lab.token(**{SOURCE_IDENTITY: "Admin"})
    assert refused(sts_lab, token) == DENIED
    trust(sts_lab, WEB_IDENTITY, "sts:TagSession")  # the other one does not do
    assert refused(sts_lab, token) == DENIED
    trust(sts_lab, WEB_IDENTITY, "sts:SetSourceIdentity")
    assert sts_lab.assume(token)["SourceIdentity"] == "Admin"


def test_both_claims_need_both_actions_and_a_wildcard_covers_them(sts_lab: StsLab):
    token = sts_lab.token(**{TAGS: tags(Team="a"), SOURCE_IDENTITY: "Admin"})
    trust(sts_lab, WEB_IDENTITY, "sts:SetSourceIdentity")
    assert refused(sts_lab, token) == DENIED
    trust(sts_lab, "sts:*")
    assert sts_lab.assume(token)["SourceIdentity"] == "Admin"


def test_the_refusal_says_which_action_the_trust_policy_lacks(sts_lab: StsLab):
    refused(sts_lab, sts_lab.token(**{TAGS: tags(Project="Automation")}))
    failed = [e for e in sts_lab.trace.events() if e.call == "evaluate trust policy"][-1]
    assert failed.outcome == "AccessDenied"
    assert "sts:TagSession" in failed.detail["why"]


def test_an_empty_tags_claim_passes_no_tag_and_needs_nothing_more(sts_lab: StsLab):
    out = sts_lab.assume(sts_lab.token(**{TAGS: {"principal_tags": {}}}))
    assert "SourceIdentity" not in out and "PackedPolicySize" not in out


# --- what the session carries ------------------------------------------------------------
def test_the_session_carries_the_tags_and_the_source_identity(sts_lab: StsLab):
    trust(sts_lab, WEB_IDENTITY, "sts:TagSession", "sts:SetSourceIdentity")
    claim = {**tags(Project="Automation", CostCenter="987654"), "transitive_tag_keys": ["Project"]}
    out = sts_lab.assume(sts_lab.token(**{TAGS: claim, SOURCE_IDENTITY: "DiegoRamirez"}))
    assert out["SourceIdentity"] == "DiegoRamirez"
    # AWS reports how much of the packed space the tags use when tags are passed.
    assert 0 < out["PackedPolicySize"] <= 100
    stored = sts_lab.account.credentials[out["Credentials"]["AccessKeyId"]]
    assert stored.session_tags == {"Project": "Automation", "CostCenter": "987654"}
    assert stored.source_identity == "DiegoRamirez"


def test_an_irsa_token_sets_no_source_identity_and_no_tags(sts_lab: StsLab):
    out = sts_lab.assume()
    assert "SourceIdentity" not in out
    stored = sts_lab.account.credentials[out["Credentials"]["AccessKeyId"]]
    assert stored.session_tags == {} and stored.source_identity is None


def test_the_aws_cli_prints_the_source_identity(sts_lab: StsLab, tmp_path):
    trust(sts_lab, WEB_IDENTITY, "sts:SetSourceIdentity")
    token = sts_lab.token(**{SOURCE_IDENTITY: "Admin"})
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "AWS_CA_BUNDLE": str(sts_lab.ca_file),
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    proc = subprocess.run(
        [
            str(AWS_CLI),
            "sts",
            "assume-role-with-web-identity",
            "--endpoint-url",
            sts_lab.sts_url,
            "--role-arn",
            sts_lab.account.roles[ROLE_NAME].arn,
            "--role-session-name",
            "cli",
            "--web-identity-token",
            token,
            "--output",
            "json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["SourceIdentity"] == "Admin"


# --- the request context of the trust evaluation ----------------------------------------
def test_request_tag_conditions_see_the_tokens_session_tags(sts_lab: StsLab):
    trust(
        sts_lab,
        WEB_IDENTITY,
        "sts:TagSession",
        condition={"StringEquals": {"aws:RequestTag/Department": ["Engineering", "Marketing"]}},
    )
    assert sts_lab.assume(sts_lab.token(**{TAGS: tags(Department="Engineering")}))
    assert refused(sts_lab, sts_lab.token(**{TAGS: tags(Department="Sales")})) == DENIED
    # No tag at all: the key is absent, so a positive condition fails.
    assert refused(sts_lab, sts_lab.token()) == DENIED


def test_tag_keys_and_transitive_tag_keys_are_condition_keys(sts_lab: StsLab):
    trust(
        sts_lab,
        WEB_IDENTITY,
        "sts:TagSession",
        condition={
            "ForAllValues:StringEquals": {
                "aws:TagKeys": ["Project", "CostCenter"],
                "sts:TransitiveTagKeys": ["Project"],
            }
        },
    )
    ok = {**tags(Project="a", CostCenter="b"), "transitive_tag_keys": ["Project"]}
    assert sts_lab.assume(sts_lab.token(**{TAGS: ok}))
    extra_key = tags(Project="a", Owner="me")
    assert refused(sts_lab, sts_lab.token(**{TAGS: extra_key})) == DENIED
    extra_transitive = {**tags(Project="a", CostCenter="b"), "transitive_tag_keys": ["CostCenter"]}
    assert refused(sts_lab, sts_lab.token(**{TAGS: extra_transitive})) == DENIED


def test_a_source_identity_condition_sees_the_claim(sts_lab: StsLab):
    trust(
        sts_lab,
        WEB_IDENTITY,
        "sts:SetSourceIdentity",
        condition={"StringLike": {"sts:SourceIdentity": ["Saanvi", "Diego"]}},
    )
    assert sts_lab.assume(sts_lab.token(**{SOURCE_IDENTITY: "Diego"}))["SourceIdentity"] == "Diego"
    assert refused(sts_lab, sts_lab.token(**{SOURCE_IDENTITY: "Mallory"})) == DENIED


def test_a_condition_on_the_sub_still_applies_to_tag_session(sts_lab: StsLab):
    # One statement covers both actions; its sub condition decides both.
    trust(sts_lab, WEB_IDENTITY, "sts:TagSession")
    token = sts_lab.token(sub="system:serviceaccount:default:other-sa", **{TAGS: tags(Project="a")})
    assert refused(sts_lab, token) == DENIED


def test_a_role_session_name_condition_sees_the_requests_session_name(sts_lab: StsLab):
    trust(sts_lab, WEB_IDENTITY, condition={"StringEquals": {"sts:RoleSessionName": "ci-job"}})
    assert sts_lab.assume(RoleSessionName="ci-job")
    assert refused(sts_lab, sts_lab.token(), RoleSessionName="other") == DENIED


# --- the rules of session tags -------------------------------------------------------------
@pytest.mark.parametrize(
    "claim",
    [
        pytest.param({f"k{i}": [""] for i in range(51)}, id="51-tags"),
        pytest.param({"k" * 129: ["v"]}, id="key-of-129"),
        pytest.param({"k": ["v" * 257]}, id="value-of-257"),
        pytest.param({"": ["v"]}, id="empty-key"),
        pytest.param({"Project!": ["a"]}, id="bang-in-key"),
        pytest.param({"Project": ["a;b"]}, id="semicolon-in-value"),
        pytest.param({"aws:Project": ["a"]}, id="aws-prefixed-key"),
        pytest.param({"Project": ["AWS:a"]}, id="aws-prefixed-value"),
        pytest.param({"Project": ["a", "b"]}, id="two-values"),
        pytest.param({"Project": []}, id="no-value"),
        pytest.param({"Project": [7]}, id="number-value"),
        pytest.param({"Project": ["a"], "project": ["b"]}, id="keys-differ-in-case"),
    ],
)
def test_tags_that_break_the_rules_are_a_validation_error(sts_lab: StsLab, claim):
    trust(sts_lab, WEB_IDENTITY, "sts:TagSession")
    assert refused(sts_lab, sts_lab.token(**{TAGS: {"principal_tags": claim}})) == BAD_TAGS


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param(["Project"], id="a-list"),
        pytest.param("Project=a", id="a-string"),
        pytest.param({"principal_tags": ["Project", "a"]}, id="principal-tags-a-list"),
        pytest.param({"principal_tags": {}, "transitive_tag_keys": "Project"}, id="transitive-str"),
    ],
)
def test_a_tags_claim_of_the_wrong_shape_is_a_validation_error(sts_lab: StsLab, claim):
    trust(sts_lab, WEB_IDENTITY, "sts:TagSession")
    assert refused(sts_lab, sts_lab.token(**{TAGS: claim})) == BAD_TAGS


def test_tags_at_the_limits_are_accepted(sts_lab: StsLab):
    trust(sts_lab, WEB_IDENTITY, "sts:TagSession")
    fifty = {f"k{i}": ["v"] for i in range(50)}
    assert sts_lab.assume(sts_lab.token(**{TAGS: {"principal_tags": fifty}}))
    longest = {"k" * 128: ["v" * 256]}
    assert sts_lab.assume(sts_lab.token(**{TAGS: {"principal_tags": longest}}))
    unicode = {"Équipe 1": ["Développement_.:/=+-@"]}
    assert sts_lab.assume(sts_lab.token(**{TAGS: {"principal_tags": unicode}}))


def test_tags_too_large_once_packed_are_packed_policy_too_large(sts_lab: StsLab):
    # aws-actions/configure-aws-credentials#1898: 9 tags with 250-character values.
    trust(sts_lab, WEB_IDENTITY, "sts:TagSession")
    claim = {"principal_tags": {f"T{i}": ["a" * 250] for i in range(1, 10)}}
    assert refused(sts_lab, sts_lab.token(**{TAGS: claim})) == (
        "PackedPolicyTooLarge",
        400,
        "Packed size of session tags consumes 498% of allotted space.",
    )


# --- the rules of a source identity ----------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "constraint"),
    [
        ("a", "Member must have length greater than or equal to 2"),
        ("a" * 65, "Member must have length less than or equal to 64"),
        ("john doe", r"Member must satisfy regular expression pattern: [\w+=,.@-]*"),
        ("aws:admin", r"Member must satisfy regular expression pattern: [\w+=,.@-]*"),
        ("Zoë", r"Member must satisfy regular expression pattern: [\w+=,.@-]*"),
    ],
)
def test_a_source_identity_that_breaks_the_rules_is_a_validation_error(
    sts_lab: StsLab, value, constraint
):
    trust(sts_lab, WEB_IDENTITY, "sts:SetSourceIdentity")
    assert refused(sts_lab, sts_lab.token(**{SOURCE_IDENTITY: value})) == (
        "ValidationError",
        400,
        f"1 validation error detected: Value '{value}' at 'sourceIdentity' failed to satisfy "
        f"constraint: {constraint}",
    )


@pytest.mark.parametrize("value", ["ab", "a" * 64, "jane.doe+ci=1,x@example.com-_"])
def test_source_identities_at_the_limits_are_accepted(sts_lab: StsLab, value):
    trust(sts_lab, WEB_IDENTITY, "sts:SetSourceIdentity")
    assert sts_lab.assume(sts_lab.token(**{SOURCE_IDENTITY: value}))["SourceIdentity"] == value


def test_a_bad_claim_is_refused_even_when_the_trust_policy_would_deny(sts_lab: StsLab):
    # The claims are checked with the token, before the role and its trust policy.
    bad = sts_lab.token(**{SOURCE_IDENTITY: "a"})
    assert refused(sts_lab, bad)[0] == "ValidationError"
