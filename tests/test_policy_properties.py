"""Property tests of the policy evaluator: it refuses only with AwsError, and its logic holds."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from irsa_lab.aws.errors import AwsError
from irsa_lab.aws.policy import RequestContext, evaluate, parse_policy

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)

# Pieces that look like policy grammar, so generated documents often get deep into the parser.
words = st.sampled_from(
    [
        "*",
        "s3:*",
        "s3:Get*",
        "sts:AssumeRoleWithWebIdentity",
        "arn:aws:s3:::b/*",
        "arn:aws:s3:::b",
        "a?c",
        "x",
    ]
)
operators = st.sampled_from(
    [
        "StringEquals",
        "StringNotEquals",
        "StringLike",
        "StringNotLike",
        "StringEqualsIgnoreCase",
        "ForAnyValue:StringLike",
        "ForAllValues:StringEquals",
        "StringEqualsIfExists",
        "Null",
        "Bool",
        "NumericLessThan",
        "DateGreaterThan",
        "ArnLike",
        "ArnNotEquals",
        "IpAddress",
        "BinaryEquals",
        "NumericEqualsIfExists",
        "Bogus",
    ]
)
keys = st.sampled_from(["aws:a", "aws:B", "svc:c", "nocolon"])
scalars = st.one_of(
    words, st.booleans(), st.integers(-5, 5), st.sampled_from(["true", "false", "1", "2024-01-01"])
)
condition_blocks = st.dictionaries(
    operators,
    st.dictionaries(keys, scalars | st.lists(scalars, max_size=3), max_size=2),
    max_size=2,
)
principals = st.one_of(
    st.just("*"),
    st.fixed_dictionaries(
        {"AWS": st.sampled_from(["*", "123456789012", "arn:aws:iam::123456789012:role/r", "bob"])}
    ),
    st.fixed_dictionaries(
        {
            "Federated": st.sampled_from(
                ["arn:aws:iam::123456789012:oidc-provider/o/id/A", "accounts.google.com", "x"]
            )
        }
    ),
)
statement_fields = {
    "Sid": st.sampled_from(["A1", "b", "with-dash"]),
    "Effect": st.sampled_from(["Allow", "Deny", "allow"]),
    "Action": words | st.lists(words, max_size=3),
    "NotAction": words,
    "Resource": words | st.lists(words, max_size=3),
    "NotResource": words,
    "Principal": principals,
    "NotPrincipal": principals,
    "Condition": condition_blocks,
}
statements = st.fixed_dictionaries({}, optional=statement_fields)
documents = st.fixed_dictionaries(
    {"Statement": st.lists(statements, min_size=0, max_size=3) | statements},
    optional={
        "Version": st.sampled_from(["2012-10-17", "2008-10-17", "2020-01-01"]),
        "Id": st.text(max_size=3),
    },
)
contexts = st.builds(
    RequestContext,
    action=st.sampled_from(
        ["s3:GetObject", "S3:getobject", "sts:AssumeRoleWithWebIdentity", "ec2:RunInstances"]
    ),
    resource=st.none() | st.sampled_from(["arn:aws:s3:::b", "arn:aws:s3:::b/k", "*"]),
    principal=st.dictionaries(
        st.sampled_from(["AWS", "Federated", "Service"]),
        st.lists(
            st.sampled_from(
                [
                    "arn:aws:iam::123456789012:role/r",
                    "arn:aws:iam::123456789012:oidc-provider/o/id/A",
                ]
            ),
            max_size=2,
        ),
        max_size=2,
    ),
    keys=st.dictionaries(
        keys, scalars.map(str) | st.lists(scalars.map(str), max_size=3), max_size=3
    ),
)


def parse_or_none(document: Any, kind: str) -> Any:
    try:
        return parse_policy(document, kind=kind)  # type: ignore[arg-type]
    except AwsError as err:
        assert err.code == "MalformedPolicyDocument" and err.status == 400
        assert err.message and err.detail["aws_message"] in err.message
        return None


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values, documents), st.sampled_from(["trust", "identity"]))
def test_parsing_any_json_raises_nothing_but_malformed_policy_document(
    document: Any, kind: str
) -> None:
    parse_or_none(document if isinstance(document, dict) else json.dumps(document), kind)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parsing_any_text_raises_nothing_but_malformed_policy_document(text: str) -> None:
    parse_or_none(text, "identity")


@settings(max_examples=300, deadline=None)
@given(documents, st.sampled_from(["trust", "identity"]), contexts)
def test_evaluating_a_parsed_policy_never_raises_and_explains_itself(
    document: Any, kind: str, ctx: RequestContext
) -> None:
    policy = parse_or_none(document, kind)
    if policy is None:
        return
    decision = evaluate([("p", policy)], ctx)
    assert decision.allowed is (decision.reason == "Allow")
    applying = {s.effect for s in decision.statements if s.applies}
    expected = (
        "ExplicitDeny" if "Deny" in applying else "Allow" if "Allow" in applying else "ImplicitDeny"
    )
    assert decision.reason == expected
    for s in decision.statements:
        assert s.applies is (s.targets_request and all(c.passed for c in s.conditions))
    assert decision.explain().splitlines()[-1].startswith(f"Verdict: {decision.reason}")


@settings(max_examples=200, deadline=None)
@given(documents, contexts)
def test_a_deny_everything_statement_always_denies(document: Any, ctx: RequestContext) -> None:
    policy = parse_or_none(document, "identity")
    if policy is None:
        return
    deny_all = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"},
    }
    decision = evaluate([("p", policy), ("deny all", deny_all)], ctx, kind="identity")
    assert not decision.allowed and decision.reason == "ExplicitDeny"


@settings(max_examples=200, deadline=None)
@given(contexts)
def test_an_allow_everything_statement_allows_whatever_the_request(ctx: RequestContext) -> None:
    allow_all = {
        "Version": "2012-10-17",
        "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"},
    }
    assert evaluate([("allow all", allow_all)], ctx, kind="identity").allowed


@settings(max_examples=200, deadline=None)
@given(
    contexts,
    st.sampled_from(["StringEquals", "StringLike", "NumericLessThan", "ArnLike", "Bool"]),
    keys,
    scalars,
)
def test_a_negated_operator_is_the_opposite_of_its_positive_form_on_a_single_value(
    ctx: RequestContext, operator: str, key: str, value: Any
) -> None:
    if ":" not in key:
        return
    negated = {
        "StringEquals": "StringNotEquals",
        "StringLike": "StringNotLike",
        "NumericLessThan": None,
        "ArnLike": "ArnNotLike",
        "Bool": None,
    }[operator]
    if negated is None:
        return

    def verdict(op: str) -> bool:
        doc = {
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
                "Condition": {op: {key: value}},
            },
        }
        policy = parse_or_none(doc, "identity")
        assert policy is not None
        return evaluate([("p", policy)], ctx, kind="identity").allowed

    present = [k for k in ctx.keys if k.lower() == key.lower()]
    if present and ctx.keys[present[-1]]:
        value_count = 1 if isinstance(ctx.keys[present[-1]], str) else len(ctx.keys[present[-1]])
        if value_count == 1:
            assert verdict(operator) is not verdict(negated)
    else:
        assert verdict(operator) is False and verdict(negated) is True
