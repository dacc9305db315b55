"""The evaluation of a request against policies: conditions, matching, the decision.

docs/reference/sts.md §2.3. :func:`evaluate` applies the documented evaluation logic: an
explicit ``Deny`` wins, otherwise one ``Allow`` is needed, otherwise the request is
implicitly denied. It returns a :class:`~.explanation.Decision` that records, for every
statement and every condition, what was compared with what and why it passed or failed.

Choices where AWS leaves room (each repeated in the explanation when it matters):

- A single-valued operator (no ``ForAnyValue:``/``ForAllValues:``) against a request key
  that holds several values passes, for a positive operator, when any value matches; for
  a negated operator (``StringNotEquals``, ``ArnNotLike``, ...) when no value matches.
- Policy variables (``${aws:username}``) are replaced as :mod:`.variables` describes, in
  ``Resource``/``NotResource`` and in string and ARN condition values of ``2012-10-17``
  documents; the explanation says what each became.
- In an identity policy a request without a resource stands for ``*``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .explanation import (
    ConditionResult,
    Decision,
    StatementResult,
    caller_text,
    condition_hints,
    phrase,
    principal_text,
    sentence,
    show,
)
from .grammar import (
    ACCOUNT_ID_PATTERN,
    ConditionEntry,
    Policy,
    PolicyKind,
    Principal,
    Statement,
    parse_policy,
)
from .operators import OPERATORS, TESTS, compile_value, glob
from .request import RequestContext, account_of, request_values
from .variables import VARIABLE_VERSION, has_variables, plain_text, substitute

__all__ = ["evaluate"]


# --- action, resource, principal -------------------------------------------------------


def _action_matches(patterns: tuple[str, ...], action: str) -> bool:
    return any(glob(p, True).fullmatch(action) is not None for p in patterns)


def _resource_matches(
    patterns: tuple[str, ...],
    resource: str,
    keys: Mapping[str, list[str]] | None = None,
    notes: list[str] | None = None,
) -> bool:
    """Whether a pattern covers ``resource``; with ``keys``, policy variables are replaced
    first, and a pattern whose variable has no value covers nothing."""
    for p in patterns:
        if keys is not None and has_variables(p):
            sub = substitute(p, keys)
            if notes is not None:
                notes.extend(sub.notes)
            if sub.text is None:
                continue
            p = sub.text
        if glob(p).fullmatch(resource) is not None:
            return True
    return False


def _principal_matches(spec: Principal, caller: Mapping[str, list[str]]) -> bool:
    if isinstance(spec, str):  # "*": everyone
        return True
    for ptype, want in spec:
        have = caller.get(ptype, [])
        if not have:
            continue
        if want == "*" or want in have:
            return True
        # An account (id or :root ARN) stands for every principal of that account.
        if ptype == "AWS":
            account = want if ACCOUNT_ID_PATTERN.fullmatch(want) else None
            if want.endswith(":root"):
                account = account_of(want)
            if account is not None and any(account_of(h) == account for h in have):
                return True
    return False


# --- conditions ------------------------------------------------------------------------


def _lookup(key: str, keys: Mapping[str, list[str]]) -> list[str] | None:
    found = keys.get(key.lower())
    return found if found else None  # an empty list counts as absent, as in IAM


def _condition_values(
    c: ConditionEntry, keys: Mapping[str, list[str]], variables: bool
) -> tuple[list[str], list[Any], list[str]]:
    """(values, compiled values, notes) of a condition, its policy variables replaced.

    Variables are read only in ``2012-10-17`` documents and only under string and ARN
    operators, as IAM documents; a value whose variable has no value is dropped, so it
    matches nothing.
    """
    op = OPERATORS[c.base]
    written = [v for v in c.values if has_variables(v)]
    if not written or op.family not in ("String", "Arn"):
        return list(c.values), list(c.compiled), []
    if not variables:
        shown = ", ".join(f"'{v}'" for v in written)
        note = f"the policy's Version is not {VARIABLE_VERSION}, so {shown} was compared as written"
        return list(c.values), list(c.compiled), [note]
    values: list[str] = []
    compiled: list[Any] = []
    notes: list[str] = []
    for text, ready in zip(c.values, c.compiled, strict=True):
        if not has_variables(text):
            values.append(text)
            compiled.append(ready)
            continue
        sub = substitute(text, keys)
        notes.extend(sub.notes)
        if sub.text is not None:
            values.append(plain_text(sub.text))
            compiled.append(compile_value(op, sub.text))
    return values, compiled, notes


def _evaluate_condition(
    c: ConditionEntry,
    keys: Mapping[str, list[str]],
    original: Mapping[str, Any],
    variables: bool = False,
) -> ConditionResult:
    op = OPERATORS[c.base]
    actual = _lookup(c.key, keys)
    expected, compiled, substituted = _condition_values(c, keys, variables)

    def result(passed: bool, note: str, extra: Sequence[str] = ()) -> ConditionResult:
        hints = condition_hints(c, actual, original, passed)
        return ConditionResult(
            c.operator,
            c.key,
            expected,
            actual,
            passed,
            sentence(note, [*extra, *substituted, *hints]),
        )

    if c.base == "Null":
        absent = actual is None
        passed = any((v == "true") == absent for v in c.values)
        if absent:
            tail = ", as Null true asks" if passed else ", but Null false asks for it to be present"
            return result(passed, "key not present in request" + tail)
        tail = ", as Null false asks" if passed else ", but Null true asks for it to be absent"
        return result(passed, "the key is present in the request" + tail)

    if actual is None:
        if c.if_exists:
            return result(
                True, f"key not present in request; {c.operator} passes when the key is missing"
            )
        if c.qualifier == "ForAllValues":
            return result(
                True,
                "key not present in request; ForAllValues passes when the key is missing "
                "(a known pitfall: add a Null check when the key must be there)",
            )
        if c.qualifier == "ForAnyValue":
            return result(False, "key not present in request; ForAnyValue needs at least one value")
        if op.negated:
            return result(
                True,
                f"key not present in request; a negated operator ({c.base}) passes when the key is missing",
            )
        return result(False, "key not present in request")

    test = TESTS[op.positive]

    def first_hit(value: str) -> str | None:
        """The first policy value that this request value matches under the positive test."""
        for text, ready in zip(expected, compiled, strict=True):
            if test(value, ready):
                return text
        return None

    hits = [(a, first_hit(a)) for a in actual]

    def describe(value: str, hit: str | None) -> str:
        return (
            f"'{value}' {op.verb} '{hit}'"
            if hit is not None
            else f"'{value}' {op.unverb} {phrase(expected)}"
        )

    def satisfies(hit: str | None) -> bool:
        return (hit is None) if op.negated else (hit is not None)

    good = [(a, h) for a, h in hits if satisfies(h)]
    bad = [(a, h) for a, h in hits if not satisfies(h)]
    every = "; ".join(describe(a, h) for a, h in hits)
    if c.qualifier == "ForAllValues":
        if not bad:
            return result(True, f"every request value satisfies {c.base}: {every}")
        return result(
            False, f"{describe(*bad[0])}, and ForAllValues needs every value to satisfy {c.base}"
        )
    if c.qualifier == "ForAnyValue":
        if good:
            return result(
                True,
                f"{describe(*good[0])}, and ForAnyValue needs only one value to satisfy {c.base}",
            )
        return result(False, f"no request value satisfies {c.base}: {every}")

    # A single-valued operator; with several request values, positive operators pass
    # when any value matches and negated ones when none does (see the module docstring).
    many = []
    if len(actual) > 1:
        rule = "none of them matches" if op.negated else "any of them matches"
        many = [
            f"the key holds {len(actual)} values and {c.base} without ForAnyValue:/ForAllValues: "
            f"passes here when {rule}"
        ]
    if op.negated:
        if not bad:
            return result(True, f"{every}, so {c.base} passes", many)
        return result(False, f"{describe(*bad[0])}, so {c.base} fails", many)
    if good:
        return result(True, describe(*good[0]), many)
    return result(False, every, many)


# --- statements and the decision ------------------------------------------------------


def _statement_result(
    label: str,
    st: Statement,
    kind: PolicyKind,
    ctx: RequestContext,
    caller: Mapping[str, list[str]],
    keys: Mapping[str, list[str]],
    variables: bool = False,
) -> StatementResult:
    reasons: list[str] = []
    if st.actions is not None:
        action_ok = _action_matches(st.actions, ctx.action)
        if not action_ok:
            reasons.append(f"Action {show(list(st.actions))} does not cover {ctx.action}")
    else:
        action_ok = not _action_matches(st.not_actions or (), ctx.action)
        if not action_ok:
            reasons.append(f"NotAction excludes {ctx.action}")

    if kind == "trust":
        resource_ok = True  # the role itself
    else:
        resource = ctx.resource if ctx.resource is not None else "*"
        lookup = keys if variables else None
        notes: list[str] = []
        if st.resources is not None:
            resource_ok = _resource_matches(st.resources, resource, lookup, notes)
            if not resource_ok:
                reasons.append(f"Resource {show(list(st.resources))} does not cover {resource}")
        else:
            resource_ok = not _resource_matches(st.not_resources or (), resource, lookup, notes)
            if not resource_ok:
                reasons.append(f"NotResource excludes {resource}")
        if notes and not resource_ok:
            reasons.append("policy variables: " + "; ".join(notes))

    if kind == "identity":
        principal_ok = True  # the policy is attached to the caller
    elif st.principal is not None:
        principal_ok = _principal_matches(st.principal, caller)
        if not principal_ok:
            reasons.append(
                f"Principal {principal_text(st.principal)} does not name the caller ({caller_text(caller)})"
            )
    else:
        principal_ok = not _principal_matches(st.not_principal or "*", caller)
        if not principal_ok:
            reasons.append(f"NotPrincipal names the caller ({caller_text(caller)})")

    conditions = [_evaluate_condition(c, keys, ctx.keys, variables) for c in st.conditions]
    failed = [c for c in conditions if not c.passed]
    for c in failed:
        reasons.append(f"condition {c.operator} on {c.key} failed")
    applies = action_ok and resource_ok and principal_ok and not failed
    if applies:
        verb = "allows" if st.effect == "Allow" else "explicitly denies"
        note = f"applies: it {verb} the request"
    else:
        note = "does not apply: " + "; ".join(reasons)
    return StatementResult(
        label,
        st.index,
        st.sid,
        st.effect,
        action_ok,
        resource_ok,
        principal_ok,
        conditions,
        applies,
        note,
    )


def evaluate(
    policies: Sequence[tuple[str, str | Mapping[str, Any] | Policy]],
    ctx: RequestContext,
    *,
    kind: PolicyKind | None = None,
) -> Decision:
    """Decide a request against labelled policies and keep the reasons.

    Documents given as text or objects are parsed (and cached) as trust policies when
    ``ctx.resource`` is None, else as identity policies, unless ``kind`` says otherwise;
    a malformed one raises ``MalformedPolicyDocument``. An explicit Deny in any statement
    wins; otherwise one applying Allow is needed; otherwise the request is implicitly denied.
    """
    default_kind: PolicyKind = kind or ("trust" if ctx.resource is None else "identity")
    caller = {ptype: request_values(ids) for ptype, ids in ctx.principal.items()}
    keys = {k.lower(): request_values(v) for k, v in ctx.keys.items()}
    results: list[StatementResult] = []
    for label, document in policies:
        policy = (
            document if isinstance(document, Policy) else parse_policy(document, kind=default_kind)
        )
        variables = policy.version == VARIABLE_VERSION
        for st in policy.statements:
            results.append(_statement_result(label, st, policy.kind, ctx, caller, keys, variables))
    if any(r.applies and r.effect == "Deny" for r in results):
        return Decision(False, "ExplicitDeny", results, ctx)
    if any(r.applies and r.effect == "Allow" for r in results):
        return Decision(True, "Allow", results, ctx)
    return Decision(False, "ImplicitDeny", results, ctx)
