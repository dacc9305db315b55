"""The sequence diagram on a projector: text size, overlaps, and the arrows it draws.

Sizes are measured as a notebook shows them: the PNG ``as_png`` makes, scaled down to
the cell's width when it is wider, and the extents matplotlib draws the text at.
"""

from __future__ import annotations

import struct
from itertools import combinations
from typing import Any

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.lessons.sts_call import as_png
from irsa_lab.trace import Trace
from irsa_lab.ui.sequence import (
    LANES,
    Step,
    mermaid,
    reference_steps,
    sequence_figure,
    stacked_figure,
    steps_from_trace,
)

# A JupyterLab cell at a 1280 to 1440 px browser window is about 1,000 px wide; an image
# wider than the cell is scaled down to it.
CELL_WIDTH_PX = 1000
MIN_PX = 11


def png_width(fig: Figure) -> int:
    data = as_png(fig).data
    assert data[12:16] == b"IHDR"
    return int(struct.unpack(">I", data[16:20])[0])


def smallest_text_px(fig: Figure) -> float:
    """The em height, in screen pixels, of the smallest text once the cell shows the PNG."""
    scale = min(1.0, CELL_WIDTH_PX / png_width(fig))
    texts = [t for ax in fig.axes for t in [ax.title, *ax.texts] if t.get_text()]
    return min(t.get_fontsize() for t in texts) * fig.dpi / 72 * scale


def drawn(fig: Figure) -> Any:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def by_gid(ax: Any, prefix: str) -> list[Any]:
    return [a for a in ax.get_children() if (a.get_gid() or "").startswith(prefix)]


def extent(artist: Any, renderer: Any) -> Bbox:
    """What covers the screen: a text's box when it has one, else its glyphs."""
    if isinstance(artist, Text) and artist.get_bbox_patch() is not None:
        return artist.get_bbox_patch().get_window_extent(renderer)
    return artist.get_window_extent(renderer)


def label(ax: Any, words: str) -> Text:
    """The step label that reads ``<n>. <words>``."""
    (found,) = [t for t in by_gid(ax, "label-") if t.get_text().split(". ", 1)[1] == words]
    return found


def failed_trace() -> list[Step]:
    t = Trace(ManualClock(LAB_EPOCH))
    t.record("kubelet", "apiserver", "TokenRequest", recorder="kubelet")
    t.record("kubelet", "token-file", "write", recorder="kubelet")
    t.record("sdk", "token-file", "read token", recorder="exec-hook")
    t.record("sdk", "sts", "AssumeRoleWithWebIdentity")
    t.record("sts", "sts", "parse token")
    t.record("sts", "iam", "find OIDC provider")
    t.record("sts", "oidc", "GET openid-configuration")
    t.record("sts", "oidc", "GET jwks")
    t.record("sts", "sts", "verify signature")
    t.record("sts", "sts", "check claims")
    t.record("sts", "iam", "evaluate trust policy", "AccessDenied")
    t.record("sts", "sdk", "AssumeRoleWithWebIdentity reply", "AccessDenied")
    return steps_from_trace(t.events())


FIGURES = {
    "one run": lambda: sequence_figure(reference_steps(), title="aws s3 ls in mypod"),
    "failed run": lambda: sequence_figure(failed_trace(), title="sub condition wrong"),
    "stacked": lambda: stacked_figure(
        reference_steps(), failed_trace(), titles=("trust policy correct", "sub condition wrong")
    ),
}


@pytest.mark.parametrize("name", FIGURES)
def test_no_text_is_smaller_than_11_px_at_the_notebooks_width(name: str) -> None:
    fig = FIGURES[name]()
    assert smallest_text_px(fig) >= MIN_PX


def test_a_figure_wider_than_the_cell_would_fail_the_size_check() -> None:
    fig = sequence_figure(reference_steps())
    fig.set_size_inches(15, fig.get_size_inches()[1])  # the old 9-lane width
    assert smallest_text_px(fig) < MIN_PX


@pytest.mark.parametrize("name", FIGURES)
def test_no_two_texts_overlap_and_all_stay_inside_the_figure(name: str) -> None:
    fig = FIGURES[name]()
    renderer = drawn(fig)
    page = fig.bbox
    for ax in fig.axes:
        texts = [t for t in [ax.title, *ax.texts] if t.get_text()]
        boxes = [(t.get_text(), extent(t, renderer)) for t in texts]
        for (a, box_a), (b, box_b) in combinations(boxes, 2):
            assert not box_a.overlaps(box_b), f"{a!r} overlaps {b!r}"
        for text, box in boxes:
            assert page.x0 <= box.x0 and box.x1 <= page.x1, f"{text!r} runs off the figure"
            assert page.y0 <= box.y0 and box.y1 <= page.y1, f"{text!r} runs off the figure"


@pytest.mark.parametrize("name", ["failed run", "stacked"])
def test_the_red_cross_covers_no_label(name: str) -> None:
    fig = FIGURES[name]()
    renderer = drawn(fig)
    failed_axes = fig.axes[-1]
    markers = by_gid(failed_axes, "failed-marker-")
    assert len(markers) == 2
    texts = [t for t in [failed_axes.title, *failed_axes.texts] if t.get_text()]
    for marker in markers:
        for t in texts:
            assert not marker.get_window_extent(renderer).overlaps(extent(t, renderer)), (
                f"{marker.get_gid()} covers {t.get_text()!r}"
            )
    assert any("FAILED: AccessDenied" in t.get_text() for t in texts)


@pytest.mark.parametrize("name", ["failed run", "stacked"])
def test_the_discovery_label_does_not_cross_the_sts_lifeline(name: str) -> None:
    fig = FIGURES[name]()
    renderer = drawn(fig)
    ax = fig.axes[-1]
    (sts,) = by_gid(ax, "lifeline-STS")
    sts_x = ax.transData.transform((sts.get_xdata()[0], 0))[0]
    box = extent(label(ax, "GET openid-configuration"), renderer)
    assert not box.x0 <= sts_x <= box.x1
    assert box.x0 > sts_x  # it starts right of STS, where its arrow starts


def test_the_failed_label_is_red_bold_and_above_its_arrow() -> None:
    fig = FIGURES["failed run"]()
    renderer = drawn(fig)
    ax = fig.axes[0]
    text = label(ax, "evaluate trust policy  FAILED: AccessDenied")
    assert text.get_color() == "#d62728" and text.get_fontweight() == "bold"
    number = text.get_gid().removeprefix("label-")
    (marker,) = by_gid(ax, f"failed-marker-{number}")
    assert extent(text, renderer).y0 > marker.get_window_extent(renderer).y1


def arrows(ax: Any) -> dict[str, tuple[str, str]]:
    """label text -> (lane the arrow starts at, lane it points to), read off the drawing."""
    lanes = {
        ln.get_gid().removeprefix("lifeline-"): ln.get_xdata()[0] for ln in by_gid(ax, "lifeline-")
    }
    at = {x: lane for lane, x in lanes.items()}
    out = {}
    for arrow in by_gid(ax, "arrow-"):
        i = arrow.get_gid().removeprefix("arrow-")
        (text,) = [t for t in ax.texts if t.get_gid() == f"label-{i}"]
        (x_from, _), (x_to, _) = arrow.xyann, arrow.xy
        words = text.get_text().split(". ", 1)[1]
        out[words] = (at.get(round(x_from)) or "", at.get(round(x_to)) or "")
    return out


def test_the_kubelets_token_request_and_its_reply_are_drawn() -> None:
    drawn_arrows = arrows(sequence_figure(failed_trace()).axes[0])
    assert drawn_arrows["TokenRequest"] == ("kubelet", "API server")
    assert drawn_arrows["TokenRequest reply: token"] == ("API server", "kubelet")
    assert drawn_arrows["write"] == ("kubelet", "token file")


def test_discovery_and_jwks_answer_sts_with_reply_arrows() -> None:
    drawn_arrows = arrows(sequence_figure(failed_trace()).axes[0])
    assert drawn_arrows["GET openid-configuration"] == ("STS", "OIDC discovery")
    assert drawn_arrows["GET openid-configuration reply: discovery document"] == (
        "OIDC discovery",
        "STS",
    )
    assert drawn_arrows["GET jwks"] == ("STS", "JWKS")
    assert drawn_arrows["GET jwks reply: keys"] == ("JWKS", "STS")
    fig = sequence_figure(failed_trace())
    dashed = [
        a.arrowprops.get("linestyle")
        for a in by_gid(fig.axes[0], "arrow-")
        if a.get_gid() in ("arrow-9", "arrow-11")
    ]
    assert dashed == ["--", "--"]  # replies are dashed, as in UML


def test_sts_reply_says_credentials_only_when_it_gave_them() -> None:
    ok = sequence_figure(reference_steps())
    assert arrows(ok.axes[0])["AssumeRoleWithWebIdentity reply: credentials"] == (
        "STS",
        "pod/SDK",
    )
    bad = sequence_figure(failed_trace())
    replies = [w for w in arrows(bad.axes[0]) if w.startswith("AssumeRoleWithWebIdentity reply")]
    assert replies == ["AssumeRoleWithWebIdentity reply  FAILED: AccessDenied"]
    assert "SDK: AssumeRoleWithWebIdentity reply: credentials" in mermaid(reference_steps())


def test_a_failed_fetch_draws_no_reply() -> None:
    t = Trace(ManualClock(LAB_EPOCH))
    t.record("sts", "oidc", "GET jwks", "IDPCommunicationError", status=404)
    t.record("kubelet", "apiserver", "TokenRequest", "Forbidden", recorder="kubelet")
    steps = steps_from_trace(t.events())
    assert [(s.text, s.ok) for s in steps] == [("GET jwks", False), ("TokenRequest", False)]


def test_read_token_is_drawn_from_the_recorded_event_in_its_place() -> None:
    wall = [10.0]

    class Wall:
        def now(self) -> float:
            return wall[0]

    t = Trace(ManualClock(LAB_EPOCH), wall_clock=Wall())
    for call, src, dst in [
        ("TokenRequest", "kubelet", "apiserver"),
        ("write", "kubelet", "token-file"),
        ("AssumeRoleWithWebIdentity", "sdk", "sts"),
    ]:
        wall[0] += 1
        t.record(src, dst, call)
    steps = steps_from_trace(t.events())
    assert "read token" not in [s.label for s in steps]  # nothing recorded, nothing drawn
    wall[0] = 12.5  # read between the write (12) and the call (13), recorded late
    t.record("sdk", "token-file", "read token", recorder="exec-hook")
    steps = steps_from_trace(t.events())
    assert [s.label for s in steps] == [
        "TokenRequest",
        "TokenRequest reply",
        "write",
        "read token",
        "AssumeRoleWithWebIdentity",
    ]
    assert arrows(sequence_figure(steps).axes[0])["read token"] == ("pod/SDK", "token file")


def test_lanes_keep_their_order_left_to_right() -> None:
    fig = sequence_figure(reference_steps())
    renderer = drawn(fig)
    boxes = {
        t.get_gid().removeprefix("lane-"): extent(t, renderer) for t in by_gid(fig.axes[0], "lane-")
    }
    xs = [boxes[lane].x0 for lane in LANES]
    assert xs == sorted(xs)
