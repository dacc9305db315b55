"""The trust-policy playground: edit the role's trust policy or the token, see STS's answer.

:func:`judge` is the pure core. The trust policy must parse first (else
``MalformedPolicyDocument``: IAM would refuse to save it, so STS never sees it); then
it runs the STS check pipeline (:class:`irsa_lab.aws.sts.Pipeline`, the code the STS
stand-in runs) on IAM's state as the playground holds it:

- given edited claims (the widget's fields), the steps that need no signed token:
  ``OIDC provider`` ("No OpenIDConnect provider found in your account for <iss>"),
  ``audience`` ("Incorrect token audience"), ``role`` and ``trust policy``
  (``AccessDenied``, 403, "Not authorized to perform sts:AssumeRoleWithWebIdentity");
- given a signed token and the issuer's JWKS, every step from ``parse`` on, as STS.

:class:`Playground` is the widget; :data:`PRESETS` name the classic mistakes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import ipywidgets as widgets

from ..aws.arns import (
    arn_account,
    arn_partition,
    irsa_trust_policy,
    issuer_host_path,
    oidc_provider_arn,
)
from ..aws.errors import AwsError
from ..aws.policy import Decision, parse_policy
from ..aws.sts.checks import TOKEN_STEPS, IamView, Pipeline, keys_from_jwks
from ..aws.sts.errors import (
    ACCESS_DENIED_MESSAGE,
    InvalidAudience,
    NoOpenIDConnectProvider,
    StsError,
    TrustPolicyDenied,
)
from ..constants import ACCOUNT_ID, DEFAULT_AUDIENCE, NAMESPACE, ROLE_ARN, SERVICE_ACCOUNT
from .text import (
    FAIL,
    OK,
    STYLE_FAIL,
    STYLE_OK,
    as_list,
    escape,
    html_table,
    status_word,
)

__all__ = [
    "PRESETS",
    "ConditionRow",
    "Playground",
    "Preset",
    "Verdict",
    "claims_for",
    "judge",
    "presets",
    "provider_arn",
    "trust_policy_text",
]

ACTION = "sts:AssumeRoleWithWebIdentity"


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

    def html(self) -> str:
        banner_style = STYLE_OK if self.allowed else STYLE_FAIL
        rows = [
            (
                status_word(r.passed),
                r.key,
                r.operator,
                r.expected,
                "(absent from the request)" if r.actual is None else r.actual,
                r.note,
            )
            for r in self.rows
        ]
        styles = [STYLE_OK if r.passed else STYLE_FAIL for r in self.rows]
        return (
            f'<div style="{banner_style}padding:4px 8px;font-weight:bold;">'
            f"{escape(self.headline)}</div>"
            + html_table(
                ("result", "key", "operator", "expected", "actual", "why"),
                rows,
                caption=f"Checks ({self.source})",
                row_styles=styles,
            )
            + f'<details><summary>explanation</summary><pre style="white-space:pre-wrap;">'
            f"{escape(self.explanation)}</pre></details>"
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


def _action_row(st: Any, result: Any) -> ConditionRow:
    expected = list(st.actions) if st.actions is not None else list(st.not_actions or ())
    op = "Action covers" if st.actions is not None else "NotAction excludes"
    note = (
        f"{ACTION} is covered"
        if result.action_matched
        else f"the statement does not cover {ACTION}"
    )
    return ConditionRow("Action", op, expected, [ACTION], result.action_matched, note)


def _rows(decision: Decision, policy: Any, caller_arn: str) -> list[ConditionRow]:
    rows: list[ConditionRow] = []
    several = len(decision.statements) > 1
    for st, res in zip(policy.statements, decision.statements, strict=True):
        prefix = f"Statement[{res.index}] " if several else ""
        for row in (_principal_row(st, res, caller_arn), _action_row(st, res)):
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
) -> Verdict:
    """STS's verdict on ``claims`` (``iss``, ``sub``, ``aud``, optionally ``azp``), or on
    a signed ``token`` checked against ``jwks`` at ``now`` (the lab clock).

    ``providers`` maps each IAM OIDC provider URL (issuer without ``https://``) to its
    client IDs. The checks run in STS's order; the first failure decides.
    """
    try:
        policy = parse_policy(policy_text, kind="trust")
    except AwsError as err:
        return Verdict(
            False,
            err.code,
            err.message,
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
    parts = role_arn.split(":")
    iam = IamView(
        {k: list(v) for k, v in providers.items()},
        {role_arn: policy_text},
        account_id=parts[4] if len(parts) > 4 else ACCOUNT_ID,
        partition=parts[1] if len(parts) > 4 else "aws",
    )
    try:
        if token is None:
            state = Pipeline(iam, 0.0, role_arn=role_arn, steps=CLAIM_STEPS).run(
                None, claims=dict(claims or {})
            )
        else:
            if jwks is None or now is None:
                raise ValueError("judging a token needs the issuer's jwks and now")
            pipeline = Pipeline(iam, now, role_arn=role_arn, steps=(*TOKEN_STEPS, *CLAIM_STEPS[2:]))
            state = pipeline.run(token, keys_from_jwks(jwks))
    except StsError as err:
        return _refusal(err, policy, providers, role_arn)
    assert state.decision is not None
    return Verdict(
        True,
        None,
        "AssumeRoleWithWebIdentity succeeds",
        200,
        _rows(state.decision, policy, state.provider.arn if state.provider else ""),
        state.decision.explain(),
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


# --- presets ------------------------------------------------------------------------


def trust_policy_text(
    issuer: str,
    *,
    account_id: str = ACCOUNT_ID,
    namespace: str = NAMESPACE,
    service_account: str = SERVICE_ACCOUNT,
    audience: str = DEFAULT_AUDIENCE,
    operator: str = "StringEquals",
    key_prefix: str | None = None,
) -> str:
    """The IRSA trust policy as eksctl and the EKS docs write it, pretty-printed."""
    doc = irsa_trust_policy(
        oidc_provider_arn(account_id, issuer),
        issuer,
        namespace=namespace,
        service_account=service_account,
        audience=audience,
        operator=operator,
        key_prefix=key_prefix,
    )
    return json.dumps(doc, indent=2)


def claims_for(issuer: str, namespace: str, service_account: str, audience: str) -> dict[str, Any]:
    """The claims STS reads, as the API server issues them (``aud`` is a list)."""
    return {
        "iss": issuer,
        "sub": f"system:serviceaccount:{namespace}:{service_account}",
        "aud": [audience],
    }


@dataclass(frozen=True)
class Preset:
    """A ready-made situation: the policy, the token fields, and what STS answers."""

    name: str
    description: str
    policy_text: str
    namespace: str
    service_account: str
    audience: str
    issuer: str
    provider_registered: bool = True
    expected_code: str | None = None
    expected_message: str = ""
    claims: dict[str, Any] = field(default_factory=dict)


PRESETS = (
    "correct",
    "wrong namespace",
    "ServiceAccount typo",
    "wildcard under StringEquals",
    "audience mismatch",
    "missing OIDC provider",
    "https:// in the condition key",
)


def presets(
    issuer: str,
    *,
    account_id: str = ACCOUNT_ID,
    namespace: str = NAMESPACE,
    service_account: str = SERVICE_ACCOUNT,
    audience: str = DEFAULT_AUDIENCE,
) -> dict[str, Preset]:
    """Each classic misconfiguration (docs/reference/sts.md §2.4), keyed by :data:`PRESETS` names."""
    good = trust_policy_text(
        issuer,
        account_id=account_id,
        namespace=namespace,
        service_account=service_account,
        audience=audience,
    )
    denied = ACCESS_DENIED_MESSAGE
    typo = service_account.replace("-", "", 1) if "-" in service_account else service_account + "s"

    def p(
        name: str,
        description: str,
        *,
        policy: str = good,
        ns: str = namespace,
        sa: str = service_account,
        aud: str = audience,
        registered: bool = True,
        code: str | None = None,
        message: str = "",
    ) -> Preset:
        return Preset(
            name,
            description,
            policy,
            ns,
            sa,
            aud,
            issuer,
            registered,
            code,
            message,
            claims_for(issuer, ns, sa, aud),
        )

    return {
        "correct": p(
            "correct",
            "The article's set-up: everything matches.",
            message="AssumeRoleWithWebIdentity succeeds",
        ),
        "wrong namespace": p(
            "wrong namespace",
            "The pod runs in namespace 'dev', the policy trusts 'default'.",
            ns="dev",
            code="AccessDenied",
            message=denied,
        ),
        "ServiceAccount typo": p(
            "ServiceAccount typo",
            f"The policy names '{typo}' instead of '{service_account}'.",
            policy=trust_policy_text(
                issuer,
                account_id=account_id,
                namespace=namespace,
                service_account=typo,
                audience=audience,
            ),
            code="AccessDenied",
            message=denied,
        ),
        "wildcard under StringEquals": p(
            "wildcard under StringEquals",
            "The policy trusts every ServiceAccount of the namespace with '*', "
            "but StringEquals compares literally (StringLike is needed).",
            policy=trust_policy_text(
                issuer,
                account_id=account_id,
                namespace=namespace,
                service_account="*",
                audience=audience,
            ),
            code="AccessDenied",
            message=denied,
        ),
        "audience mismatch": p(
            "audience mismatch",
            "The ServiceAccount's audience annotation gave the token the audience "
            "'sts.amazon.com', which the OIDC provider does not list.",
            aud="sts.amazon.com",
            code="InvalidIdentityToken",
            message="Incorrect token audience",
        ),
        "missing OIDC provider": p(
            "missing OIDC provider",
            "Nobody registered the cluster's issuer as an IAM OIDC provider.",
            registered=False,
            code="InvalidIdentityToken",
            message=f"No OpenIDConnect provider found in your account for {issuer}",
        ),
        "https:// in the condition key": p(
            "https:// in the condition key",
            "The condition keys start with https://, so the request has no such keys.",
            policy=trust_policy_text(
                issuer,
                account_id=account_id,
                namespace=namespace,
                service_account=service_account,
                audience=audience,
                key_prefix=issuer,
            ),
            code="AccessDenied",
            message=denied,
        ),
    }


# --- the widget ---------------------------------------------------------------------


class Playground(widgets.VBox):
    """Edit the trust policy or the token's fields; the verdict follows live.

    ``providers`` is IAM's state: provider URL (issuer without ``https://``) to client
    IDs. The "provider registered" box removes the cluster issuer's provider from it.
    ``try_for_real``, when the stack supplies it, sends a real token with these claims
    through boto3 and returns the real STS verdict; the button shows both side by side.
    Read results from Python: :attr:`verdict`, :attr:`error_code`,
    :attr:`failed_conditions`, :meth:`state`.
    """

    def __init__(
        self,
        issuer: str,
        *,
        providers: Mapping[str, Sequence[str]] | None = None,
        role_arn: str = ROLE_ARN,
        policy_text: str | None = None,
        namespace: str = NAMESPACE,
        service_account: str = SERVICE_ACCOUNT,
        audience: str = DEFAULT_AUDIENCE,
        try_for_real: Callable[[dict[str, Any]], Verdict] | None = None,
    ) -> None:
        self.cluster_issuer = issuer
        self.role_arn = role_arn
        account_id = role_arn.split(":")[4] if role_arn.count(":") >= 5 else ACCOUNT_ID
        self.account_id = account_id
        self.providers: dict[str, list[str]] = (
            {issuer_host_path(issuer): [DEFAULT_AUDIENCE]}
            if providers is None
            else {k: list(v) for k, v in providers.items()}
        )
        self.try_for_real = try_for_real
        self.presets = presets(
            issuer,
            account_id=account_id,
            namespace=namespace,
            service_account=service_account,
            audience=audience,
        )
        self.real_verdict: Verdict | None = None
        self._holding = False
        text = policy_text if policy_text is not None else self.presets["correct"].policy_text

        self.preset_input = widgets.Dropdown(
            options=["(custom)", *PRESETS], value="(custom)", description="preset"
        )
        self.policy_input = widgets.Textarea(
            value=text,
            description="trust policy",
            layout=widgets.Layout(width="100%", height="18em"),
        )
        self.namespace_input = widgets.Text(value=namespace, description="namespace")
        self.service_account_input = widgets.Text(
            value=service_account,
            description="ServiceAccount",
            style={"description_width": "initial"},
        )
        self.audience_input = widgets.Text(value=audience, description="aud")
        self.issuer_input = widgets.Text(
            value=issuer, description="iss", layout=widgets.Layout(width="100%")
        )
        self.provider_box = widgets.Checkbox(
            value=True,
            description="IAM OIDC provider registered for the cluster's issuer",
            indent=False,
            layout=widgets.Layout(width="auto"),
        )
        self.preset_note = widgets.HTML()
        self.verdict_html = widgets.HTML()
        self.real_button = widgets.Button(
            description="Try it for real",
            icon="play",
            disabled=try_for_real is None,
            tooltip="send a real token with these claims to the STS stand-in through boto3",
        )
        self.real_html = widgets.HTML()
        self.real_button.on_click(lambda _b: self.run_for_real())
        for w in (
            self.policy_input,
            self.namespace_input,
            self.service_account_input,
            self.audience_input,
            self.issuer_input,
            self.provider_box,
        ):
            w.observe(self._changed, names="value")
        self.preset_input.observe(self._preset_chosen, names="value")
        self.verdict: Verdict = judge(
            text, self.claims, providers=self.effective_providers, role_arn=role_arn
        )
        super().__init__(
            children=[
                self.preset_input,
                self.preset_note,
                self.policy_input,
                widgets.HBox(
                    [self.namespace_input, self.service_account_input, self.audience_input]
                ),
                self.issuer_input,
                self.provider_box,
                self.verdict_html,
                self.real_button,
                self.real_html,
            ]
        )
        self._update()

    @classmethod
    def from_account(
        cls,
        account: Any,
        *,
        issuer: str,
        role_name: str,
        try_for_real: Callable[[dict[str, Any]], Verdict] | None = None,
        **kwargs: Any,
    ) -> Playground:
        """A playground on the lab account's real state: the role's trust policy and
        the registered OIDC providers (:class:`irsa_lab.aws.model.Account`)."""
        role = account.roles[role_name]
        providers = {p.url: list(p.client_ids) for p in account.oidc_providers.values()}
        return cls(
            issuer,
            providers=providers,
            role_arn=role.arn,
            policy_text=role.trust_policy,
            try_for_real=try_for_real,
            **kwargs,
        )

    # -- state read and written from Python --------------------------------------------

    @property
    def policy_text(self) -> str:
        return str(self.policy_input.value)

    @policy_text.setter
    def policy_text(self, value: str) -> None:
        self.policy_input.value = value

    @property
    def claims(self) -> dict[str, Any]:
        return claims_for(
            str(self.issuer_input.value),
            str(self.namespace_input.value),
            str(self.service_account_input.value),
            str(self.audience_input.value),
        )

    @property
    def effective_providers(self) -> dict[str, list[str]]:
        if self.provider_box.value:
            return dict(self.providers)
        cluster = issuer_host_path(self.cluster_issuer)
        return {k: v for k, v in self.providers.items() if k != cluster}

    @property
    def error_code(self) -> str | None:
        return self.verdict.code

    @property
    def failed_conditions(self) -> list[ConditionRow]:
        return self.verdict.failed_conditions

    def set_claims(
        self,
        *,
        namespace: str | None = None,
        service_account: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
    ) -> None:
        """Change several token fields with one re-evaluation."""
        with self._hold():
            if namespace is not None:
                self.namespace_input.value = namespace
            if service_account is not None:
                self.service_account_input.value = service_account
            if audience is not None:
                self.audience_input.value = audience
            if issuer is not None:
                self.issuer_input.value = issuer

    def apply_preset(self, name: str) -> Verdict:
        """Load a preset (a :data:`PRESETS` name) and return the new verdict."""
        p = self.presets[name]
        with self._hold():
            self.policy_input.value = p.policy_text
            self.namespace_input.value = p.namespace
            self.service_account_input.value = p.service_account
            self.audience_input.value = p.audience
            self.issuer_input.value = p.issuer
            self.provider_box.value = p.provider_registered
            if self.preset_input.value != name:
                self.preset_input.value = name
        self.preset_note.value = f"<p><i>{escape(p.description)}</i></p>"
        return self.verdict

    def run_for_real(self) -> Verdict | None:
        """Call the ``try_for_real`` hook with the current claims; show both verdicts."""
        if self.try_for_real is None:
            return None
        real = self.try_for_real(self.claims)
        self.real_verdict = real
        same = (real.allowed, real.code) == (self.verdict.allowed, self.verdict.code)
        agree = (
            "+ the real STS stand-in agrees with the playground"
            if same
            else "- the real STS stand-in answered differently: read both tables"
        )
        self.real_html.value = (
            f"<p><b>{escape(agree)}</b></p>"
            '<div style="display:flex;gap:1em;flex-wrap:wrap;">'
            f"<div>{self.verdict.html()}</div><div>{real.html()}</div></div>"
        )
        return real

    def state(self) -> dict[str, Any]:
        """The facts a following plain cell prints."""
        v = self.verdict
        return {
            "allowed": v.allowed,
            "error_code": v.code,
            "message": v.message,
            "http_status": v.http_status,
            "step": v.step,
            "failed_conditions": [
                (r.key, r.operator, r.expected, r.actual) for r in v.failed_conditions
            ],
            "claims": self.claims,
            "real": None
            if self.real_verdict is None
            else {"allowed": self.real_verdict.allowed, "error_code": self.real_verdict.code},
        }

    # -- internals ------------------------------------------------------------------

    class _Hold:
        def __init__(self, owner: Playground) -> None:
            self.owner = owner

        def __enter__(self) -> None:
            self.owner._holding = True

        def __exit__(self, *exc: object) -> None:
            self.owner._holding = False
            self.owner._update()

    def _hold(self) -> Playground._Hold:
        return Playground._Hold(self)

    def _changed(self, _change: Any) -> None:
        if not self._holding:
            if self.preset_input.value != "(custom)":
                # An edit after a preset is a custom situation; keep the widgets honest.
                self._holding = True
                self.preset_input.value = "(custom)"
                self.preset_note.value = ""
                self._holding = False
            self._update()

    def _preset_chosen(self, change: Any) -> None:
        if self._holding or change["new"] == "(custom)":
            return
        self.apply_preset(str(change["new"]))

    def _update(self) -> None:
        self.verdict = judge(
            self.policy_text,
            self.claims,
            providers=self.effective_providers,
            role_arn=self.role_arn,
        )
        self.verdict_html.value = self.verdict.html()
        self.real_verdict = None
        self.real_html.value = ""
