"""A role session's request judged by every policy type it carries: identity, then session.

docs/reference/sts.md §6.1 (IAM User Guide, "Policy evaluation logic" and "Session
policies"): a session's permissions are the intersection of its role's identity-based
policies and the session policies passed to STS (the inline ``Policy`` and the documents
of ``PolicyArns``). So a request is allowed only when both allow it; an explicit ``Deny``
in either denies it; a session created without session policies is judged by its
identity policies alone.

:func:`authorize` returns an :class:`Authorization` holding one
:class:`~.explanation.Decision` per policy type. Its :meth:`Authorization.denial` is the
end of AWS's ``AccessDenied`` text, which names the one policy type that refused
("... because no session policy allows the s3:ListBucket action", "... with an explicit
deny in an identity-based policy"): the IAM "Troubleshoot access denied error messages"
page says AWS names only one type when several refuse. Which one is not documented;
the lab names them in the order of the evaluation flowchart (explicit denies first,
then identity-based before session policies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .evaluation import evaluate
from .explanation import Decision
from .grammar import Policy
from .request import RequestContext

__all__ = ["Authorization", "PolicyType", "authorize"]

PolicyType = Literal["identity-based", "session"]
"""The policy types a lab session carries, spelled as AWS's denial messages spell them."""

Documents = Sequence[tuple[str, str | Mapping[str, Any] | Policy]]


@dataclass(frozen=True)
class Authorization:
    """The verdict on one request across policy types, and which type decided it."""

    allowed: bool
    reason: Literal["Allow", "ExplicitDeny", "ImplicitDeny"]
    policy_type: PolicyType | None  # the type that refused; None when allowed
    identity: Decision
    session: Decision | None  # None: the session carries no session policy

    @property
    def decisions(self) -> list[tuple[PolicyType, Decision]]:
        """Every policy type that was evaluated, with its decision."""
        out: list[tuple[PolicyType, Decision]] = [("identity-based", self.identity)]
        if self.session is not None:
            out.append(("session", self.session))
        return out

    def denial(self, action: str) -> str:
        """The end of AWS's AccessDenied message: ``because no <type> policy allows ...``."""
        if self.policy_type is None:
            return ""
        if self.reason == "ExplicitDeny":
            article = "an" if self.policy_type == "identity-based" else "a"
            return f"with an explicit deny in {article} {self.policy_type} policy"
        return f"because no {self.policy_type} policy allows the {action} action"

    def verdict(self) -> str:
        """The evaluator's verdict; with session policies, one per policy type and the outcome."""
        if self.session is None:
            return self.identity.verdict()
        parts = [f"{kind} policies: {d.verdict()}" for kind, d in self.decisions]
        if self.allowed:
            parts.append(
                "Allowed: the identity-based and the session policies both allow it "
                "(a session's permissions are their intersection)."
            )
        else:
            parts.append(f"Denied by the {self.policy_type} policies.")
        return " ".join(parts)

    def explain(self) -> str:
        """The evaluator's report for each policy type, one after the other."""
        if self.session is None:
            return self.identity.explain()
        blocks = []
        for kind, decision in self.decisions:
            blocks.append(f"== {kind} policies ==\n{decision.explain()}")
        outcome = "allowed" if self.allowed else f"denied by the {self.policy_type} policies"
        blocks.append(
            "A session's permissions are the intersection of its role's identity-based "
            f"policies and its session policies: {outcome}."
        )
        return "\n".join(blocks)


def authorize(
    identity: Documents,
    session: Documents | None,
    ctx: RequestContext,
) -> Authorization:
    """Judge ``ctx`` by the identity policies and, when given, the session policies."""
    ident = evaluate(identity, ctx, kind="identity")
    sess = evaluate(session, ctx, kind="identity") if session is not None else None
    if ident.reason == "ExplicitDeny":
        return Authorization(False, "ExplicitDeny", "identity-based", ident, sess)
    if sess is not None and sess.reason == "ExplicitDeny":
        return Authorization(False, "ExplicitDeny", "session", ident, sess)
    if not ident.allowed:
        return Authorization(False, "ImplicitDeny", "identity-based", ident, sess)
    if sess is not None and not sess.allowed:
        return Authorization(False, "ImplicitDeny", "session", ident, sess)
    return Authorization(True, "Allow", None, ident, sess)
