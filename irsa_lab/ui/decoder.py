"""The token decoder: a projected service-account token taken apart, checked, and broken.

Pure functions first: :func:`explain_claims` says what each claim means and which part
of the IAM side it meets (the OIDC provider lookup, the trust-policy condition keys);
:func:`verify_token` runs the token steps of the STS check pipeline
(:data:`irsa_lab.aws.sts.TOKEN_STEPS`) - the very code the STS stand-in runs, so the
decoder and STS cannot disagree about a token; :func:`tamper` edits a claim and keeps
the old signature, which is what an attacker who cannot sign would have to do.
:class:`TokenDecoder` is a thin widget over them whose state a plain notebook cell
can print.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets

from .. import jose
from ..aws.arns import issuer_host_path
from ..aws.sts.checks import TOKEN_STEPS, IamView, Pipeline, State, keys_from_jwks
from ..aws.sts.errors import StsError
from ..aws.sts.session_claims import SOURCE_IDENTITY_CLAIM, TAGS_CLAIM
from ..clock import Clock
from ..pki import SigningKey
from .static import StaticFallback
from .text import (
    FAIL,
    OK,
    STYLE_FAIL,
    STYLE_MUTED,
    STYLE_OK,
    as_list,
    escape,
    html_table,
    relative_time,
    status_word,
    text_table,
    utc_text,
)
from .widget_value import WidgetText

__all__ = [
    "ALGORITHMS",
    "STEPS",
    "ClaimRow",
    "TokenDecoder",
    "Verification",
    "explain_claims",
    "tamper",
    "verify_token",
]

ALGORITHMS = jose.ALGORITHMS
STEPS = TOKEN_STEPS


# --- claims explained ------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimRow:
    """One claim: its value as shown, what it means, and where IAM/STS meets it."""

    name: str
    value: str
    meaning: str
    iam: str


def _time_value(ts: Any, now: float | None) -> str:
    if not isinstance(ts, int | float):
        return str(ts)
    text = f"{int(ts)} = {utc_text(float(ts))}"
    return f"{text} ({relative_time(float(ts), now)})" if now is not None else text


def explain_claims(claims: Mapping[str, Any], *, now: float | None = None) -> list[ClaimRow]:
    """Explain every claim, in the token's order; times relative to ``now`` (the lab clock)."""
    iss = str(claims.get("iss", ""))
    prefix = issuer_host_path(iss) or "<issuer>"
    rows = []
    for name, value in claims.items():
        shown = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
        if name == "iss":
            meaning = "who signed the token: the cluster's service-account issuer"
            iam = (
                f"STS looks up the IAM OIDC provider {issuer_host_path(iss)!r} "
                "(the issuer without https://) and fetches its discovery document and JWKS"
            )
        elif name == "sub":
            meaning = "the subject: system:serviceaccount:<namespace>:<service account>"
            iam = f"trust-policy condition key {prefix}:sub"
        elif name == "aud":
            meaning = "who the token is for (the projected volume's audience)"
            iam = (
                "must be one of the OIDC provider's client IDs; then trust-policy "
                f"condition key {prefix}:aud"
            )
        elif name in ("exp", "iat", "nbf"):
            meaning = {
                "exp": "expires at",
                "iat": "issued at",
                "nbf": "not valid before",
            }[name]
            shown = _time_value(value, now)
            iam = {
                "exp": "STS refuses the token from this second on (no clock-skew tolerance)",
                "iat": "STS refuses a token issued in the future",
                "nbf": "STS refuses the token before this second (no clock-skew tolerance)",
            }[name]
        elif name == "jti":
            meaning = "unique token id (for audit logs)"
            iam = "not used by STS"
        elif name == "kubernetes.io":
            meaning = _kubernetes_meaning(value)
            iam = "not a condition key: STS ignores custom claims"
        elif name == TAGS_CLAIM:
            meaning = (
                "session tags the identity provider passes (principal_tags, transitive_tag_keys)"
            )
            iam = (
                "STS checks them (at most 50, single values, no aws: prefix); the trust policy "
                "must also allow sts:TagSession; conditions see them as aws:RequestTag/<key> "
                "and aws:TagKeys, later requests as aws:PrincipalTag/<key>"
            )
        elif name == SOURCE_IDENTITY_CLAIM:
            meaning = "the source identity: who is behind the session, kept for its whole life"
            iam = (
                "2-64 characters of letters, digits and _+=,.@-; the trust policy must also "
                "allow sts:SetSourceIdentity; conditions see it as sts:SourceIdentity, later "
                "requests as aws:SourceIdentity; STS returns it as SourceIdentity"
            )
        elif name == "azp":
            meaning = "authorised party"
            iam = f"used as {prefix}:aud when aud has several values"
        else:
            meaning = "custom claim"
            iam = "not usable in a trust policy (STS ignores custom claims)"
        rows.append(ClaimRow(name, shown, meaning, iam))
    return rows


# The objects a token can be bound to, in the order the API server writes them.
_BOUND = (
    ("pod", "pod"),
    ("serviceaccount", "service account"),
    ("node", "node"),
    ("secret", "secret"),
)


def _kubernetes_meaning(value: Any) -> str:
    """What this token's ``kubernetes.io`` claim holds, no more: the namespace and each
    bound object with the fields it carries (a node only when the token names one)."""
    if not isinstance(value, Mapping):
        return "Kubernetes' own claim (not an object here)"
    held = []
    if "namespace" in value:
        held.append("namespace")
    for key, label in _BOUND:
        ref = value.get(key)
        if isinstance(ref, Mapping):
            fields = [f for f in ("name", "uid") if f in ref]
            held.append(f"{label} ({', '.join(fields)})" if fields else label)
    meaning = "what the token is bound to: " + ", ".join(held) if held else "no binding"
    if "warnafter" in value:
        meaning += (
            "; warnafter: the time after which the API server warns that this "
            "extended-lifetime token is still in use"
        )
    return meaning


# --- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class Verification:
    """The outcome of :func:`verify_token`.

    ``step_results`` lists ``(step, ok, message)`` for every step run, in order; the
    checks stop at the first failure, as STS does, so the failing step is the last one.
    ``failure`` is the exception STS raises for the token (its class names the
    failure, its ``code`` and ``message`` are what STS answers).
    """

    ok: bool
    step_results: list[tuple[str, bool, str]]
    error: str | None = None
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    failure: StsError | None = None

    @property
    def failed_step(self) -> str | None:
        return None if self.ok or not self.step_results else self.step_results[-1][0]

    @property
    def verdict(self) -> str:
        if self.ok:
            return "token accepted"
        out = f"token rejected at step {self.failed_step!r}"
        f = self.failure
        return out if f is None else f"{out}: STS answers {f.code} ({f.status}): {f.message}"

    def text(self) -> str:
        """A plain-text table of every step, the ones not reached included."""
        done = {s: (ok, msg) for s, ok, msg in self.step_results}
        rows = []
        for step in STEPS:
            if step in done:
                ok, msg = done[step]
                rows.append((step, status_word(ok), msg))
            else:
                rows.append((step, status_word(None), "stopped at an earlier step"))
        return text_table(("step", "result", "detail"), rows) + f"\n=> {self.verdict}"


def _peek(token: str) -> dict[str, Any]:
    try:
        return jose.parse_compact(token.strip()).claims
    except jose.JoseError:
        return {}


def _expected(token: str, issuer: str | None, audience: str | Sequence[str] | None) -> IamView:
    """The IAM a decoder without an account stands for: one provider for ``issuer``
    with ``audience`` as client IDs; what is not given is taken from the token itself
    ("no expectation": that step passes)."""
    claims = _peek(token) if issuer is None or audience is None else {}
    iss = issuer if issuer is not None else str(claims.get("iss", ""))
    if audience is None:
        auds = as_list(claims.get("aud"))
        azp = claims.get("azp")
        client_ids = [*auds, azp] if isinstance(azp, str) else auds
    else:
        client_ids = as_list(audience)
    return IamView({issuer_host_path(iss): [str(a) for a in client_ids]})


def verify_token(
    token: str,
    jwks: Mapping[str, Any],
    *,
    issuer: str | None = None,
    audience: str | Sequence[str] | None = None,
    providers: Mapping[str, Sequence[str]] | None = None,
    now: float,
) -> Verification:
    """Check a JWT as STS checks the token itself, step by step (:data:`STEPS`).

    ``providers`` is IAM's side: each OIDC provider URL (issuer without ``https://``)
    with its client IDs. Without it, ``issuer`` and ``audience`` (one or several
    accepted values) stand for one provider; left out, the token's own are taken.
    ``now`` is the lab clock; like STS, no leeway.
    """
    iam = IamView(dict(providers)) if providers is not None else _expected(token, issuer, audience)
    steps: list[tuple[str, bool, str]] = []
    seen: list[State] = []

    def observe(step: str, state: State, err: StsError | None) -> None:
        if not seen:
            seen.append(state)
        if err is None:
            steps.append((step, True, state.notes[-1][1]))
        else:
            steps.append((step, False, err.explanation))

    pipeline = Pipeline(iam, now, steps=TOKEN_STEPS, observe=observe)
    try:
        state = pipeline.run(token, keys_from_jwks(jwks))
    except StsError as err:
        got = seen[0] if seen else State(token)
        return Verification(
            False, steps, f"{err.step}: {err.explanation}", got.header, got.claims, err
        )
    return Verification(True, steps, None, state.header, state.claims)


# --- tampering --------------------------------------------------------------------------

_DELETE = object()


def tamper(
    token: str,
    claim: str,
    value: Any = _DELETE,
    *,
    part: str = "payload",
    resign_with: SigningKey | None = None,
) -> str:
    """Change one claim (or header field with ``part="header"``) and re-encode.

    The old signature is kept, so verification fails at ``signature``: that is what
    signing protects. Without ``value`` the claim is removed. ``resign_with`` signs the
    edited token with that key instead (RS256), to show the checks after the signature.
    """
    if part not in ("header", "payload"):
        raise ValueError("part must be 'header' or 'payload'")
    try:
        jws = jose.parse_compact(token.strip())
    except jose.JoseError as exc:
        raise ValueError(str(exc)) from None
    header, claims, parts = dict(jws.header), dict(jws.claims), jws.segments
    target = header if part == "header" else claims
    if value is _DELETE:
        target.pop(claim, None)
    else:
        target[claim] = value

    def enc(obj: Mapping[str, Any]) -> str:
        return jose.b64url_encode(
            json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
        )

    head = enc(header) if part == "header" else parts[0]
    body = enc(claims) if part == "payload" else parts[1]
    if resign_with is None:
        return f"{head}.{body}.{parts[2]}"
    if part != "header":
        header = {**header, "alg": "RS256", "kid": resign_with.kid}
        head = enc(header)
    sig = jose.signature(f"{head}.{body}".encode("ascii"), resign_with.private_key, "RS256")
    return f"{head}.{body}.{jose.b64url_encode(sig)}"


def parse_value(text: str) -> Any:
    """A tamper value typed by a learner: JSON when it parses (numbers, lists), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- the widget ----------------------------------------------------------------------


# Shares of the cell's width per table: the long values and reasons get most.
CLAIMS_WIDTHS = ("13%", "31%", "26%", "30%")
HEADER_WIDTHS = ("20%", "80%")
STEPS_WIDTHS = ("18%", "15%", "67%")
# The rows of inputs wrap onto another line rather than widen the cell.
ROW_LAYOUT = {"flex_flow": "row wrap", "max_width": "100%"}
RESIGN_ENABLED = (
    "sign the edited token with the lab's service-account key, so the checks go on past "
    "the signature"
)
RESIGN_DISABLED = (
    "disabled: this decoder was built without the lab's signing key, so an edited token "
    "keeps its old signature and fails at 'signature' (as it would for anyone without the "
    "key). Build it with TokenDecoder(..., signing_key=lab.control.signing_key()) to enable."
)


def _claims_html(rows: Sequence[ClaimRow]) -> str:
    return html_table(
        ("claim", "value", "meaning", "where IAM/STS uses it"),
        [(r.name, r.value, r.meaning, r.iam) for r in rows],
        caption="Claims (payload)",
        widths=CLAIMS_WIDTHS,
    )


def _verification_html(v: Verification) -> str:
    done = {s: (ok, msg) for s, ok, msg in v.step_results}
    rows, styles = [], []
    for step in STEPS:
        ok, msg = done.get(step, (None, "stopped at an earlier step"))
        rows.append((step, status_word(ok), msg))
        styles.append(STYLE_OK if ok else STYLE_FAIL if ok is False else STYLE_MUTED)
    verdict = f"{OK if v.ok else FAIL} {v.verdict}"
    return (
        html_table(
            ("step", "result", "detail"),
            rows,
            caption="Verification",
            row_styles=styles,
            widths=STEPS_WIDTHS,
        )
        + f"<p><b>{escape(verdict)}</b></p>"
    )


class TokenDecoder(StaticFallback, widgets.VBox):
    """Paste a token; see its header, its claims explained, and the verification steps.

    The tamper controls change one claim and keep the signature (or re-sign with the
    lab key when ``signing_key`` is given and the box is ticked; without a key the box is
    disabled and its tooltip says why). Read the outcome from
    Python with :meth:`state`, :attr:`verification`, :attr:`claims`.
    """

    def __init__(
        self,
        token: str = "",
        *,
        jwks: Mapping[str, Any],
        now: float | Clock | Callable[[], float],
        issuer: str | None = None,
        audience: str | Sequence[str] | None = None,
        providers: Mapping[str, Sequence[str]] | None = None,
        signing_key: SigningKey | None = None,
    ) -> None:
        self.jwks = dict(jwks)
        self.issuer = issuer
        self.audience = audience
        self.providers = None if providers is None else {k: list(v) for k, v in providers.items()}
        self.signing_key = signing_key
        self._now = now
        self.original_token = token
        self.token_input = widgets.Textarea(
            value=token,
            description="JWT",
            placeholder="paste a token (three base64url parts)",
            layout=widgets.Layout(width="auto", height="6em"),
        )
        self.header_html = widgets.HTML()
        self.claims_html = widgets.HTML()
        self.verify_html = widgets.HTML()
        self.claim_input = widgets.Text(value="sub", description="claim")
        self.value_input = widgets.Text(
            value='"system:serviceaccount:kube-system:admin"',
            description="new value",
            placeholder="JSON or text; empty removes the claim",
        )
        self.resign_box = widgets.Checkbox(
            value=False,
            description="re-sign with the lab key",
            disabled=signing_key is None,
            tooltip=RESIGN_DISABLED if signing_key is None else RESIGN_ENABLED,
        )
        self.tamper_button = widgets.Button(
            description="Tamper", icon="pencil", tooltip="change the claim, keep the signature"
        )
        self.reset_button = widgets.Button(description="Restore original", icon="undo")
        self.tamper_button.on_click(lambda _b: self.apply_tamper())
        self.reset_button.on_click(lambda _b: self.restore())
        self.token_input.observe(lambda _c: self._render(), names="value")
        self.verification: Verification = Verification(False, [])
        super().__init__(
            children=[
                self.token_input,
                self.header_html,
                self.claims_html,
                self.verify_html,
                widgets.HTML("<b>Tamper with the token</b>"),
                widgets.HBox(
                    [self.claim_input, self.value_input], layout=widgets.Layout(**ROW_LAYOUT)
                ),
                widgets.HBox(
                    [self.resign_box, self.tamper_button, self.reset_button],
                    layout=widgets.Layout(**ROW_LAYOUT),
                ),
            ],
            layout=widgets.Layout(max_width="100%"),
        )
        self._render()

    def now(self) -> float:
        n = self._now
        if isinstance(n, int | float):
            return float(n)
        if callable(n):
            return float(n())
        return float(n.now())

    token = WidgetText("token_input")

    @property
    def header(self) -> dict[str, Any]:
        return self.verification.header

    @property
    def claims(self) -> dict[str, Any]:
        return self.verification.claims

    def apply_tamper(self) -> str:
        """Apply the claim/value inputs to the current token; returns the new token."""
        raw = str(self.value_input.value)
        value = _DELETE if raw == "" else parse_value(raw)
        key = self.signing_key if self.resign_box.value else None
        self.token = tamper(self.token, str(self.claim_input.value), value, resign_with=key)
        return self.token

    def restore(self) -> None:
        self.token = self.original_token

    def _render(self) -> None:
        now = self.now()
        v = verify_token(
            self.token,
            self.jwks,
            issuer=self.issuer,
            audience=self.audience,
            providers=self.providers,
            now=now,
        )
        self.verification = v
        if v.header:
            self.header_html.value = html_table(
                ("field", "value"),
                [(k, json.dumps(val)) for k, val in v.header.items()],
                caption="Header",
                widths=HEADER_WIDTHS,
            )
            self.claims_html.value = _claims_html(explain_claims(v.claims, now=now))
        else:
            self.header_html.value = "<p>(no readable token)</p>"
            self.claims_html.value = ""
        self.verify_html.value = _verification_html(v)

    # -- the stored output's summary (StaticFallback) --------------------------------

    def static_title(self) -> str:
        return "Token decoder"

    def static_lines(self) -> list[str]:
        """The header's alg and kid, who issued the token to whom, until when, and the
        verification's outcome."""
        v = self.verification
        if not v.header:
            return ["no readable token", f"verification: {v.verdict}"]
        h, c = v.header, v.claims
        lines = [f"header: alg {h.get('alg', '-')}, kid {h.get('kid', '-')}"]
        for name in ("iss", "sub"):
            lines.append(f"{name}: {c.get(name, '(absent)')}")
        aud = as_list(c.get("aud"))
        lines.append(f"aud: {', '.join(aud) if aud else '(absent)'}")
        exp = c.get("exp")
        lines.append(
            f"exp: {utc_text(float(exp)) if isinstance(exp, int | float) else exp or '(absent)'}"
        )
        lines.append(f"verification: {v.verdict}")
        return lines

    def state(self) -> dict[str, Any]:
        """The facts a following plain cell prints: claims, verdict, failing step."""
        v = self.verification
        return {
            "header": dict(v.header),
            "claims": dict(v.claims),
            "ok": v.ok,
            "failed_step": v.failed_step,
            "error": v.error,
            "steps": [(s, ok) for s, ok, _ in v.step_results],
            "sts_answer": None if v.failure is None else (v.failure.code, v.failure.message),
        }
