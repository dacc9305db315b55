"""The STS exchange as a sequence diagram, drawn from what the components recorded.

docs/reference/teaching.md §6.2. :func:`steps_from_trace` maps :class:`~irsa_lab.trace.TraceEvent`
records onto lanes (API server, kubelet, token file, pod/SDK, STS, OIDC discovery, JWKS,
IAM trust check, S3), in the order they happened; every arrow is an event some
component recorded, none is added here. :func:`sequence_figure` draws lifelines and numbered arrows with matplotlib, and
marks a failed step three ways: a red arrow, an ``X`` at its end, and the words
``FAILED: <code>``. :func:`mermaid` gives the same steps as a Mermaid block, which
JupyterLab renders from Markdown and a screen reader or a copy-paste can use as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..trace import TraceEvent

__all__ = [
    "COMPONENT_LANES",
    "LANES",
    "Step",
    "describe_steps",
    "figure_texts",
    "lane_of",
    "mermaid",
    "reference_steps",
    "sequence_figure",
    "side_by_side_figure",
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
FAIL_COLOR = "#d62728"
OK_COLOR = "#333333"


@dataclass(frozen=True)
class Step:
    """One arrow: ``source`` lane asks ``target`` lane for ``label``; ``ok`` or not.

    ``outcome`` is ``"ok"`` or the error code, shown next to a failed step.
    """

    source: str
    target: str
    label: str
    ok: bool = True
    outcome: str = "ok"

    @property
    def reply(self) -> bool:
        return self.label.endswith(" reply")


def lane_of(component: str, call: str = "") -> str | None:
    """The lane of a trace component (None when it has none)."""
    lane = COMPONENT_LANES.get(component)
    if component == "oidc" and ("jwks" in call.lower() or "keys" in call.lower()):
        return "JWKS"
    return lane


def steps_from_trace(events: Iterable[TraceEvent], *, lanes: Sequence[str] = LANES) -> list[Step]:
    """Map recorded events to steps in the order they happened (``wall``, then ``seq``);
    events off ``lanes`` are dropped."""
    steps = []
    for ev in sorted(events, key=lambda e: (e.wall, e.seq)):
        src, dst = lane_of(ev.source, ev.call), lane_of(ev.target, ev.call)
        if src is None or dst is None or src not in lanes or dst not in lanes:
            continue
        if ev.source == "sts" and ev.target == "oidc":
            src = "STS"
        steps.append(Step(src, dst, ev.call, ev.ok, ev.outcome))
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
    calls = [
        Step("kubelet", "API server", "TokenRequest"),
        Step("kubelet", "token file", "write"),
        Step("pod/SDK", "token file", "read token"),
        Step("pod/SDK", "STS", "AssumeRoleWithWebIdentity"),
        *(Step("STS", lane, label) for lane, label in _STS_CHECKS),
        _STS_REPLY,
        Step("pod/SDK", "S3", "ListBuckets"),
    ]
    if fail is None:
        return calls
    out: list[Step] = []
    for s in calls:
        if s.label == fail:
            out.append(replace(s, ok=False, outcome=code))
            out.append(replace(_STS_REPLY, ok=False, outcome=code))
            return out
        out.append(s)
    raise ValueError(f"no step named {fail!r}")


def _lanes_used(steps: Sequence[Step], lanes: Sequence[str]) -> list[str]:
    used = {s.source for s in steps} | {s.target for s in steps}
    ordered = [lane for lane in lanes if lane in used]
    return ordered + sorted(used - set(ordered))


def _label(i: int, step: Step) -> str:
    text = f"{i}. {step.label}"
    return text if step.ok else f"{text}  FAILED: {step.outcome}"


def _draw(ax: Axes, steps: Sequence[Step], title: str, cols: Sequence[str], rows: int = 0) -> None:
    x = {lane: i for i, lane in enumerate(cols)}
    n = max(len(steps), rows)
    bottom = -(n + 0.8)
    for lane, xi in x.items():
        ax.plot(
            [xi, xi],
            [0, bottom],
            linestyle="--",
            color="#888888",
            linewidth=1,
            gid=f"lifeline-{lane}",
        )
        ax.text(
            xi,
            0.35,
            lane,
            ha="center",
            va="bottom",
            fontsize=8,
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
                [y + 0.15, y + 0.15, y - 0.15],
                color=color,
                linestyle=style,
                linewidth=width,
            )
            start, end = (x0 + 0.25, y - 0.15), (x0, y - 0.15)
            tx, ha = x0 + 0.3, "left"
        else:
            arrow["linestyle"] = style
            start, end = (x0, y), (x1, y)
            tx, ha = (x0 + x1) / 2, "center"
        arrow["linewidth"] = width
        ax.annotate("", xy=end, xytext=start, arrowprops=arrow, gid=f"arrow-{i}")
        ax.text(
            tx,
            y + 0.08,
            _label(i, step),
            ha=ha,
            va="bottom",
            fontsize=7.5,
            color=color,
            fontweight=weight,
            gid=f"label-{i}",
        )
        if not step.ok:
            ax.plot(
                [end[0]],
                [end[1]],
                marker="X",
                markersize=13,
                color=FAIL_COLOR,
                markeredgecolor="black",
                linestyle="none",
                gid=f"failed-marker-{i}",
            )
    ax.set_xlim(-0.6, max(len(cols) - 1, 1) + 0.8)
    ax.set_ylim(bottom, 1.0)
    ax.set_axis_off()
    failed = [s for s in steps if not s.ok]
    status = f"FAILED: {failed[0].outcome}" if failed else "all steps ok"
    ax.set_title(f"{title} ({status})", fontsize=10, color=FAIL_COLOR if failed else OK_COLOR)


def sequence_figure(
    steps: Sequence[Step], *, title: str = "AssumeRoleWithWebIdentity", lanes: Sequence[str] = LANES
) -> Figure:
    """One sequence diagram; size depends only on the number of lanes and steps."""
    ncols = len(_lanes_used(steps, lanes))
    fig = Figure(
        figsize=(max(6.0, 1.5 * ncols + 1.5), 1.4 + 0.42 * len(steps)),
        dpi=100,
        layout="constrained",
    )
    _draw(fig.add_subplot(), steps, title, _lanes_used(steps, lanes))
    return fig


def side_by_side_figure(
    ok_steps: Sequence[Step],
    failed_steps: Sequence[Step],
    *,
    titles: tuple[str, str] = ("works", "fails"),
    lanes: Sequence[str] = LANES,
) -> Figure:
    """The working exchange next to the broken one, on the same lanes."""
    n = max(len(ok_steps), len(failed_steps))
    ncols = len(_lanes_used([*ok_steps, *failed_steps], lanes))
    fig = Figure(
        figsize=(2 * max(5.0, 1.05 * ncols + 1.0), 1.4 + 0.42 * n), dpi=100, layout="constrained"
    )
    left, right = fig.subplots(1, 2)
    used = _lanes_used([*ok_steps, *failed_steps], lanes)
    _draw(left, ok_steps, titles[0], used, n)
    _draw(right, failed_steps, titles[1], used, n)
    return fig


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
        label = step.label if step.ok else f"{step.label} FAILED: {step.outcome}"
        lines.append(f"    {a}{arrow}{b}: {_mermaid_text(label)}")
    body = "\n".join(lines)
    return f"```mermaid\n{body}\n```" if fenced else body


def describe_steps(steps: Sequence[Step]) -> str:
    """A numbered plain-text list of the steps (the figure's text alternative)."""
    out = []
    for i, s in enumerate(steps, 1):
        mark = "+" if s.ok else "-"
        result = "ok" if s.ok else f"FAILED: {s.outcome}"
        out.append(f"{mark} {i:>2}. {s.source} -> {s.target}: {s.label} ({result})")
    return "\n".join(out)


def figure_texts(fig: Figure) -> list[str]:
    """Every text drawn in a figure, in drawing order (titles included): for tests and alt text."""
    texts: list[Any] = []
    for ax in fig.axes:
        texts.append(ax.title)
        texts.extend(ax.texts)
    return [t.get_text() for t in texts if t.get_text()]
