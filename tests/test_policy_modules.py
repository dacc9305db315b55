"""The policy package: grammar, operators, request, evaluation and explanation, one idea each."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

import irsa_lab.aws.policy as policy
from irsa_lab.aws.errors import AwsError
from irsa_lab.aws.policy.grammar import DOCUMENT_CHARS, scalar_text
from irsa_lab.aws.policy.operators import OPERATORS, TESTS, compile_value
from irsa_lab.aws.policy.request import account_of, request_values

MODULES = (
    "grammar",
    "operators",
    "request",
    "evaluation",
    "explanation",
    "variables",
    "authorization",
)


def test_the_package_re_exports_its_public_names_from_the_modules_that_define_them() -> None:
    assert sorted(policy.__all__) == sorted(
        [
            "Authorization",
            "ConditionEntry",
            "ConditionResult",
            "Decision",
            "Policy",
            "PolicyKind",
            "RequestContext",
            "Statement",
            "StatementResult",
            "authorize",
            "evaluate",
            "global_keys",
            "oidc_trust_context",
            "parse_policy",
        ]
    )
    for name in policy.__all__:
        assert hasattr(policy, name), name


@pytest.mark.parametrize("name", MODULES)
def test_every_policy_module_lists_its_names_and_stays_small(name: str) -> None:
    module = importlib.import_module(f"irsa_lab.aws.policy.{name}")
    assert module.__all__ and all(hasattr(module, n) for n in module.__all__)
    assert len(Path(module.__file__ or "").read_text().splitlines()) < 700


def test_every_positive_operator_has_a_test_and_negations_reuse_it() -> None:
    for name, op in OPERATORS.items():
        if op.family == "Null":
            assert op.positive not in TESTS
            continue
        assert op.positive in TESTS, name
        assert OPERATORS[op.positive].negated is False


def test_a_value_the_operator_cannot_read_compiles_to_none() -> None:
    assert compile_value(OPERATORS["NumericLessThan"], "ten") is None
    assert compile_value(OPERATORS["DateLessThan"], "soon") is None
    assert compile_value(OPERATORS["Bool"], "yes") is None
    assert compile_value(OPERATORS["NumericLessThan"], "10") == 10.0


def test_json_scalars_read_as_iam_compares_them() -> None:
    assert [scalar_text(v) for v in (True, False, 5, 1.5, "x")] == [
        "true",
        "false",
        "5",
        "1.5",
        "x",
    ]
    assert scalar_text(None) is None and scalar_text([1]) is None
    assert request_values(["a", 1, True]) == ["a", "1", "true"]
    assert request_values("a,b") == ["a,b"]


def test_an_account_is_read_from_an_id_or_an_arn_only() -> None:
    assert account_of("111122223333") == "111122223333"
    assert account_of("arn:aws:iam::111122223333:root") == "111122223333"
    assert account_of("arn:aws:s3:::bucket") == ""
    assert account_of("not:an:arn:at:all:x") is None
    assert account_of("arn:aws:iam::111122223333") is None


def test_a_field_the_grammar_does_not_know_is_named_at_both_levels() -> None:
    with pytest.raises(AwsError) as top:
        policy.parse_policy({"Version": "2012-10-17", "Statement": [], "Extra": 1})
    assert "unknown field 'Extra'; a policy may hold Version, Id, Statement" in top.value.message
    statement = {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Bogus": 1}
    with pytest.raises(AwsError) as inner:
        policy.parse_policy({"Version": "2012-10-17", "Statement": [statement]})
    assert inner.value.message.startswith("Statement[0]: Syntax errors in policy.")
    assert "unknown field 'Bogus'; a statement may hold Sid, Effect" in inner.value.message


@pytest.mark.parametrize(
    ("kind", "field", "expected"),
    [
        ("trust", "Resource", "Has prohibited field Resource"),
        ("trust", "NotResource", "Has prohibited field NotResource"),
        ("identity", "Principal", "Has prohibited field Principal"),
        ("identity", "NotPrincipal", "Has prohibited field NotPrincipal"),
    ],
)
def test_an_element_this_kind_of_policy_may_not_name_is_prohibited(
    kind: str, field: str, expected: str
) -> None:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Action": "sts:AssumeRoleWithWebIdentity",
        field: "*",
    }
    if kind == "trust":
        statement["Principal"] = {"Federated": "accounts.google.com"}
    else:
        statement.setdefault("Resource", "*")
    with pytest.raises(AwsError) as err:
        policy.parse_policy({"Statement": [statement]}, kind=kind)  # type: ignore[arg-type]
    assert err.value.message == f"Statement[0]: {expected}"


def test_a_policy_document_may_hold_latin_1_but_no_other_control_character() -> None:
    assert DOCUMENT_CHARS.fullmatch('{"a": "caf\u00e9"}\n')
    assert not DOCUMENT_CHARS.fullmatch('{"a": "\u0001"}')
    assert not DOCUMENT_CHARS.fullmatch('{"a": "\u20ac"}')
