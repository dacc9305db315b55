"""The explanation of a policy decision: the rows and the "why" texts the playground shows.

:func:`.evaluation.evaluate` returns a :class:`Decision`: for every statement a
:class:`StatementResult`, for every condition a :class:`ConditionResult` that records
what the policy expected, what the request held and, in ``note``, why it passed or failed.
This module holds those records and the words they are written with: how values are
shown, the one-sentence verdict, the plain-text report of :meth:`Decision.explain`, and
the hints that point at the usual mistakes of an IRSA trust policy
(docs/reference/sts.md §2.3 and §2.4): a ``*`` under ``StringEquals``, a case-only
difference, the namespace or the name half of a ServiceAccount ``sub``, a condition key
written with ``https://``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .grammar import ConditionEntry, Principal
from .operators import LITERAL_STAR_OPERATORS
from .request import RequestContext, request_values

__all__ = [
    "ConditionResult",
    "Decision",
    "StatementResult",
    "caller_text",
    "condition_hints",
    "phrase",
    "principal_text",
    "sentence",
    "show",
]


@dataclass(frozen=True)
class ConditionResult:
    """How one condition key fared: what the policy expected, what the request held, why."""

    operator: str
    key: str
    expected: list[str]
    actual: list[str] | None  # None: the key is absent from the request
    passed: bool
    note: str


@dataclass(frozen=True)
class StatementResult:
    """How one statement fared against the request."""

    policy: str
    index: int
    sid: str | None
    effect: str
    action_matched: bool
    resource_matched: bool
    principal_matched: bool
    conditions: list[ConditionResult]
    applies: bool
    note: str

    @property
    def where(self) -> str:
        """``<policy label> Statement[i]`` plus the Sid when there is one."""
        sid = f" (Sid {self.sid!r})" if self.sid else ""
        return f"{self.policy} Statement[{self.index}]{sid}"

    @property
    def targets_request(self) -> bool:
        """True when action, resource and principal match: only conditions can stop it."""
        return self.action_matched and self.resource_matched and self.principal_matched


@dataclass(frozen=True)
class Decision:
    """The verdict on a request, with the trail of every statement and condition."""

    allowed: bool
    reason: Literal["Allow", "ExplicitDeny", "ImplicitDeny"]
    statements: list[StatementResult]
    request: RequestContext | None = None

    def failed_conditions(self) -> list[ConditionResult]:
        """Conditions that failed in statements that otherwise target this request."""
        return [
            c for s in self.statements if s.targets_request for c in s.conditions if not c.passed
        ]

    def deciding_statements(self) -> list[StatementResult]:
        """The statements that decided: the applying Denies, else the applying Allows."""
        effect = "Deny" if self.reason == "ExplicitDeny" else "Allow"
        return [s for s in self.statements if s.applies and s.effect == effect]

    def verdict(self) -> str:
        """One sentence: the decision and the statement behind it."""
        action = self.request.action if self.request else "the action"
        deciding = self.deciding_statements()
        if self.reason == "ExplicitDeny":
            return (
                f"ExplicitDeny: {deciding[0].where} denies {action}; "
                "an explicit Deny overrides every Allow."
            )
        if self.reason == "Allow":
            return f"Allow: {deciding[0].where} allows {action} and no statement denies it."
        near = [s for s in self.statements if s.effect == "Allow" and s.targets_request]
        why = " (an Allow statement matched but a condition failed)" if near else ""
        return f"ImplicitDeny: no statement allows {action}{why}, so it is denied by default."

    def explain(self) -> str:
        """Plain text, one block per statement and per condition, then the verdict."""
        lines: list[str] = []
        if self.request is not None:
            lines.extend(_describe_request(self.request))
        if not self.statements:
            lines.append("No policy statements were given.")
        for s in self.statements:
            state = "applies" if s.applies else "does not apply"
            lines.append(f"{s.where}: {s.effect}, {state}")
            lines.append(f"  action     {_yes(s.action_matched)}")
            if self.request is None or self.request.resource is not None:
                lines.append(f"  resource   {_yes(s.resource_matched)}")
            lines.append(f"  principal  {_yes(s.principal_matched)}")
            for c in s.conditions:
                lines.append(f"  condition  {c.operator} {c.key}")
                lines.append(f"    expected: {show(c.expected)}")
                lines.append(f"    actual:   {show(c.actual)}")
                lines.append(f"    result:   {'passed' if c.passed else 'FAILED'}: {c.note}")
            lines.append(f"  => {s.note}")
        lines.append(f"Verdict: {self.verdict()}")
        return "\n".join(lines)


# --- the words ---------------------------------------------------------------------------


def _yes(flag: bool) -> str:
    return "matched" if flag else "NOT matched"


def show(values: Sequence[str] | None) -> str:
    """Values quoted and joined; None (the key is absent) and [] said in words."""
    if values is None:
        return "(key not present in request)"
    if not values:
        return "(empty)"
    return ", ".join(f"'{v}'" for v in values)


def _describe_request(ctx: RequestContext) -> list[str]:
    lines = [f"Request: {ctx.action}"]
    lines.append(f"  resource: {ctx.resource if ctx.resource is not None else '(the role itself)'}")
    for ptype, ids in ctx.principal.items():
        lines.append(f"  principal {ptype}: {show(request_values(ids))}")
    for key, value in ctx.keys.items():
        lines.append(f"  key {key} = {show(request_values(value))}")
    return lines


def phrase(values: Sequence[str]) -> str:
    """``'a'`` for one policy value, ``any of 'a', 'b'`` for several."""
    if not values:  # every value held a policy variable with no value in the request
        return "any policy value (none is left to compare)"
    return f"'{values[0]}'" if len(values) == 1 else "any of " + show(values)


def sentence(note: str, hints: list[str]) -> str:
    """A condition's note and its hints, as one sentence."""
    return "; ".join([note, *hints]) + "."


# --- hints at the usual mistakes --------------------------------------------------------


def condition_hints(
    c: ConditionEntry, actual: list[str] | None, original: Mapping[str, Any], passed: bool
) -> list[str]:
    """Readable pointers at the usual mistakes, added to a condition's note."""
    hints: list[str] = []
    if c.base in LITERAL_STAR_OPERATORS or c.base in (
        "StringNotEquals",
        "StringNotEqualsIgnoreCase",
    ):
        if any("*" in v or "?" in v for v in c.values):
            like = "StringNotLike" if "Not" in c.base else "StringLike"
            hints.append(f"'*' is literal under {c.base}; use {like} for wildcards")
    if c.base == "StringEquals" and actual is not None and not passed:
        folded = {v.casefold() for v in c.values}
        if any(a.casefold() in folded for a in actual) and not any(a in c.values for a in actual):
            hints.append(
                "values are case-sensitive and differ only in case (StringEqualsIgnoreCase ignores case)"
            )
    if (
        not passed
        and c.key.lower().endswith(":sub")
        and actual is not None
        and not any(a in c.values for a in actual)
    ):
        hints.extend(_service_account_hint(c.values, actual))
    if actual is None:
        if c.key.lower().startswith(("https://", "http://")):
            bare = c.key.split("://", 1)[1]
            present = next((k for k in original if k.lower() == bare.lower()), None)
            where = f" (the request has '{present}')" if present else ""
            hints.append(
                f"condition keys of an OIDC provider are written without 'https://'{where}"
            )
        else:
            suffix = c.key.rsplit(":", 1)[-1].lower()
            similar = [
                k
                for k in original
                if k.rsplit(":", 1)[-1].lower() == suffix and k.lower() != c.key.lower()
            ]
            if similar:
                hints.append(f"the request has '{similar[0]}': check the provider part of the key")
    return hints


_SA_SUB = re.compile(r"system:serviceaccount:([^:]*):([^:]*)")


def _service_account_hint(expected: Sequence[str], actual: Sequence[str]) -> list[str]:
    """Say which half of a ``system:serviceaccount:<namespace>:<name>`` subject differs."""
    got = _SA_SUB.fullmatch(actual[0])
    want = _SA_SUB.fullmatch(expected[0])
    if got is None or want is None or "*" in expected[0] or "?" in expected[0]:
        return []
    parts = []
    if got[1] != want[1]:
        parts.append(f"the namespace differs ('{got[1]}' in the token, '{want[1]}' in the policy)")
    if got[2] != want[2]:
        parts.append(
            f"the service account name differs ('{got[2]}' in the token, '{want[2]}' in the policy)"
        )
    return parts


def principal_text(spec: Principal) -> str:
    """A parsed Principal as the explanation shows it: ``Federated arn:...``."""
    if isinstance(spec, str):
        return spec
    return ", ".join(f"{t} {v}" for t, v in spec)


def caller_text(caller: Mapping[str, list[str]]) -> str:
    """Every identity the caller has, as the explanation shows them."""
    shown = ", ".join(f"{t} {v}" for t, vs in caller.items() for v in vs)
    return shown or "no principal"
