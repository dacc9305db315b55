"""How long each credential lives: the projected token, the kubelet's renewal, STS's session.

docs/reference/teaching.md §6.3. Two panels share one story: the top one spans the token's
whole lifetime (a day by default) with the kubelet's renewal point; the bottom one
zooms on one STS session (an hour) with the SDK's refresh windows, which are too
short to see on a one-day axis. All times are seconds since the token's ``iat``, so
the figure does not depend on the wall clock.

Facts drawn (constants in :mod:`irsa_lab.constants`): the kubelet rewrites a
projected token once it is older than 80 % of its TTL or older than 24 h; botocore
refreshes credentials in the background from 15 minutes before expiry (advisory) and
blocks callers to refresh from 10 minutes before (mandatory).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Required, TypedDict, Unpack

import ipywidgets as widgets
from matplotlib.figure import Figure

from ..constants import KUBELET_REFRESH_FRACTION, KUBELET_REFRESH_MAX_AGE_S
from .static import StaticFallback
from .text import escape, human_duration, utc_text

__all__ = [
    "ADVISORY_REFRESH_S",
    "MANDATORY_REFRESH_S",
    "Lifetimes",
    "SessionTimes",
    "TimelineWidget",
    "credential_state",
    "figure_png",
    "kubelet_renewal_time",
    "lifetime_figure",
    "now_readout",
    "timeline_facts",
    "token_state",
]

# botocore.credentials: _DEFAULT_ADVISORY_REFRESH_TIMEOUT / _DEFAULT_MANDATORY_REFRESH_TIMEOUT.
ADVISORY_REFRESH_S = 15 * 60
MANDATORY_REFRESH_S = 10 * 60

FIGSIZE = (9.0, 4.2)
FIGURE_TITLE = "Token and credential lifetimes"
# Patterns and words carry the meaning; colours only help.
_STYLE = {
    "token": {"color": "#4c78a8", "hatch": ""},
    "renewal": {"color": "#f58518", "hatch": "//"},
    "fresh": {"color": "#54a24b", "hatch": ""},
    "advisory": {"color": "#eeca3b", "hatch": ".."},
    "mandatory": {"color": "#e45756", "hatch": "xx"},
}


def kubelet_renewal_time(iat: float, exp: float) -> float:
    """When the kubelet rewrites the token: older than 80 % of its TTL or than 24 h."""
    ttl = exp - iat
    return iat + min(KUBELET_REFRESH_FRACTION * ttl, KUBELET_REFRESH_MAX_AGE_S)


def token_state(now: float, iat: float, exp: float, renew_at: float) -> str:
    """``not yet issued``, ``valid``, ``due for renewal`` or ``expired``."""
    if now < iat:
        return "not yet issued"
    if now >= exp:
        return "expired"
    if now >= renew_at:
        return "due for renewal"
    return "valid"


def credential_state(
    now: float,
    issued: float,
    expires: float,
    *,
    advisory_s: float = ADVISORY_REFRESH_S,
    mandatory_s: float = MANDATORY_REFRESH_S,
) -> str:
    """``not yet issued``, ``fresh``, ``advisory refresh``, ``mandatory refresh`` or ``expired``."""
    if now < issued:
        return "not yet issued"
    if now >= expires:
        return "expired"
    if now >= expires - mandatory_s:
        return "mandatory refresh"
    if now >= expires - advisory_s:
        return "advisory refresh"
    return "fresh"


_TOKEN_WORDS = {
    "not yet issued": "the kubelet has not written it yet",
    "valid": "STS accepts it",
    "due for renewal": "the kubelet asks the API server for a new one and rewrites the file",
    "expired": "STS answers ExpiredTokenException (from exp on: no clock-skew tolerance)",
}
_CRED_WORDS = {
    "not yet issued": "the SDK has not called STS yet",
    "fresh": "the SDK uses them as they are",
    "advisory refresh": "the SDK tries to refresh in the background; a failure is only logged",
    "mandatory refresh": "the SDK blocks the next call until it has refreshed them",
    "expired": "AWS refuses them (ExpiredToken); the SDK must have refreshed long before",
}


class SessionTimes(TypedDict, total=False):
    """When one STS session starts and ends, and optionally when the kubelet renews the
    token and how early the SDK refreshes: the keywords every timeline function takes."""

    sts_issued: Required[float]
    sts_expires: Required[float]
    renew_at: float | None
    advisory_s: float
    mandatory_s: float


@dataclass(frozen=True)
class Lifetimes:
    """The token's lifetime and one STS session's, in seconds on the lab clock."""

    token_iat: float
    token_exp: float
    sts_issued: float
    sts_expires: float
    renew_at: float | None = None
    advisory_s: float = ADVISORY_REFRESH_S
    mandatory_s: float = MANDATORY_REFRESH_S

    @property
    def renewal(self) -> float:
        """When the kubelet rewrites the token (``renew_at``, else the kubelet's rule)."""
        if self.renew_at is None:
            return kubelet_renewal_time(self.token_iat, self.token_exp)
        return self.renew_at

    def figure(self, now: float | None = None, title: str = FIGURE_TITLE) -> Figure:
        """What :func:`lifetime_figure` returns."""
        return _figure(self, now, title)

    def facts(self, now: float | None = None) -> dict[str, Any]:
        """What :func:`timeline_facts` returns."""
        iat, renew = self.token_iat, self.renewal
        issued, expires = self.sts_issued, self.sts_expires
        advisory_s, mandatory_s = self.advisory_s, self.mandatory_s
        facts: dict[str, Any] = {
            "token_ttl_s": int(self.token_exp - iat),
            "renew_after_s": int(renew - iat),
            "renew_at": renew,
            "token_exp": self.token_exp,
            "sts_duration_s": int(expires - issued),
            "sts_issued_after_s": int(issued - iat),
            "advisory_refresh_at": expires - advisory_s,
            "mandatory_refresh_at": expires - mandatory_s,
            "advisory_after_issue_s": int(expires - advisory_s - issued),
            "mandatory_after_issue_s": int(expires - mandatory_s - issued),
            "sts_expires": expires,
        }
        if now is not None:
            facts["now_after_iat_s"] = int(now - iat)
            facts["token_state"] = token_state(now, iat, self.token_exp, renew)
            facts["credential_state"] = credential_state(
                now, issued, expires, advisory_s=advisory_s, mandatory_s=mandatory_s
            )
        return facts


def timeline_facts(
    token_iat: float, token_exp: float, *, now: float | None = None, **times: Unpack[SessionTimes]
) -> dict[str, Any]:
    """The numbers the figure draws, as seconds (relative ones counted from ``iat``).

    With ``now``, also which state the token and the credentials are in then.
    """
    return Lifetimes(token_iat, token_exp, **times).facts(now)


def _bar(ax: Any, start: float, end: float, y: float, kind: str, label: str, scale: float) -> None:
    style = _STYLE[kind]
    ax.broken_barh(
        [(start / scale, (end - start) / scale)],
        (y - 0.3, 0.6),
        facecolors=style["color"],
        edgecolor="black",
        hatch=style["hatch"],
        alpha=0.85,
        label=label,
        gid=f"bar-{kind}",
    )


def _label(ax: Any, x: float, y: float, text: str, gid: str, *, ha: str, va: str) -> None:
    """A note beside a bar or a line; ``gid`` names it for tests and for the SVG."""
    ax.text(x, y, text, ha=ha, va=va, fontsize=8, gid=gid)


def lifetime_figure(
    token_iat: float,
    token_exp: float,
    *,
    now: float | None = None,
    title: str = FIGURE_TITLE,
    **times: Unpack[SessionTimes],
) -> Figure:
    """A two-panel figure: the token's day on top, one STS session below.

    Returned, not shown (no pyplot state). Every bar and line carries a text label.
    """
    return Lifetimes(token_iat, token_exp, **times).figure(now, title)


def _figure(times: Lifetimes, now: float | None, title: str) -> Figure:
    token_iat, token_exp = times.token_iat, times.token_exp
    sts_issued, sts_expires = times.sts_issued, times.sts_expires
    advisory_s, mandatory_s = times.advisory_s, times.mandatory_s
    f = times.facts(now)
    fig = Figure(figsize=FIGSIZE, dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1, height_ratios=[1.3, 1])
    fig.suptitle(title)

    # Top: the token, in hours since iat.
    h = 3600.0
    ttl = token_exp - token_iat
    renew = f["renew_at"] - token_iat
    _bar(top, 0, renew, 1, "token", "projected token: valid", h)
    _bar(top, renew, ttl, 1, "renewal", "projected token: due for renewal", h)
    s0, s1 = sts_issued - token_iat, sts_expires - token_iat
    _bar(top, s0, s1, 0, "fresh", "STS session", h)
    top.axvline(renew / h, color="black", linestyle="--", linewidth=1, gid="renewal-line")
    pct = round(100 * renew / ttl) if ttl else 0
    renews = f"kubelet renews ({pct} % of TTL, {human_duration(renew)})"
    _label(top, renew / h, 1.45, renews, "renewal-label", ha="center", va="bottom")
    token_exp_text = f" exp ({human_duration(ttl)})"
    _label(top, ttl / h, 1.0, token_exp_text, "token-exp-label", ha="left", va="center")
    top.set_yticks([0, 1], ["STS session", "projected token"])
    top.set_ylim(-0.6, 2.5)
    top.set_xlim(0, max(ttl, s1) / h * 1.12)
    top.set_xlabel("hours since the token was issued (iat)")

    # Bottom: one STS session, in minutes since issue.
    m = 60.0
    dur = sts_expires - sts_issued
    adv, man = dur - advisory_s, dur - mandatory_s
    _bar(bottom, 0, adv, 0, "fresh", "credentials: fresh", m)
    _bar(bottom, adv, man, 0, "advisory", "SDK advisory refresh window (15 min)", m)
    _bar(bottom, man, dur, 0, "mandatory", "SDK mandatory refresh window (10 min)", m)
    advisory = f"advisory\n{human_duration(advisory_s)} before"
    _label(bottom, adv / m, 0.45, advisory, "advisory-label", ha="center", va="bottom")
    mandatory = f"mandatory\n{human_duration(mandatory_s)} before"
    _label(bottom, man / m, -0.45, mandatory, "mandatory-label", ha="center", va="top")
    expiration = f" Expiration ({human_duration(dur)})"
    _label(bottom, dur / m, 0.0, expiration, "sts-exp-label", ha="left", va="center")
    bottom.set_yticks([0], ["STS credentials"])
    bottom.set_ylim(-1.4, 2.2)
    bottom.set_xlim(0, dur / m * 1.25)
    bottom.set_xlabel("minutes since STS issued the credentials")

    if now is not None:
        top.axvline((now - token_iat) / h, color="purple", linewidth=2, gid="now-line")
        top.text(
            (now - token_iat) / h,
            -0.55,
            " now",
            color="purple",
            fontsize=9,
            va="bottom",
            gid="now-label",
        )
        # The credentials panel spans one session: a "now" outside it is marked at
        # the edge it lies beyond, with how far.
        rel = now - sts_issued
        if 0 <= rel <= dur * 1.25:
            bottom.axvline(rel / m, color="purple", linewidth=2, gid="now-line-session")
            now_text, now_x, now_ha = " now", rel / m, "left"
        elif rel < 0:
            now_text = f"\u2190 now: {human_duration(-rel)} before STS issued them"
            now_x, now_ha = 0.0, "left"
        else:
            now_text = f"now: {human_duration(rel - dur)} after they expired \u2192"
            now_x, now_ha = dur / m * 1.25, "right"
        bottom.text(
            now_x,
            -1.35,
            now_text,
            color="purple",
            fontsize=9,
            ha=now_ha,
            va="bottom",
            gid="now-label-session",
        )
    top.legend(loc="upper left", fontsize=8, frameon=False)
    bottom.legend(loc="upper left", fontsize=8, frameon=False, ncols=3)
    return fig


def alt_text(facts: dict[str, Any]) -> str:
    """A text alternative for the figure, from :func:`timeline_facts`."""
    lines = [
        f"The projected token lives {human_duration(facts['token_ttl_s'])}; the kubelet "
        f"renews it {human_duration(facts['renew_after_s'])} after it was issued.",
        f"The STS credentials live {human_duration(facts['sts_duration_s'])}; the SDK starts "
        f"refreshing them {human_duration(facts['advisory_after_issue_s'])} after issue "
        f"(advisory) and must refresh {human_duration(facts['mandatory_after_issue_s'])} after "
        "issue (mandatory).",
    ]
    if "token_state" in facts:
        lines.append(
            f"At {human_duration(facts['now_after_iat_s'])} after iat the token is "
            f"{facts['token_state']} and the credentials are {facts['credential_state']}."
        )
    return " ".join(lines)


# The widget shows the PNG at its own size (900 px for FIGSIZE), so a point of font is
# PNG_DPI/72 pixels: at 100 dpi the smallest text (8 pt) is 11 px, readable on a projector.
PNG_DPI = 100


def figure_png(fig: Figure, dpi: int = PNG_DPI) -> bytes:
    """PNG bytes of a figure, without the version metadata (stable across runs)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def now_readout(after_iat_s: float) -> str:
    """The slider's position in words: ``2 h 30 min after iat``."""
    return f"{human_duration(after_iat_s)} after iat"


class TimelineWidget(StaticFallback, widgets.VBox):
    """The lifetime figure with a "now" slider and a caption.

    The slider counts seconds since ``iat``; beside it a readout says where it is in
    hours and minutes (``19 h 12 min after iat``). Moving it redraws the figure into an
    ``Image`` and rewrites the caption; :meth:`state` gives the same facts for a plain
    notebook cell, and the stored output reads as text before the cell runs.
    """

    def __init__(
        self,
        token_iat: float,
        token_exp: float,
        *,
        now_after_iat_s: int = 0,
        step_s: int = 60,
        render: bool = True,
        **times: Unpack[SessionTimes],
    ) -> None:
        self.lifetimes = Lifetimes(token_iat, token_exp, **times)
        self.token_iat, self.token_exp = token_iat, token_exp
        self.render_images = render
        end = int(max(token_exp, self.lifetimes.sts_expires) - token_iat)
        self.slider = widgets.IntSlider(
            value=now_after_iat_s,
            min=0,
            max=end,
            step=step_s,
            description="now",
            readout=False,  # raw seconds; the readout beside it says hours and minutes
            continuous_update=False,
            layout=widgets.Layout(flex="1 1 auto", width="auto"),
            style={"description_width": "initial"},
        )
        self.readout = widgets.Label(layout=widgets.Layout(width="12em"))
        self.image = widgets.Image(format="png")
        self.caption = widgets.HTML()
        self.slider.observe(lambda _c: self._render(), names="value")
        controls = widgets.HBox(
            [self.slider, self.readout], layout=widgets.Layout(width="100%", align_items="center")
        )
        super().__init__(children=[controls, self.image, self.caption])
        self._render()

    def static_title(self) -> str:
        return "Token and credential lifetimes (timeline)"

    def static_lines(self) -> list[str]:
        f = self.facts()
        ttl = f["token_ttl_s"]
        pct = round(100 * f["renew_after_s"] / ttl) if ttl else 0
        return [
            f"projected token: lives {human_duration(ttl)}, from "
            f"{utc_text(self.token_iat)} to {utc_text(self.token_exp)}",
            f"kubelet renewal: at {pct} % of its lifetime, "
            f"{human_duration(f['renew_after_s'])} after iat",
            f"STS credentials: expire {human_duration(f['sts_duration_s'])} after issue; the "
            f"SDK refreshes them from {human_duration(self.lifetimes.advisory_s)} before "
            f"(advisory) and {human_duration(self.lifetimes.mandatory_s)} before (mandatory)",
            f"now: {now_readout(f['now_after_iat_s'])}: token {f['token_state']}, "
            f"credentials {f['credential_state']}",
        ]

    @property
    def now(self) -> float:
        return self.token_iat + int(self.slider.value)

    @now.setter
    def now(self, value: float) -> None:
        self.slider.value = int(value - self.token_iat)

    def facts(self) -> dict[str, Any]:
        return self.lifetimes.facts(self.now)

    def state(self) -> dict[str, Any]:
        f = self.facts()
        return {
            "now_after_iat_s": f["now_after_iat_s"],
            "token_state": f["token_state"],
            "credential_state": f["credential_state"],
        }

    def _render(self) -> None:
        f = self.facts()
        self.readout.value = now_readout(f["now_after_iat_s"])
        if self.render_images:
            fig = self.lifetimes.figure(self.now)
            self.image.value = figure_png(fig)
        ts, cs = f["token_state"], f["credential_state"]
        self.caption.value = (
            f"<p><b>At {escape(utc_text(self.now))}</b> "
            f"({escape(human_duration(f['now_after_iat_s']))} after iat):</p><ul>"
            f"<li>projected token: <b>{escape(ts)}</b>: {escape(_TOKEN_WORDS[ts])}</li>"
            f"<li>STS credentials: <b>{escape(cs)}</b>: {escape(_CRED_WORDS[cs])}</li></ul>"
            f"<p><i>{escape(alt_text(f))}</i></p>"
        )
