"""The trust-policy playground: edit the role's trust policy or the token, see STS's answer.

:class:`Playground` is the widget. What it shows comes from two modules:
:mod:`irsa_lab.ui.trust_verdict` (:func:`judge`, STS's verdict computed by the STS
check pipeline) and :mod:`irsa_lab.ui.trust_presets` (:data:`PRESETS`, the classic
mistakes). Their names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as widgets

from ..aws.arns import arn_account, issuer_host_path
from ..constants import ACCOUNT_ID, DEFAULT_AUDIENCE, NAMESPACE, ROLE_ARN, SERVICE_ACCOUNT
from .static import StaticFallback
from .text import escape, side_by_side
from .trust_presets import PRESETS, Preset, claims_for, presets, trust_policy_text
from .trust_verdict import ConditionRow, Verdict, judge, provider_arn
from .widget_value import WidgetText

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


# The row of token fields wraps onto a second line rather than widen the cell.
ROW_LAYOUT = {"flex_flow": "row wrap", "max_width": "100%"}


class Playground(StaticFallback, widgets.VBox):
    """Edit the trust policy or the token's fields; the verdict follows live.

    ``providers`` is IAM's state: provider URL (issuer without ``https://``) to client
    IDs. The "provider registered" box removes the cluster issuer's provider from it.
    ``try_for_real``, when the stack supplies it, sends a real token with these claims
    through boto3 and returns the real STS verdict; the button shows both side by side,
    in two columns.
    Read results from Python: :attr:`verdict`, :attr:`error_code`,
    :attr:`failed_conditions`, :meth:`state`.

    ``extra_claims`` adds claims no field edits, such as AWS's session tags
    (``https://aws.amazon.com/tags``) or source identity
    (``https://aws.amazon.com/source_identity``), which IRSA tokens never carry;
    :meth:`set_extra_claims` changes them. ``session_name`` is the ``RoleSessionName``
    the trust evaluation sees as ``sts:RoleSessionName``; ``now`` the clock its
    ``aws:CurrentTime`` is read from.
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
        extra_claims: Mapping[str, Any] | None = None,
        session_name: str | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.cluster_issuer = issuer
        self.extra_claims: dict[str, Any] = dict(extra_claims or {})
        self.session_name = session_name
        self._now = now
        self.role_arn = role_arn
        account_id = arn_account(role_arn, ACCOUNT_ID)
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
            layout=widgets.Layout(width="auto", height="18em"),
        )
        self.namespace_input = widgets.Text(value=namespace, description="namespace")
        self.service_account_input = widgets.Text(
            value=service_account,
            description="ServiceAccount",
            style={"description_width": "initial"},
        )
        self.audience_input = widgets.Text(value=audience, description="aud")
        self.issuer_input = widgets.Text(
            value=issuer, description="iss", layout=widgets.Layout(width="auto")
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
        self.verdict: Verdict = self._judge(text)
        super().__init__(
            children=[
                self.preset_input,
                self.preset_note,
                self.policy_input,
                widgets.HBox(
                    [self.namespace_input, self.service_account_input, self.audience_input],
                    layout=widgets.Layout(**ROW_LAYOUT),
                ),
                self.issuer_input,
                self.provider_box,
                self.verdict_html,
                self.real_button,
                self.real_html,
            ],
            layout=widgets.Layout(max_width="100%"),
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

    policy_text = WidgetText("policy_input")

    @property
    def claims(self) -> dict[str, Any]:
        return {
            **claims_for(
                str(self.issuer_input.value),
                str(self.namespace_input.value),
                str(self.service_account_input.value),
                str(self.audience_input.value),
            ),
            **self.extra_claims,
        }

    def set_extra_claims(self, claims: Mapping[str, Any]) -> Verdict:
        """Replace the claims no field edits (session tags, source identity); re-judge."""
        self.extra_claims = dict(claims)
        self._update()
        return self.verdict

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

    def snapshot(self) -> dict[str, Any]:
        """Every input's value (and the extra claims): what :meth:`restore` puts back."""
        return {
            "preset": self.preset_input.value,
            "policy": self.policy_input.value,
            "namespace": self.namespace_input.value,
            "service_account": self.service_account_input.value,
            "audience": self.audience_input.value,
            "issuer": self.issuer_input.value,
            "provider_registered": self.provider_box.value,
            "extra_claims": dict(self.extra_claims),
        }

    def restore(self, snapshot: Mapping[str, Any]) -> Verdict:
        """Put the inputs back as :meth:`snapshot` found them; one re-evaluation."""
        with self._hold():
            self.policy_input.value = snapshot["policy"]
            self.namespace_input.value = snapshot["namespace"]
            self.service_account_input.value = snapshot["service_account"]
            self.audience_input.value = snapshot["audience"]
            self.issuer_input.value = snapshot["issuer"]
            self.provider_box.value = snapshot["provider_registered"]
            self.extra_claims = dict(snapshot["extra_claims"])
            self.preset_input.value = snapshot["preset"]
        preset = self.presets.get(str(snapshot["preset"]))
        self.preset_note.value = (
            "" if preset is None else f"<p><i>{escape(preset.description)}</i></p>"
        )
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
        self.real_html.value = f"<p><b>{escape(agree)}</b></p>" + side_by_side(
            self.verdict.html(compact=True),
            real.html(compact=True),
            titles=("the playground predicts", "the real STS stand-in answers"),
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

    # -- the stored output's summary (StaticFallback) --------------------------------

    def static_title(self) -> str:
        return "Trust-policy playground"

    def static_lines(self) -> list[str]:
        """The preset, STS's verdict with its code, and each failed check."""
        v = self.verdict
        preset = str(self.preset_input.value)
        lines = [
            f"preset: {preset}"
            if preset in self.presets
            else "preset: none (the policy and token fields as given)",
            f"verdict: {v.headline}",
        ]
        failed = v.failed_conditions
        if not failed:
            lines.append("failed checks: none")
        for r in failed:
            actual = "(absent from the request)" if r.actual is None else ", ".join(r.actual)
            lines.append(
                f"failed check: {r.key} [{r.operator}]: expected {', '.join(r.expected)}; "
                f"actual {actual}"
            )
        if self.real_verdict is not None:
            lines.append(f"real STS stand-in: {self.real_verdict.headline}")
        return lines

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

    def _judge(self, text: str) -> Verdict:
        return judge(
            text,
            self.claims,
            providers=self.effective_providers,
            role_arn=self.role_arn,
            session_name=self.session_name,
            now=None if self._now is None else self._now(),
        )

    def _update(self) -> None:
        self.verdict = self._judge(self.policy_text)
        self.verdict_html.value = self.verdict.html()
        self.real_verdict = None
        self.real_html.value = ""
