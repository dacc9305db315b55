"""Label selectors: one meaning for the structured and the string spellings."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from irsa_lab.kube.label_selectors import OPERATORS, requirement_matches, selector_matches
from irsa_lab.kube.store import labels_match, parse_label_selector

KEYS = st.sampled_from(["app", "tier", "env"])
VALUES = st.sampled_from(["a", "b", "c"])
LABELS = st.dictionaries(KEYS, VALUES, max_size=3)
SPELLINGS = {
    "In": ["=", "==", "in"],
    "NotIn": ["!=", "notin"],
    "Exists": ["exists"],
    "DoesNotExist": ["!"],
}


def test_every_string_operator_means_a_structured_one() -> None:
    for structured, strings in SPELLINGS.items():
        assert OPERATORS[structured] == structured
        assert all(OPERATORS[s] == structured for s in strings)
    assert len(OPERATORS) == 4 + sum(len(v) for v in SPELLINGS.values())


def test_not_in_and_does_not_exist_hold_for_labels_without_the_key() -> None:
    assert requirement_matches({}, "app", "NotIn", ["a"])
    assert requirement_matches({}, "app", "DoesNotExist")
    assert not requirement_matches({}, "app", "In", ["a"])
    assert not requirement_matches({}, "app", "Exists")
    assert requirement_matches({"app": "a"}, "app", "In", ["a", "b"])
    assert not requirement_matches({"app": "a"}, "app", "NotIn", ["a"])


def test_an_empty_or_missing_selector_matches_everything() -> None:
    assert selector_matches(None, {"app": "a"}) and selector_matches({}, {})


def test_match_labels_and_expressions_must_all_hold() -> None:
    sel = {
        "matchLabels": {"app": "a"},
        "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}],
    }
    assert selector_matches(sel, {"app": "a", "tier": "web"})
    assert not selector_matches(sel, {"app": "a", "tier": "db"})
    assert not selector_matches(sel, {"app": "b"})


@given(labels=LABELS, key=KEYS, values=st.frozensets(VALUES, min_size=1, max_size=2))
def test_both_spellings_agree_with_each_other(
    labels: dict[str, str], key: str, values: frozenset[str]
) -> None:
    for structured, strings in SPELLINGS.items():
        want = requirement_matches(labels, key, structured, values)
        assert all(requirement_matches(labels, key, s, values) == want for s in strings)


@given(labels=LABELS, key=KEYS, values=st.lists(VALUES, min_size=1, max_size=2, unique=True))
def test_a_list_selector_and_a_webhook_selector_agree(
    labels: dict[str, str], key: str, values: list[str]
) -> None:
    # The API server's ?labelSelector= and a webhook's objectSelector, said both ways.
    joined = ",".join(values)
    for text, expr in (
        (f"{key} in ({joined})", {"key": key, "operator": "In", "values": values}),
        (f"{key} notin ({joined})", {"key": key, "operator": "NotIn", "values": values}),
        (key, {"key": key, "operator": "Exists"}),
        (f"!{key}", {"key": key, "operator": "DoesNotExist"}),
    ):
        listed = labels_match(parse_label_selector(text), labels)
        assert listed == selector_matches({"matchExpressions": [expr]}, labels), text
