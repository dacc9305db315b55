"""The STS exchange as a sequence diagram, drawn from what the components recorded.

docs/reference/teaching.md §6.2. :func:`steps_from_trace` maps :class:`~irsa_lab.trace.TraceEvent`
records onto lanes (API server, kubelet, token file, pod/SDK, STS, OIDC discovery, JWKS,
IAM trust check, S3), in the order they happened; every arrow is an event some
component recorded, none is added here. A call its caller recorded once the answer had
come back (the kubelet's TokenRequest, STS's fetches of the discovery document and the
JWKS) is one round trip: it is drawn as the request and, when it succeeded, the reply.
:func:`sequence_figure` draws lifelines and numbered arrows with matplotlib, and marks a
failed step three ways: a red arrow, an ``X`` at its end, and the words
``FAILED: <code>``. :func:`mermaid` gives the same steps as a Mermaid block, which
JupyterLab renders from Markdown and a screen reader or a copy-paste can use as text.

The figures are made to be read on a projector: at most :data:`DISPLAY_WIDTH_PX` wide
at :data:`FIGURE_DPI` (so a notebook cell shows them at their own size) and no text
under :data:`MIN_TEXT_PX` pixels high. Each label starts at the left end of its arrow,
above it, on a white ground, so it never crosses the lifeline it starts from nor hides
under a failure mark.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.transforms import ScaledTranslation

from ..trace import TraceEvent

__all__ = [
    "COMPONENT_LANES",
    "DISPLAY_WIDTH_PX",
    "FIGURE_DPI",
    "LANES",
    "MIN_TEXT_PX",
    "ROUND_TRIPS",
    "Step",
    "describe_steps",
    "figure_texts",
    "lane_of",
    "mermaid",
    "reference_steps",
    "sequence_figure",
    "side_by_side_figure",
    "stacked_figure",
    "steps_from_trace",
]

# Left to right as the token travels: the kubelet asks the API server for it and
# writes it to the file, the SDK reads it there and takes it to STS.
LANES: tuple[str, ...] = (
    "API server",
    "kubelet",
    "token file",
    "pod/SDK",
    "STS",
    "OIDC discovery",
    "JWKS",
    "IAM trust check",
    "S3",
)
# Trace component -> lane; "oidc" is split by call (discovery document vs JWKS).
COMPONENT_LANES: dict[str, str] = {
    "pod": "pod/SDK",
    "sdk": "pod/SDK",
    "token-file": "token file",
    "kubelet": "kubelet",
    "sts": "STS",
    "oidc": "OIDC discovery",
    "iam": "IAM trust check",
    "s3": "S3",
    "imds": "IMDS",
    "apiserver": "API server",
    "webhook": "webhook",
}
_MERMAID_IDS = {
    "pod/SDK": "SDK",
    "token file": "TokenFile",
    "STS": "STS",
    "OIDC discovery": "OIDC",
    "JWKS": "JWKS",
    "IAM trust check": "IAM",
    "S3": "S3",
    "IMDS": "IMDS",
    "API server": "API",
    "kubelet": "Kubelet",
    "webhook": "Webhook",
}
# Lane names on two lines where one would be wider than the space between lifelines.
_LANE_TITLES = {
    "API server": "API\nserver",
    "token file": "token\nfile",
    "OIDC discovery": "OIDC\ndiscovery",
    "IAM trust check": "IAM trust\ncheck",
}
FAIL_COLOR = "#d62728"
OK_COLOR = "#333333"

# A JupyterLab notebook cell is about 1,000 px wide (browser at 1280 to 1440 px); a
# wider PNG is scaled down to fit, and its text with it. At FIGURE_DPI a figure at most
# DISPLAY_WIDTH_PX wide is shown at its own size, so a point of font is dpi/72 pixels.
DISPLAY_WIDTH_PX = 1000
FIGURE_DPI = 100
MIN_TEXT_PX = 11
_TEXT_PT = 10.0  # 13.9 px at 100 dpi: still 11.8 px in a cell as narrow as 850 px
_TITLE_PT = 12.0
_ROW_IN = 0.45  # one arrow per row: its label (above it) and a failure mark fit
_HEAD_ROWS = 2.4  # the lane boxes above the first arrow, in rows
_MARKER_PT = 12.0
_LABEL_OFFSET_PT = (7.0, 8.0)  # right of the arrow's left end, above the arrow


@dataclass(frozen=True)
class Step:
    """One arrow: ``source`` lane asks ``target`` lane for ``label``; ``ok`` or not.

    ``outcome`` is ``"ok"`` or the error code, shown next to a failed step.
    ``carries`` names what a reply brings back (``"credentials"``, ``"token"``).
    """

    source: str
    target: str
    label: str
    ok: bool = True
    outcome: str = "ok"
    carries: str = ""

    @property
    def reply(self) -> bool:
        return self.label.endswith(" reply")

    @property
    def text(self) -> str:
        """The label with what the reply carries: ``AssumeRoleWithWebIdentity reply: credentials``."""
        return f"{self.label}: {self.carries}" if self.carries else self.label


def lane_of(component: str, call: str = "") -> str | None:
    """The lane of a trace component (None when it has none)."""
    lane = COMPONENT_LANES.get(component)
    if component == "oidc" and ("jwks" in call.lower() or "keys" in call.lower()):
        return "JWKS"
    return lane


# Calls whose caller records them once the answer is back, and what a good answer
# carries: the event is the round trip, drawn as the request and its reply.
ROUND_TRIPS: dict[str, str] = {
    "TokenRequest": "token",
    "renew TokenRequest": "token",
    "GET openid-configuration": "discovery document",
    "GET jwks": "keys",
}
# Replies recorded as events of their own, and what a good one carries.
_REPLIES: dict[str, str] = {"AssumeRoleWithWebIdentity reply": "credentials"}


def steps_from_trace(events: Iterable[TraceEvent], *, lanes: Sequence[str] = LANES) -> list[Step]:
    """Map recorded events to steps in the order they happened (``wall``, then ``seq``);
    events off ``lanes`` are dropped.

    A successful :data:`ROUND_TRIPS` event gives two steps, the request and the reply
    (the caller recorded it after the reply came); a failed one gives the failed request.
    """
    steps = []
    for ev in sorted(events, key=lambda e: (e.wall, e.seq)):
        src, dst = lane_of(ev.source, ev.call), lane_of(ev.target, ev.call)
        if src is None or dst is None or src not in lanes or dst not in lanes:
            continue
        carries = _REPLIES.get(ev.call, "") if ev.ok else ""
        steps.append(Step(src, dst, ev.call, ev.ok, ev.outcome, carries))
        if ev.ok and ev.call in ROUND_TRIPS and src != dst:
            steps.append(Step(dst, src, f"{ev.call} reply", carries=ROUND_TRIPS[ev.call]))
    return steps


# What STS does between the request and its reply, and the lane it asks each time.
_STS_CHECKS = (
    ("STS", "parse token"),
    ("IAM trust check", "find OIDC provider"),
    ("OIDC discovery", "GET openid-configuration"),
    ("JWKS", "GET jwks"),
    ("STS", "verify signature"),
    ("STS", "check claims"),
    ("IAM trust check", "evaluate trust policy"),
)
_STS_REPLY = Step("STS", "pod/SDK", "AssumeRoleWithWebIdentity reply")


def reference_steps(fail: str | None = None, code: str = "AccessDenied") -> list[Step]:
    """The textbook exchange; ``fail`` names a step label whose check fails with ``code``.

    Steps after a failure are dropped, except the error reply to the SDK.
    """
    calls: list[Step] = []
    for s in [
        Step("kubelet", "API server", "TokenRequest"),
        Step("kubelet", "token file", "write"),
        Step("pod/SDK", "token file", "read token"),
        Step("pod/SDK", "STS", "AssumeRoleWithWebIdentity"),
        *(Step("STS", lane, label) for lane, label in _STS_CHECKS),
        replace(_STS_REPLY, carries=_REPLIES[_STS_REPLY.label]),
        Step("pod/SDK", "S3", "ListBuckets"),
    ]:
        calls.append(s)
        if s.label in ROUND_TRIPS:
            calls.append(Step(s.target, s.source, f"{s.label} reply", carries=ROUND_TRIPS[s.label]))
    if fail is None:
        return calls
    out: list[Step] = []
    for s in calls:
        if s.label == fail:
            out.append(replace(s, ok=False, outcome=code, carries=""))
            out.append(replace(_STS_REPLY, ok=False, outcome=code))
            return out
        out.append(s)
    raise ValueError(f"no step named {fail!r}")


def _lanes_used(steps: Sequence[Step], lanes: Sequence[str]) -> list[str]:
    used = {s.source for s in steps} | {s.target for s in steps}
    ordered = [lane for lane in lanes if lane in used]
    return ordered + sorted(used - set(ordered))


def _label(i: int, step: Step) -> str:
    text = f"{i}. {step.text}"
    return text if step.ok else f"{text}  FAILED: {step.outcome}"


def _draw(ax: Axes, steps: Sequence[Step], title: str, cols: Sequence[str], rows: int = 0) -> None:
    x = {lane: i for i, lane in enumerate(cols)}
    n = max(len(steps), rows)
    bottom = -(n + 0.6)
    # Labels sit a few points right of and above the arrow's left end, whatever the scale.
    dx, dy = (pt / 72 for pt in _LABEL_OFFSET_PT)
    above = ax.transData + ScaledTranslation(dx, dy, ax.figure.dpi_scale_trans)
    for lane, xi in x.items():
        ax.plot(
            [xi, xi],
            [0.3, bottom],
            linestyle="--",
            color="#888888",
            linewidth=1,
            gid=f"lifeline-{lane}",
        )
        ax.text(
            xi,
            0.55,
            _LANE_TITLES.get(lane, lane),
            ha="center",
            va="bottom",
            fontsize=_TEXT_PT,
            linespacing=1.1,
            bbox={"boxstyle": "round,pad=0.3", "facecolor": "#eeeeee", "edgecolor": "#555555"},
            gid=f"lane-{lane}",
        )
    for i, step in enumerate(steps, 1):
        y = -float(i)
        color = OK_COLOR if step.ok else FAIL_COLOR
        weight = "normal" if step.ok else "bold"
        x0, x1 = x[step.source], x[step.target]
        style = "--" if step.reply else "-"
        width = 1.2 if step.ok else 2.2
        arrow: dict[str, Any] = {"arrowstyle": "->", "color": color}
        if x0 == x1:  # a check inside one component: a small loop to the right
            ax.plot(
                [x0, x0 + 0.25, x0 + 0.25],
                [y, y, y - 0.25],
                color=color,
                linestyle=style,
                linewidth=width,
            )
            start, end = (x0 + 0.25, y - 0.25), (x0, y - 0.25)
        else:
            arrow["linestyle"] = style
            start, end = (x0, y), (x1, y)
        arrow["linewidth"] = width
        ax.annotate("", xy=end, xytext=start, arrowprops=arrow, gid=f"arrow-{i}")
        ax.text(
            min(x0, x1),
            y,
            _label(i, step),
            transform=above,
            ha="left",
            va="bottom",
            fontsize=_TEXT_PT,
            color=color,
            fontweight=weight,
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"},
            gid=f"label-{i}",
        )
        if not step.ok:
            ax.plot(
                [end[0]],
                [end[1]],
                marker="X",
                markersize=_MARKER_PT,
                color=FAIL_COLOR,
                markeredgecolor="black",
                linestyle="none",
                gid=f"failed-marker-{i}",
            )
    ax.set_xlim(-0.6, max(len(cols) - 1, 1) + 0.6)
    ax.set_ylim(bottom, _HEAD_ROWS - 0.6)
    ax.set_axis_off()
    failed = [s for s in steps if not s.ok]
    status = f"FAILED: {failed[0].outcome}" if failed else "all steps ok"
    ax.set_title(
        f"{title} ({status})", fontsize=_TITLE_PT, color=FAIL_COLOR if failed else OK_COLOR
    )


def _width_in(ncols: int) -> float:
    """About 1.1 in per lane, never wider than the notebook cell shows unscaled."""
    return min(DISPLAY_WIDTH_PX / FIGURE_DPI, max(6.0, 1.1 * ncols + 1.0))


def _height_in(rows: int) -> float:
    return _ROW_IN * (rows + _HEAD_ROWS) + 0.5  # + the title


def sequence_figure(
    steps: Sequence[Step], *, title: str = "AssumeRoleWithWebIdentity", lanes: Sequence[str] = LANES
) -> Figure:
    """One sequence diagram; size depends only on the number of lanes and steps."""
    cols = _lanes_used(steps, lanes)
    fig = Figure(
        figsize=(_width_in(len(cols)), _height_in(len(steps))),
        dpi=FIGURE_DPI,
        layout="constrained",
    )
    _draw(fig.add_subplot(), steps, title, cols)
    return fig


def stacked_figure(
    ok_steps: Sequence[Step],
    failed_steps: Sequence[Step],
    *,
    titles: tuple[str, str] = ("works", "fails"),
    lanes: Sequence[str] = LANES,
) -> Figure:
    """The working exchange above the broken one, each the full width, on the same lanes."""
    n = max(len(ok_steps), len(failed_steps))
    cols = _lanes_used([*ok_steps, *failed_steps], lanes)
    fig = Figure(
        figsize=(_width_in(len(cols)), 2 * _height_in(n)), dpi=FIGURE_DPI, layout="constrained"
    )
    top, below = fig.subplots(2, 1)
    _draw(top, ok_steps, titles[0], cols, n)
    _draw(below, failed_steps, titles[1], cols, n)
    return fig


# The name notebooks used when the two were drawn next to each other.
side_by_side_figure = stacked_figure


def _mermaid_text(text: str) -> str:
    # ";" ends a statement and "#" starts an entity code in Mermaid.
    return text.replace(";", ",").replace("#", "#35;")


def mermaid(steps: Sequence[Step], *, lanes: Sequence[str] = LANES, fenced: bool = True) -> str:
    """The steps as a Mermaid ``sequenceDiagram`` (in a ```mermaid fence by default).

    Failed steps use the cross arrow (``-x``/``--x``) and say ``FAILED: <code>``.
    """
    lines = ["sequenceDiagram", "    autonumber"]
    for lane in _lanes_used(steps, lanes):
        ident = _MERMAID_IDS.get(lane, "".join(ch for ch in lane if ch.isalnum()))
        lines.append(f"    participant {ident} as {lane}")
    for step in steps:
        a = _MERMAID_IDS.get(step.source, step.source)
        b = _MERMAID_IDS.get(step.target, step.target)
        arrow = ("--" if step.reply else "-") + (">>" if step.ok else "x")
        label = step.text if step.ok else f"{step.text} FAILED: {step.outcome}"
        lines.append(f"    {a}{arrow}{b}: {_mermaid_text(label)}")
    body = "\n".join(lines)
    return f"```mermaid\n{body}\n```" if fenced else body


def describe_steps(steps: Sequence[Step]) -> str:
    """A numbered plain-text list of the steps (the figure's text alternative)."""
    out = []
    for i, s in enumerate(steps, 1):
        mark = "+" if s.ok else "-"
        result = "ok" if s.ok else f"FAILED: {s.outcome}"
        out.append(f"{mark} {i:>2}. {s.source} -> {s.target}: {s.text} ({result})")
    return "\n".join(out)


def figure_texts(fig: Figure) -> list[str]:
    """Every text drawn in a figure, in drawing order (titles included): for tests and alt text."""
    texts: list[Any] = []
    for ax in fig.axes:
        texts.append(ax.title)
        texts.extend(ax.texts)
    return [t.get_text() for t in texts if t.get_text()]
