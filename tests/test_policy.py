"""The IAM policy evaluator: verdicts, and explanations that say which condition failed and why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from irsa_lab.aws.errors import AwsError
from irsa_lab.aws.policy import (
    ConditionResult,
    Decision,
    Policy,
    RequestContext,
    evaluate,
    oidc_trust_context,
    parse_policy,
)
from irsa_lab.constants import ACCOUNT_ID, BUCKET, DEFAULT_AUDIENCE, NAMESPACE, SERVICE_ACCOUNT

ISSUER_PATH = "oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
ISSUER = f"https://{ISSUER_PATH}"
PROVIDER_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{ISSUER_PATH}"
SUB_KEY = f"{ISSUER_PATH}:sub"
AUD_KEY = f"{ISSUER_PATH}:aud"
SUB = f"system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}"
ASSUME = "sts:AssumeRoleWithWebIdentity"


def trust_policy(operator: str = "StringEquals", sub: str = SUB, **extra: Any) -> dict[str, Any]:
    """The default scenario's IRSA trust policy, with the sub condition's operator and value swappable."""
    conditions: dict[str, Any] = {operator: {SUB_KEY: sub}}
    conditions.setdefault("StringEquals", {})[AUD_KEY] = DEFAULT_AUDIENCE
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER_ARN},
        "Action": ASSUME,
        "Condition": conditions,
    }
    statement.update(extra)
    return {"Version": "2012-10-17", "Statement": [statement]}


def token(sub: str = SUB, aud: Any = DEFAULT_AUDIENCE) -> RequestContext:
    return oidc_trust_context(PROVIDER_ARN, {"sub": sub, "aud": aud, "iss": ISSUER})


def assume(policy: Any, ctx: RequestContext | None = None) -> Decision:
    return evaluate([("trust policy", policy)], ctx or token())


def condition(decision: Decision, key: str) -> ConditionResult:
    (found,) = [c for s in decision.statements for c in s.conditions if c.key == key]
    return found


def one_condition(operator: str, key: str, value: Any, keys: dict[str, Any]) -> ConditionResult:
    """Evaluate a single condition in an otherwise matching identity policy."""
    doc = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {operator: {key: value}},
        },
    }
    ctx = RequestContext("s3:GetObject", f"arn:aws:s3:::{BUCKET}/k", keys=keys)
    decision = evaluate([("inline:test", doc)], ctx)
    (result,) = decision.statements[0].conditions
    assert decision.allowed is result.passed
    return result


def malformed(document: Any, kind: str = "identity") -> AwsError:
    with pytest.raises(AwsError) as info:
        parse_policy(document, kind=kind)  # type: ignore[arg-type]
    assert info.value.code == "MalformedPolicyDocument"
    assert info.value.status == 400
    return info.value


# --- the IRSA trust policy of the default scenario -----------------------------------------


def test_the_default_trust_policy_allows_the_annotated_service_account_with_the_sts_audience() -> (
    None
):
    decision = assume(trust_policy())
    assert decision.allowed and decision.reason == "Allow"
    sub = condition(decision, SUB_KEY)
    assert (sub.operator, sub.expected, sub.actual, sub.passed) == (
        "StringEquals",
        [SUB],
        [SUB],
        True,
    )
    assert decision.failed_conditions() == []
    assert (
        "Verdict: Allow: trust policy Statement[0] allows sts:AssumeRoleWithWebIdentity"
        in decision.explain()
    )


def test_a_token_from_another_namespace_is_implicitly_denied_and_the_namespace_is_named() -> None:
    other = f"system:serviceaccount:kube-system:{SERVICE_ACCOUNT}"
    decision = assume(trust_policy(), token(sub=other))
    assert not decision.allowed and decision.reason == "ImplicitDeny"
    (failed,) = decision.failed_conditions()
    assert (failed.key, failed.operator, failed.expected, failed.actual) == (
        SUB_KEY,
        "StringEquals",
        [SUB],
        [other],
    )
    assert (
        "the namespace differs ('kube-system' in the token, 'default' in the policy)" in failed.note
    )
    text = decision.explain()
    assert f"expected: '{SUB}'" in text and f"actual:   '{other}'" in text
    assert "result:   FAILED" in text and "ImplicitDeny" in text


def test_a_typo_in_the_service_account_name_is_denied_and_the_name_is_named() -> None:
    typo = f"system:serviceaccount:{NAMESPACE}:s3-readonly-sa2"
    (failed,) = assume(trust_policy(), token(sub=typo)).failed_conditions()
    assert failed.actual == [typo]
    assert "service account name differs ('s3-readonly-sa2' in the token" in failed.note
    assert "namespace" not in failed.note


def test_a_wildcard_under_string_equals_is_literal_and_the_note_says_use_string_like() -> None:
    wildcard = f"system:serviceaccount:{NAMESPACE}:*"
    decision = assume(trust_policy(sub=wildcard))
    assert decision.reason == "ImplicitDeny"
    (failed,) = decision.failed_conditions()
    assert "'*' is literal under StringEquals; use StringLike" in failed.note


def test_the_same_wildcard_under_string_like_allows_any_service_account_of_the_namespace() -> None:
    policy = trust_policy("StringLike", f"system:serviceaccount:{NAMESPACE}:*")
    decision = assume(policy, token(sub=f"system:serviceaccount:{NAMESPACE}:anything"))
    assert decision.allowed
    assert "matches the pattern" in condition(decision, SUB_KEY).note
    assert not assume(policy, token(sub="system:serviceaccount:other:anything")).allowed


def test_string_like_question_mark_matches_exactly_one_character() -> None:
    policy = trust_policy("StringLike", f"system:serviceaccount:{NAMESPACE}:s3-readonly-s?")
    assert assume(policy).allowed
    assert not assume(policy, token(sub=SUB + "x")).allowed


def test_an_audience_mismatch_fails_the_aud_condition_only() -> None:
    decision = assume(trust_policy(), token(aud="sts.amazon.com"))
    assert not decision.allowed
    (failed,) = decision.failed_conditions()
    assert (
        failed.key == AUD_KEY
        and failed.actual == ["sts.amazon.com"]
        and failed.expected == [DEFAULT_AUDIENCE]
    )
    assert condition(decision, SUB_KEY).passed


def test_a_condition_key_written_with_https_is_absent_and_the_note_says_drop_the_scheme() -> None:
    doc = trust_policy()
    doc["Statement"][0]["Condition"]["StringEquals"] = {
        f"https://{SUB_KEY}": SUB,
        AUD_KEY: DEFAULT_AUDIENCE,
    }
    decision = assume(doc)
    assert decision.reason == "ImplicitDeny"
    (failed,) = decision.failed_conditions()
    assert failed.actual is None and failed.key == f"https://{SUB_KEY}"
    assert failed.note.startswith("key not present in request")
    assert f"written without 'https://' (the request has '{SUB_KEY}')" in failed.note
    assert "(key not present in request)" in decision.explain()


def test_a_condition_key_of_another_cluster_points_at_the_key_the_request_has() -> None:
    doc = trust_policy()
    other = SUB_KEY.replace("0123456789ABCDEF", "FEDCBA9876543210", 1)
    doc["Statement"][0]["Condition"]["StringEquals"] = {other: SUB, AUD_KEY: DEFAULT_AUDIENCE}
    (failed,) = assume(doc).failed_conditions()
    assert f"the request has '{SUB_KEY}'" in failed.note


def test_condition_key_names_are_case_insensitive_but_values_are_not() -> None:
    doc = trust_policy()
    doc["Statement"][0]["Condition"]["StringEquals"] = {
        SUB_KEY.upper(): SUB,
        AUD_KEY: DEFAULT_AUDIENCE,
    }
    assert assume(doc).allowed
    (failed,) = assume(trust_policy(), token(sub=SUB.upper())).failed_conditions()
    assert "differ only in case" in failed.note


def test_the_wrong_provider_in_principal_is_denied_though_every_condition_passes() -> None:
    doc = trust_policy()
    doc["Statement"][0]["Principal"] = {"Federated": PROVIDER_ARN.replace("eu-west-1", "us-east-1")}
    decision = assume(doc)
    statement = decision.statements[0]
    assert not decision.allowed and not statement.principal_matched and statement.action_matched
    assert all(c.passed for c in statement.conditions)
    assert decision.failed_conditions() == []  # the statement never targeted this caller
    assert (
        "Principal Federated arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-east-1"
        in statement.note
    )
    assert "principal  NOT matched" in decision.explain()


def test_principal_aws_star_does_not_let_a_web_identity_in_but_star_does() -> None:
    doc = trust_policy()
    doc["Statement"][0]["Principal"] = {"AWS": "*"}
    assert not assume(doc).allowed
    doc["Statement"][0]["Principal"] = "*"
    assert assume(doc).allowed


def test_a_wrong_action_is_denied_and_an_action_wildcard_is_allowed() -> None:
    assert not assume(trust_policy(Action="sts:AssumeRole")).allowed
    assert assume(trust_policy(Action="sts:*")).allowed
    assert assume(
        trust_policy(Action="STS:assumerolewithwebidentity")
    ).allowed  # actions ignore case


def test_a_list_audience_with_one_value_is_matched_as_that_value() -> None:
    assert assume(trust_policy(), token(aud=[DEFAULT_AUDIENCE])).allowed


# --- decision logic ------------------------------------------------------------------------


def test_an_explicit_deny_beats_an_allow_in_another_policy() -> None:
    deny = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "NoKubeSystem",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "sts:*",
                "Condition": {"StringLike": {SUB_KEY: "system:serviceaccount:kube-system:*"}},
            }
        ],
    }
    both = [
        ("trust policy", trust_policy("StringLike", "system:serviceaccount:*")),
        ("guard", deny),
    ]
    kube = token(sub="system:serviceaccount:kube-system:x")
    decision = evaluate(both, kube)
    assert (decision.allowed, decision.reason) == (False, "ExplicitDeny")
    assert [s.applies for s in decision.statements] == [True, True]
    assert "ExplicitDeny: guard Statement[0] (Sid 'NoKubeSystem') denies" in decision.explain()
    assert evaluate(both, token()).allowed


def test_no_policies_at_all_is_an_implicit_deny() -> None:
    decision = evaluate([], RequestContext("s3:GetObject", "arn:aws:s3:::b/k"))
    assert decision.reason == "ImplicitDeny"
    assert "No policy statements were given." in decision.explain()


def s3_read_only() -> dict[str, Any]:
    """AmazonS3ReadOnlyAccess as AWS publishes it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "s3:Get*",
                    "s3:List*",
                    "s3:Describe*",
                    "s3-object-lambda:Get*",
                    "s3-object-lambda:List*",
                ],
                "Resource": "*",
            }
        ],
    }


@pytest.mark.parametrize(
    ("action", "resource", "allowed"),
    [
        ("s3:ListBucket", f"arn:aws:s3:::{BUCKET}", True),
        ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/logs/a.txt", True),
        ("s3:ListAllMyBuckets", "*", True),
        ("s3:PutObject", f"arn:aws:s3:::{BUCKET}/logs/a.txt", False),
        ("s3:DeleteBucket", f"arn:aws:s3:::{BUCKET}", False),
    ],
)
def test_s3_read_only_access_allows_reads_and_implicitly_denies_writes(
    action: str, resource: str, allowed: bool
) -> None:
    decision = evaluate(
        [("AmazonS3ReadOnlyAccess", s3_read_only())], RequestContext(action, resource)
    )
    assert decision.allowed is allowed
    assert decision.reason == ("Allow" if allowed else "ImplicitDeny")
    if not allowed:
        assert f"does not cover {action}" in decision.statements[0].note


def test_an_identity_policy_request_without_resource_stands_for_star() -> None:
    decision = evaluate(
        [("p", s3_read_only())], RequestContext("s3:ListAllMyBuckets"), kind="identity"
    )
    assert decision.allowed


def test_resources_match_with_wildcards_and_case_sensitively() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/logs/*",
        },
    }
    ok = evaluate([("p", doc)], RequestContext("s3:GetObject", f"arn:aws:s3:::{BUCKET}/logs/x/y"))
    assert ok.allowed
    upper = evaluate([("p", doc)], RequestContext("s3:GetObject", f"arn:aws:s3:::{BUCKET}/LOGS/x"))
    assert not upper.allowed and not upper.statements[0].resource_matched
    assert "Resource" in upper.statements[0].note


def test_not_action_allows_everything_but_the_listed_actions() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "NotAction": "s3:Put*", "Resource": "*"},
    }
    assert evaluate([("p", doc)], RequestContext("s3:GetObject", "*")).allowed
    denied = evaluate([("p", doc)], RequestContext("s3:PutObject", "*"))
    assert not denied.allowed and "NotAction excludes s3:PutObject" in denied.statements[0].note


def test_not_resource_in_a_deny_protects_everything_but_one_bucket() -> None:
    docs = [
        (
            "allow",
            {
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            },
        ),
        (
            "fence",
            {
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Deny",
                    "Action": "s3:*",
                    "NotResource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
                },
            },
        ),
    ]
    assert evaluate(docs, RequestContext("s3:GetObject", f"arn:aws:s3:::{BUCKET}/k")).allowed
    other = evaluate(docs, RequestContext("s3:GetObject", "arn:aws:s3:::other-bucket/k"))
    assert other.reason == "ExplicitDeny"


def test_not_principal_matches_every_caller_except_the_listed_one() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "NotPrincipal": {"Federated": PROVIDER_ARN},
            "Action": ASSUME,
        },
    }
    assert not assume(doc).allowed
    assert assume(
        doc, oidc_trust_context(PROVIDER_ARN.replace("ABCDEF", "000000"), {"sub": SUB, "aud": "x"})
    ).allowed


def test_an_account_principal_stands_for_every_identity_of_that_account() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Principal": {"AWS": ACCOUNT_ID},
            "Action": "sts:AssumeRole",
        },
    }
    caller = RequestContext(
        "sts:AssumeRole", principal={"AWS": [f"arn:aws:iam::{ACCOUNT_ID}:role/admin"]}
    )
    assert evaluate([("trust", doc)], caller).allowed
    stranger = RequestContext(
        "sts:AssumeRole", principal={"AWS": ["arn:aws:iam::210987654321:role/admin"]}
    )
    assert not evaluate([("trust", doc)], stranger).allowed
    root = json.loads(
        json.dumps(doc).replace(f'"{ACCOUNT_ID}"', f'"arn:aws:iam::{ACCOUNT_ID}:root"')
    )
    assert evaluate([("trust", root)], caller).allowed


def test_a_parsed_policy_can_be_passed_instead_of_its_text() -> None:
    parsed = parse_policy(json.dumps(trust_policy()), kind="trust")
    assert isinstance(parsed, Policy) and parsed.kind == "trust"
    assert evaluate([("trust policy", parsed)], token()).allowed


def test_the_same_text_is_parsed_once() -> None:
    text = json.dumps(trust_policy())
    assert parse_policy(text, kind="trust") is parse_policy(text, kind="trust")


# --- condition operators, one family at a time ---------------------------------------------


def test_string_not_equals_passes_for_other_values_and_for_a_missing_key() -> None:
    other = one_condition(
        "StringNotEquals", "aws:PrincipalTag/team", "blue", {"aws:PrincipalTag/team": "red"}
    )
    assert other.passed and other.actual == ["red"] and "does not equal any of" not in other.note
    assert "'red' does not equal 'blue', so StringNotEquals passes" in other.note
    same = one_condition(
        "StringNotEquals", "aws:PrincipalTag/team", "blue", {"aws:PrincipalTag/team": "blue"}
    )
    assert not same.passed and "'blue' equals 'blue', so StringNotEquals fails" in same.note
    missing = one_condition("StringNotEquals", "aws:PrincipalTag/team", "blue", {})
    assert missing.passed and missing.actual is None
    assert "a negated operator (StringNotEquals) passes when the key is missing" in missing.note


def test_a_positive_operator_fails_on_a_missing_key() -> None:
    result = one_condition("StringEquals", "aws:PrincipalTag/team", "blue", {})
    assert (
        not result.passed and result.actual is None and result.note == "key not present in request."
    )


def test_string_equals_ignore_case_and_its_negation() -> None:
    assert one_condition(
        "StringEqualsIgnoreCase", "s3:prefix", "Logs/", {"s3:prefix": "LOGS/"}
    ).passed
    assert not one_condition(
        "StringNotEqualsIgnoreCase", "s3:prefix", "Logs/", {"s3:prefix": "logs/"}
    ).passed
    assert one_condition(
        "StringNotEqualsIgnoreCase", "s3:prefix", "Logs/", {"s3:prefix": "data/"}
    ).passed


def test_string_not_like_fails_when_a_pattern_matches() -> None:
    result = one_condition(
        "StringNotLike", "s3:prefix", ["tmp/*", "cache/*"], {"s3:prefix": "cache/a"}
    )
    assert not result.passed and result.expected == ["tmp/*", "cache/*"]
    assert "'cache/a' matches the pattern 'cache/*'" in result.note


def test_several_values_for_one_key_are_ored() -> None:
    result = one_condition(
        "StringEquals",
        "aws:RequestedRegion",
        ["us-east-1", "eu-west-1"],
        {"aws:RequestedRegion": "eu-west-1"},
    )
    assert result.passed and result.expected == ["us-east-1", "eu-west-1"]


def test_several_keys_and_operators_are_anded() -> None:
    decision = assume(trust_policy(), token(aud="other"))
    assert [c.passed for c in decision.statements[0].conditions] == [True, False]
    assert not decision.allowed


@pytest.mark.parametrize(
    ("operator", "policy_value", "request_value", "passed"),
    [
        ("NumericEquals", 5, "5", True),
        ("NumericEquals", "5", "5.0", True),
        ("NumericNotEquals", 5, "6", True),
        ("NumericLessThan", 10, "9", True),
        ("NumericLessThan", 10, "10", False),
        ("NumericLessThanEquals", 10, "10", True),
        ("NumericGreaterThan", 3600, "3601", True),
        ("NumericGreaterThanEquals", 3600, "3599", False),
        ("NumericEquals", 5, "five", False),
    ],
)
def test_numeric_operators_compare_numbers(
    operator: str, policy_value: Any, request_value: str, passed: bool
) -> None:
    result = one_condition(
        operator, "sts:DurationSeconds", policy_value, {"sts:DurationSeconds": request_value}
    )
    assert result.passed is passed
    assert result.expected == [str(policy_value)] and result.actual == [request_value]


def test_a_numeric_note_reads_as_a_comparison() -> None:
    result = one_condition(
        "NumericLessThan", "sts:DurationSeconds", 3600, {"sts:DurationSeconds": "7200"}
    )
    assert result.note == "'7200' is not less than '3600'."


@pytest.mark.parametrize(
    ("operator", "policy_value", "request_value", "passed"),
    [
        ("DateLessThan", "2024-03-28T00:00:00Z", "2024-03-27T13:46:58Z", True),
        ("DateGreaterThan", "2024-03-28T00:00:00Z", "2024-03-27T13:46:58Z", False),
        ("DateEquals", "2024-03-27T13:46:58Z", "1711547218", True),  # epoch seconds
        ("DateNotEquals", "2024-03-27T13:46:58+00:00", "2024-03-27T14:46:58+01:00", False),
        ("DateLessThanEquals", "1711547218", "2024-03-27T13:46:58Z", True),
        ("DateGreaterThanEquals", "2024-03-27", "2024-03-27T00:00:01Z", True),
        ("DateLessThan", "2024-03-28T00:00:00Z", "not a date", False),
    ],
)
def test_date_operators_accept_iso_8601_and_epoch_seconds(
    operator: str, policy_value: str, request_value: str, passed: bool
) -> None:
    result = one_condition(
        operator, "aws:CurrentTime", policy_value, {"aws:CurrentTime": request_value}
    )
    assert result.passed is passed


def test_bool_compares_true_and_false_and_accepts_a_json_boolean() -> None:
    result = one_condition("Bool", "aws:SecureTransport", True, {"aws:SecureTransport": "true"})
    assert result.passed and result.expected == ["true"] and result.note == "'true' is 'true'."
    assert not one_condition(
        "Bool", "aws:SecureTransport", "true", {"aws:SecureTransport": "false"}
    ).passed


def test_binary_equals_compares_base64_bytes() -> None:
    assert one_condition("BinaryEquals", "aws:Key", "QmluYXJ5", {"aws:Key": "QmluYXJ5"}).passed
    assert not one_condition("BinaryEquals", "aws:Key", "QmluYXJ5", {"aws:Key": "T3RoZXI="}).passed


def test_ip_address_checks_membership_of_a_cidr() -> None:
    assert one_condition(
        "IpAddress", "aws:SourceIp", "10.0.0.0/8", {"aws:SourceIp": "10.1.2.3"}
    ).passed
    assert one_condition(
        "NotIpAddress", "aws:SourceIp", "10.0.0.0/8", {"aws:SourceIp": "192.168.0.1"}
    ).passed


@pytest.mark.parametrize(
    ("operator", "pattern", "arn", "passed"),
    [
        (
            "ArnEquals",
            f"arn:aws:iam::{ACCOUNT_ID}:role/app",
            f"arn:aws:iam::{ACCOUNT_ID}:role/app",
            True,
        ),
        ("ArnLike", "arn:aws:iam::*:role/app-*", f"arn:aws:iam::{ACCOUNT_ID}:role/app-web", True),
        ("ArnLike", "arn:aws:iam::*:role/app-*", f"arn:aws:iam::{ACCOUNT_ID}:user/app-web", False),
        (
            "ArnEquals",
            "arn:aws:iam::*:role/app",
            f"arn:aws:iam::{ACCOUNT_ID}:role/app",
            True,
        ),  # wildcards too
        (
            "ArnNotEquals",
            f"arn:aws:iam::{ACCOUNT_ID}:role/app",
            f"arn:aws:iam::{ACCOUNT_ID}:role/other",
            True,
        ),
        ("ArnNotLike", "arn:aws:iam::*:role/*", f"arn:aws:iam::{ACCOUNT_ID}:role/other", False),
        # The wildcard of one segment does not reach into the next.
        ("ArnLike", "arn:aws:*", f"arn:aws:iam::{ACCOUNT_ID}:role/app", False),
    ],
)
def test_arn_operators_match_segment_by_segment(
    operator: str, pattern: str, arn: str, passed: bool
) -> None:
    result = one_condition(operator, "aws:PrincipalArn", pattern, {"aws:PrincipalArn": arn})
    assert result.passed is passed


def test_if_exists_passes_on_a_missing_key_and_tests_a_present_one() -> None:
    missing = one_condition("StringEqualsIfExists", "ec2:InstanceType", "t3.micro", {})
    assert missing.passed and missing.actual is None
    assert "StringEqualsIfExists passes when the key is missing" in missing.note
    wrong = one_condition(
        "StringEqualsIfExists", "ec2:InstanceType", "t3.micro", {"ec2:InstanceType": "m5.large"}
    )
    assert not wrong.passed and wrong.actual == ["m5.large"]
    assert one_condition("NumericLessThanIfExists", "sts:DurationSeconds", 900, {}).passed


def test_null_true_asks_for_an_absent_key_and_null_false_for_a_present_one() -> None:
    absent = one_condition("Null", "aws:TokenIssueTime", "true", {})
    assert absent.passed and absent.note == "key not present in request, as Null true asks."
    present = one_condition(
        "Null", "aws:TokenIssueTime", "true", {"aws:TokenIssueTime": "2024-01-01T00:00:00Z"}
    )
    assert not present.passed and "Null true asks for it to be absent" in present.note
    assert one_condition("Null", "aws:TokenIssueTime", False, {"aws:TokenIssueTime": "x"}).passed
    assert not one_condition("Null", "aws:TokenIssueTime", "false", {}).passed


def test_an_empty_list_in_the_request_counts_as_an_absent_key() -> None:
    assert one_condition("Null", "aws:TagKeys", "true", {"aws:TagKeys": []}).passed


def test_for_any_value_passes_when_one_request_value_matches() -> None:
    keys = {AUD_KEY: ["other", DEFAULT_AUDIENCE]}
    result = one_condition("ForAnyValue:StringEquals", AUD_KEY, DEFAULT_AUDIENCE, keys)
    assert result.passed and result.actual == ["other", DEFAULT_AUDIENCE]
    assert "ForAnyValue needs only one value" in result.note
    assert not one_condition("ForAnyValue:StringEquals", AUD_KEY, "x", keys).passed


def test_for_all_values_needs_every_request_value_to_match() -> None:
    keys = {"aws:TagKeys": ["team", "cost-center"]}
    assert one_condition("ForAllValues:StringLike", "aws:TagKeys", ["team", "cost-*"], keys).passed
    result = one_condition("ForAllValues:StringEquals", "aws:TagKeys", "team", keys)
    assert not result.passed and "'cost-center' does not equal 'team'" in result.note


def test_for_all_values_passes_on_a_missing_key_and_the_note_calls_it_a_pitfall() -> None:
    result = one_condition("ForAllValues:StringEquals", "aws:TagKeys", "team", {})
    assert result.passed and result.actual is None and "known pitfall" in result.note


def test_for_any_value_fails_on_a_missing_key_unless_if_exists() -> None:
    assert not one_condition("ForAnyValue:StringEquals", "aws:TagKeys", "team", {}).passed
    assert one_condition("ForAnyValue:StringEqualsIfExists", "aws:TagKeys", "team", {}).passed


def test_a_single_valued_operator_on_a_multivalued_key_passes_if_any_value_matches() -> None:
    keys = {"aws:TagKeys": ["a", "b"]}
    positive = one_condition("StringEquals", "aws:TagKeys", "a", keys)
    assert positive.passed and "passes here when any of them matches" in positive.note
    negated = one_condition("StringNotEquals", "aws:TagKeys", "a", keys)
    assert not negated.passed and "passes here when none of them matches" in negated.note


def test_a_policy_variable_is_replaced_by_the_request_value_and_the_note_says_so() -> None:
    keys = {"s3:prefix": "alice/x", "aws:username": "alice"}
    result = one_condition("StringLike", "s3:prefix", "${aws:username}/*", keys)
    assert result.passed and result.expected == ["alice/*"]
    assert "${aws:username} is 'alice'" in result.note


def test_a_policy_variable_with_no_value_matches_nothing_so_only_negations_pass() -> None:
    keys = {"s3:prefix": "alice/x"}
    result = one_condition("StringLike", "s3:prefix", "${aws:username}/*", keys)
    assert not result.passed and "has no value" in result.note
    assert one_condition("StringNotLike", "s3:prefix", "${aws:username}/*", keys).passed


def test_a_default_stands_in_for_a_missing_key_and_escapes_are_literal() -> None:
    keys = {"s3:prefix": "team-company-wide"}
    assert one_condition(
        "StringEquals", "s3:prefix", "team-${aws:PrincipalTag/team, 'company-wide'}", keys
    ).passed
    # ${*} is a literal star: under StringLike it matches only '*' itself.
    assert one_condition("StringLike", "s3:prefix", "a${*}", {"s3:prefix": "a*"}).passed
    assert not one_condition("StringLike", "s3:prefix", "a${*}", {"s3:prefix": "ab"}).passed
    assert one_condition("StringEquals", "s3:prefix", "${$}{x}${?}", {"s3:prefix": "${x}?"}).passed


def test_a_substituted_value_never_acts_as_a_wildcard() -> None:
    keys = {"s3:prefix": "anything", "aws:PrincipalTag/team": "*"}
    assert not one_condition("StringLike", "s3:prefix", "${aws:PrincipalTag/team}", keys).passed


def test_variables_are_literal_in_a_2008_policy_and_the_note_says_so() -> None:
    doc = {
        "Version": "2008-10-17",
        "Statement": {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": "*",
            "Condition": {"StringEquals": {"s3:prefix": "${aws:username}"}},
        },
    }
    literal = {"s3:prefix": "${aws:username}", "aws:username": "alice"}
    ctx = RequestContext("s3:GetObject", f"arn:aws:s3:::{BUCKET}/k", keys=literal)
    decision = evaluate([("inline:old", doc)], ctx)
    assert decision.allowed
    assert "compared as written" in decision.statements[0].conditions[0].note


def test_variables_in_resource_are_replaced_and_one_with_no_value_covers_nothing() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": {
            "Effect": "Allow",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/${{aws:PrincipalAccount}}/*",
        },
    }
    keys = {"aws:PrincipalAccount": ACCOUNT_ID}
    mine = RequestContext("s3:GetObject", f"arn:aws:s3:::{BUCKET}/{ACCOUNT_ID}/k", keys=keys)
    other = RequestContext("s3:GetObject", f"arn:aws:s3:::{BUCKET}/111122223333/k", keys=keys)
    assert evaluate([("p", doc)], mine).allowed
    assert not evaluate([("p", doc)], other).allowed
    no_key = RequestContext("s3:GetObject", f"arn:aws:s3:::{BUCKET}/{ACCOUNT_ID}/k")
    denied = evaluate([("p", doc)], no_key)
    assert not denied.allowed and "has no value" in denied.statements[0].note


# --- the explanation -----------------------------------------------------------------------


def test_the_explanation_lists_every_statement_condition_and_the_verdict() -> None:
    text = assume(trust_policy(), token(aud="nope")).explain()
    lines = text.splitlines()
    assert lines[0] == f"Request: {ASSUME}"
    assert "trust policy Statement[0]: Allow, does not apply" in lines
    assert f"  condition  StringEquals {AUD_KEY}" in lines
    assert f"    expected: '{DEFAULT_AUDIENCE}'" in lines
    assert "    actual:   'nope'" in lines
    assert lines[-1].startswith(
        "Verdict: ImplicitDeny: no statement allows sts:AssumeRoleWithWebIdentity"
    )
    assert "a condition failed" in lines[-1]


def test_the_explanation_is_the_same_on_every_run() -> None:
    assert (
        assume(trust_policy(), token(sub="x")).explain()
        == assume(trust_policy(), token(sub="x")).explain()
    )


# --- malformed documents -------------------------------------------------------------------


def test_invalid_json_is_reported_with_iams_text() -> None:
    err = malformed('{"Version": "2012-10-17", "Statement": [')
    assert "This policy contains invalid Json" in err.message
    assert err.detail["aws_message"] == "This policy contains invalid Json"


def test_an_identity_policy_with_a_principal_has_a_prohibited_field() -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}],
    }
    assert malformed(doc).message == "Statement[0]: Has prohibited field Principal"


def test_a_trust_policy_without_principal_is_missing_a_required_field() -> None:
    doc = trust_policy()
    del doc["Statement"][0]["Principal"]
    assert malformed(doc, "trust").message == "Statement[0]: Missing required field Principal"


def test_a_trust_policy_with_a_resource_has_a_prohibited_field() -> None:
    assert (
        malformed(trust_policy(Resource="*"), "trust").message
        == "Statement[0]: Has prohibited field Resource"
    )


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ({"Action": "s3:*", "Resource": "*"}, "Statement[0]: Missing required field Effect"),
        (
            {"Effect": "allow", "Action": "s3:*", "Resource": "*"},
            'Effect must be "Allow" or "Deny", not "allow"',
        ),
        ({"Effect": "Allow", "Resource": "*"}, "Policy statement must contain actions."),
        ({"Effect": "Allow", "Action": "s3:*"}, "Policy statement must contain resources."),
        (
            {"Effect": "Allow", "Action": "s3:*", "NotAction": "s3:Put*", "Resource": "*"},
            "Action or NotAction, not both",
        ),
        (
            {"Effect": "Allow", "Action": "ListBucket", "Resource": "*"},
            "must be prefaced by a vendor",
        ),
        (
            {"Effect": "Allow", "Action": "s3:s3:ListBucket", "Resource": "*"},
            "can contain only one colon",
        ),
        (
            {"Effect": "Allow", "Action": "s3:*", "Resource": "my-bucket"},
            'Resource my-bucket must be in ARN format or "*".',
        ),
        (
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condtion": {}},
            "unknown field 'Condtion'",
        ),
        (
            {"Sid": "a-b", "Effect": "Allow", "Action": "s3:*", "Resource": "*"},
            "must be alpha-numeric",
        ),
        (
            {"Effect": "Allow", "Action": 5, "Resource": "*"},
            "Action must be a string or a list of strings",
        ),
    ],
)
def test_statement_grammar_errors_say_where_and_what(
    statement: dict[str, Any], expected: str
) -> None:
    err = malformed({"Version": "2012-10-17", "Statement": [statement]})
    assert expected in err.message and err.message.startswith("Statement[0]")


@pytest.mark.parametrize(
    ("condition_block", "expected"),
    [
        (
            {"StringEqual": {"aws:x": "a"}},
            "unknown condition operator 'StringEqual'; did you mean 'StringEquals'?",
        ),
        ({"ForSomeValues:StringEquals": {"aws:x": "a"}}, "unknown set operator 'ForSomeValues'"),
        ({"NullIfExists": {"aws:x": "true"}}, "Null takes neither IfExists nor a set operator"),
        ({"StringEquals": {"aws:x": {"nested": "object"}}}, "must be a string, number, boolean"),
        ({"StringEquals": {"aws:x": None}}, "must be a string, number, boolean"),
        ({"StringEquals": {"aws:x": []}}, "must be a string, number, boolean"),
        ({"NumericLessThan": {"aws:x": "ten"}}, "'ten' is not a valid numeric value"),
        ({"DateLessThan": {"aws:x": "yesterday"}}, "'yesterday' is not a valid date value"),
        ({"Bool": {"aws:x": "yes"}}, "'yes' is not a valid bool value"),
        ({"StringEquals": {"nocolon": "a"}}, "must be prefaced by a vendor"),
        ({"StringEquals": "aws:x"}, "must map condition keys to values"),
    ],
)
def test_condition_grammar_errors_say_where_and_what(
    condition_block: dict[str, Any], expected: str
) -> None:
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": condition_block}
        ],
    }
    err = malformed(doc)
    assert expected in err.message and err.message.startswith("Statement[0].Condition")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ({"Version": "2012-10-18", "Statement": []}, 'Version must be "2012-10-17"'),
        ({"Version": "2012-10-17"}, "Missing required field Statement"),
        ({"Version": "2012-10-17", "Statement": [], "Statment": []}, "unknown field 'Statment'"),
        ({"Version": "2012-10-17", "Statement": []}, "Statement is an empty list"),
        ([], "the document must be a JSON object"),
    ],
)
def test_document_grammar_errors_say_what(document: Any, expected: str) -> None:
    err = malformed(json.dumps(document))
    assert expected in err.message
    assert err.message.startswith("Policy: ")
    assert err.detail["aws_message"] in (
        "Syntax errors in policy.",
        "Missing required field Statement",
    )


def test_duplicate_sids_are_refused() -> None:
    stmt = {"Sid": "Same", "Effect": "Allow", "Action": "s3:*", "Resource": "*"}
    assert (
        "must be unique" in malformed({"Version": "2012-10-17", "Statement": [stmt, stmt]}).message
    )


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        ({"AWS": "bob"}, 'Invalid principal in policy: "AWS":"bob"'),
        (
            {"Federated": "oidc.eks.eu-west-1.amazonaws.com/id/X"},
            'Invalid principal in policy: "Federated":"oidc.eks',
        ),
        ({"Federeated": PROVIDER_ARN}, 'Invalid principal in policy: "Federeated"'),
        ({"Federated": []}, 'Invalid principal in policy: "Federated":[]'),
    ],
)
def test_invalid_principals_use_iams_text(principal: dict[str, Any], expected: str) -> None:
    doc = trust_policy()
    doc["Statement"][0]["Principal"] = principal
    assert expected in malformed(doc, "trust").message


def test_nan_is_not_json() -> None:
    assert (
        "invalid Json"
        in malformed('{"Version": "2012-10-17", "Statement": {"Effect": NaN}}').message
    )


def test_evaluate_refuses_a_malformed_document() -> None:
    with pytest.raises(AwsError) as info:
        assume({"Statement": {"Effect": "Allow", "Action": ASSUME}})
    assert info.value.message == "Statement[0]: Missing required field Principal"


def test_a_version_less_legacy_policy_still_parses() -> None:
    doc = {"Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}
    assert parse_policy(doc).version is None
