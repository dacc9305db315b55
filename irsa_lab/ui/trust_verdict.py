"""STS's verdict on a trust policy and a token, as the playground shows it.

:func:`judge` is the pure core. The trust policy must parse first (else
``MalformedPolicyDocument``: IAM would refuse to save it, so STS never sees it); then
it runs the STS check pipeline (:class:`irsa_lab.aws.sts.Pipeline`, the code the STS
stand-in runs) on IAM's state as the playground holds it:

- given edited claims (the widget's fields), the steps that need no signed token:
  ``OIDC provider`` ("No OpenIDConnect provider found in your account for <iss>"),
  ``audience`` ("Incorrect token audience"), ``role`` and ``trust policy``
  (``AccessDenied``, 403, "Not authorized to perform sts:AssumeRoleWithWebIdentity",
  also when the token passes session tags or a source identity and the policy does not
  allow ``sts:TagSession`` or ``sts:SetSourceIdentity`` as well);
- given a signed token and the issuer's JWKS, every step from ``parse`` on, as STS.

The :class:`Verdict` carries STS's answer and one :class:`ConditionRow` per check that
the learner can read: the policy's Principal, Action and conditions, or the check
that refused the token.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..aws.arns import (
    WEB_IDENTITY_ACTION,
    arn_account,
    arn_partition,
    issuer_host_path,
    oidc_provider_arn,
)
from ..aws.errors import AwsError
from ..aws.policy import Decision, parse_policy
from ..aws.policy.grammar import wire_text
from ..aws.sts.checks import TOKEN_STEPS, IamView, Pipeline, keys_from_jwks
from ..aws.sts.errors import (
    InvalidAudience,
    NoOpenIDConnectProvider,
    StsError,
    TrustPolicyDenied,
)
from ..constants import ACCOUNT_ID, ROLE_ARN
from .text import (
    FAIL,
    OK,
    STYLE_FAIL,
    STYLE_OK,
    STYLE_WRAP,
    as_list,
    escape,
    html_table,
    status_word,
)

__all__ = [
    "CLAIM_STEPS",
    "ConditionRow",
    "Verdict",
    "judge",
    "provider_arn",
]


class ConditionRow(NamedTuple):
    """One check in the verdict table; ``actual`` is None when the request lacks the key."""

    key: str
    operator: str
    expected: list[str]
    actual: list[str] | None
    passed: bool
    note: str


@dataclass(frozen=True)
class Verdict:
    """What STS would answer, and why.

    ``code`` is None when allowed; ``step`` names the check that decided: ``policy
    syntax`` (IAM's), else a step of :data:`irsa_lab.aws.sts.STEPS`; ``failure`` is
    the exception STS raises (its class names the failure).
    """

    allowed: bool
    code: str | None
    message: str
    http_status: int
    rows: list[ConditionRow]
    explanation: str
    step: str = "trust policy"
    source: str = "playground"
    failure: StsError | None = None

    @property
    def failed_conditions(self) -> list[ConditionRow]:
        return [r for r in self.rows if not r.passed]

    @property
    def headline(self) -> str:
        if self.allowed:
            return f"{OK} ALLOWED: STS would return temporary credentials (HTTP 200)"
        return f"{FAIL} DENIED: {self.code} (HTTP {self.http_status}): {self.message}"

    def text(self) -> str:
        """The headline and one block per check, for a plain notebook cell."""
        lines = [self.headline]
        for r in self.rows:
            actual = "(absent from the request)" if r.actual is None else ", ".join(r.actual)
            lines.append(f"{status_word(r.passed):<10} {r.key}  [{r.operator}]")
            lines.append(f"{'':<10} expected: {', '.join(r.expected) or '(none)'}")
            lines.append(f"{'':<10} actual:   {actual}")
            if not r.passed:
                lines.append(f"{'':<10} why:      {r.note}")
        return "\n".join(lines)

    def html(self, *, compact: bool = False) -> str:
        """The headline, a table of every check, and the explanation folded away.

        The table fits its cell: the full form has one column per fact (result, key,
        operator, expected, actual, why) with fixed shares of the width; the
        ``compact`` form, for half a cell, has two (the check, then expected, actual
        and why one under the other).
        """
        banner_style = STYLE_OK if self.allowed else STYLE_FAIL
        styles = [STYLE_OK if r.passed else STYLE_FAIL for r in self.rows]
        caption = f"Checks ({self.source})"
        if compact:
            table = html_table(
                ("check", "expected / actual / why"),
                [(_check_text(r), _facts_text(r)) for r in self.rows],
                caption=caption,
                row_styles=styles,
                widths=COMPACT_WIDTHS,
            )
        else:
            table = html_table(
                ("result", "key", "operator", "expected", "actual", "why"),
                [
                    (
                        status_word(r.passed),
                        r.key,
                        r.operator,
                        r.expected,
                        _actual_text(r),
                        r.note,
                    )
                    for r in self.rows
                ],
                caption=caption,
                row_styles=styles,
                widths=TABLE_WIDTHS,
            )
        return (
            f'<div style="{banner_style}padding:4px 8px;font-weight:bold;{STYLE_WRAP}">'
            f"{escape(self.headline)}</div>"
            + table
            + f'<details><summary>explanation</summary><pre style="{STYLE_WRAP}">'
            f"{escape(self.explanation)}</pre></details>"
        )


# Shares of the cell's width: the long values (ARNs, condition keys, reasons) get most.
TABLE_WIDTHS = ("8%", "19%", "12%", "19%", "18%", "24%")
COMPACT_WIDTHS = ("38%", "62%")


def _actual_text(r: ConditionRow) -> str:
    if r.actual is None:
        return "(absent from the request)"
    return ", ".join(r.actual) or "(none)"


def _check_text(r: ConditionRow) -> str:
    return f"{status_word(r.passed)}\n{r.key}\n[{r.operator}]"


def _facts_text(r: ConditionRow) -> str:
    return (
        f"expected: {', '.join(r.expected) or '(none)'}\nactual: {_actual_text(r)}\nwhy: {r.note}"
    )


def provider_arn(role_arn: str, host_path: str) -> str:
    """The IAM OIDC provider ARN in the role's partition and account."""
    return oidc_provider_arn(
        arn_account(role_arn, ACCOUNT_ID), host_path, partition=arn_partition(role_arn)
    )


def _principal_row(st: Any, result: Any, caller_arn: str) -> ConditionRow:
    spec = st.principal if st.principal is not None else st.not_principal
    if isinstance(spec, str):
        expected = [spec]
    else:
        expected = [f"{t}: {v}" for t, v in spec or ()]
    op = "Principal names" if st.principal is not None else "NotPrincipal excludes"
    note = (
        "the statement names the OIDC provider the token comes from"
        if result.principal_matched
        else "the statement names another principal: STS compares Principal.Federated "
        "with the provider ARN of the token's issuer"
    )
    return ConditionRow(
        "Principal", op, expected, [f"Federated: {caller_arn}"], result.principal_matched, note
    )


def _action_row(st: Any, result: Any, action: str) -> ConditionRow:
    expected = list(st.actions) if st.actions is not None else list(st.not_actions or ())
    op = "Action covers" if st.actions is not None else "NotAction excludes"
    note = (
        f"{action} is covered"
        if result.action_matched
        else f"the statement does not cover {action}"
    )
    if action != WEB_IDENTITY_ACTION and not result.action_matched:
        note += (
            " (the token passes session tags or a source identity, which is an action of its "
            "own that the trust policy must allow too)"
        )
    return ConditionRow("Action", op, expected, [action], result.action_matched, note)


def _rows(decision: Decision, policy: Any, caller_arn: str) -> list[ConditionRow]:
    rows: list[ConditionRow] = []
    several = len(decision.statements) > 1
    action = decision.request.action if decision.request is not None else WEB_IDENTITY_ACTION
    for st, res in zip(policy.statements, decision.statements, strict=True):
        prefix = f"Statement[{res.index}] " if several else ""
        for row in (_principal_row(st, res, caller_arn), _action_row(st, res, action)):
            rows.append(row._replace(key=prefix + row.key))
        for c in res.conditions:
            rows.append(
                ConditionRow(
                    prefix + c.key,
                    c.operator,
                    list(c.expected),
                    None if c.actual is None else list(c.actual),
                    c.passed,
                    c.note,
                )
            )
    return rows


CLAIM_STEPS = ("OIDC provider", "audience", "role", "trust policy")
"""The pipeline steps :func:`judge` runs on edited claims (no signed token to check)."""


def judge(
    policy_text: str,
    claims: Mapping[str, Any] | None = None,
    *,
    providers: Mapping[str, Sequence[str]],
    role_arn: str = ROLE_ARN,
    token: str | None = None,
    jwks: Mapping[str, Any] | None = None,
    now: float | None = None,
    session_name: str | None = None,
) -> Verdict:
    """STS's verdict on ``claims`` (``iss``, ``sub``, ``aud``, optionally ``azp``, and the
    AWS session-tag and source-identity claims), or on a signed ``token`` checked against
    ``jwks`` at ``now`` (the lab clock; with edited claims it only sets the trust
    evaluation's ``aws:CurrentTime``).

    ``providers`` maps each IAM OIDC provider URL (issuer without ``https://``) to its
    client IDs; ``session_name`` is the request's ``RoleSessionName``. The checks run in
    STS's order; the first failure decides.
    """
    try:
        policy = parse_policy(policy_text, kind="trust")
    except AwsError as err:
        return Verdict(
            False,
            err.code,
            wire_text(err),
            err.status,
            [
                ConditionRow(
                    "policy document",
                    "parses",
                    ["valid JSON trust policy"],
                    [err.message],
                    False,
                    err.explanation,
                )
            ],
            "IAM refuses to save a malformed trust policy (UpdateAssumeRolePolicy fails with "
            f"MalformedPolicyDocument), so STS never evaluates it. {err.explanation}",
            step="policy syntax",
        )
    iam = IamView(
        {k: list(v) for k, v in providers.items()},
        {role_arn: policy_text},
        account_id=arn_account(role_arn, ACCOUNT_ID),
        partition=arn_partition(role_arn),
    )
    try:
        if token is None:
            state = Pipeline(
                iam,
                0.0 if now is None else now,
                role_arn=role_arn,
                steps=CLAIM_STEPS,
                session_name=session_name,
            ).run(None, claims=dict(claims or {}))
        else:
            if jwks is None or now is None:
                raise ValueError("judging a token needs the issuer's jwks and now")
            pipeline = Pipeline(
                iam,
                now,
                role_arn=role_arn,
                steps=(*TOKEN_STEPS, *CLAIM_STEPS[2:]),
                session_name=session_name,
            )
            state = pipeline.run(token, keys_from_jwks(jwks))
    except StsError as err:
        return _refusal(err, policy, providers, role_arn)
    assert state.decision is not None
    explanation = state.decision.explain()
    extra = state.session.extra_actions() if state.session is not None else []
    if extra:
        explanation += (
            f"\nThe token passes {state.session.describe() if state.session else ''}; the "
            f"trust policy also allows {' and '.join(extra)}."
        )
    return Verdict(
        True,
        None,
        "AssumeRoleWithWebIdentity succeeds",
        200,
        _rows(state.decision, policy, state.provider.arn if state.provider else ""),
        explanation,
        step="trust policy",
    )


def _refusal(
    err: StsError, policy: Any, providers: Mapping[str, Sequence[str]], role_arn: str
) -> Verdict:
    """The verdict for a refusal: STS's answer, and rows that show the failed check."""

    def verdict(rows: list[ConditionRow], explanation: str) -> Verdict:
        return Verdict(
            False, err.code, err.message, err.status, rows, explanation, err.step, failure=err
        )

    if isinstance(err, NoOpenIDConnectProvider):
        iss = str(err.detail.get("iss", ""))
        known = sorted(providers)
        return verdict(
            [
                ConditionRow(
                    "iss",
                    "has an IAM OIDC provider",
                    known,
                    [issuer_host_path(iss)],
                    False,
                    "IAM looks the provider up by the issuer without https://, "
                    "exactly (case, trailing slash and cluster id matter)",
                )
            ],
            f"STS strips https:// from the token's iss ({iss!r}) and finds no IAM OIDC "
            f"provider with that URL; the account has {known or 'none'}. Create the "
            "provider for the cluster's issuer (eksctl utils associate-iam-oidc-provider).",
        )
    if isinstance(err, InvalidAudience):
        client_ids = [str(c) for c in err.detail.get("client_ids", [])]
        shown = [str(a) for a in as_list(err.detail.get("audience"))]
        arn = err.detail.get("provider")
        return verdict(
            [
                ConditionRow(
                    "aud",
                    "is a client ID of the provider",
                    client_ids,
                    shown,
                    False,
                    "the projected token's audience must be registered on the OIDC "
                    "provider (ClientIDList)",
                )
            ],
            f"The token's audience {shown} is not among the client IDs {client_ids} of "
            f"{arn}. Either the ServiceAccount's eks.amazonaws.com/audience annotation "
            "changed the token's audience, or the provider was created with another one.",
        )
    if isinstance(err, TrustPolicyDenied) and err.decision is not None:
        request = err.decision.request
        caller = request.principal.get("Federated", [""])[0] if request is not None else ""
        return verdict(_rows(err.decision, policy, str(caller)), err.explanation)
    return verdict(
        [ConditionRow(err.step, "STS step", ["passes"], [err.message], False, err.explanation)],
        err.explanation,
    )
