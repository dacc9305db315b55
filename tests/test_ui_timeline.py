"""Lifetimes: kubelet renewal at 80 %, the SDK's refresh windows, the now slider."""

from __future__ import annotations

import pytest
from matplotlib.text import Text

from irsa_lab.clock import LAB_EPOCH
from irsa_lab.ui.timeline import (
    FIGSIZE,
    PNG_DPI,
    TimelineWidget,
    kubelet_renewal_time,
    lifetime_figure,
    timeline_facts,
)

IAT = LAB_EPOCH
EXP = IAT + 86400
STS_AT = IAT + 60
STS_EXP = STS_AT + 3600


def test_the_kubelet_renews_a_day_long_token_after_69120_seconds() -> None:
    facts = timeline_facts(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP)
    assert facts["token_ttl_s"] == 86400
    assert facts["renew_after_s"] == 69120
    assert facts["renew_at"] == IAT + 69120


def test_renewal_is_capped_at_24_hours_for_long_tokens() -> None:
    assert kubelet_renewal_time(IAT, IAT + 7 * 86400) == IAT + 86400
    assert kubelet_renewal_time(IAT, IAT + 3600) == IAT + 2880


def test_the_sdk_refresh_windows_open_15_and_10_minutes_before_expiry() -> None:
    facts = timeline_facts(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP)
    assert facts["advisory_refresh_at"] == STS_EXP - 900
    assert facts["mandatory_refresh_at"] == STS_EXP - 600
    assert (facts["advisory_after_issue_s"], facts["mandatory_after_issue_s"]) == (2700, 3000)


@pytest.mark.parametrize(
    ("after_iat", "token", "creds"),
    [
        (0, "valid", "not yet issued"),
        (60 + 2699, "valid", "fresh"),
        (60 + 2700, "valid", "advisory refresh"),
        (60 + 3000, "valid", "mandatory refresh"),
        (60 + 3600, "valid", "expired"),
        (69120, "due for renewal", "expired"),
        (86400, "expired", "expired"),
    ],
)
def test_states_at_a_given_moment(after_iat: int, token: str, creds: str) -> None:
    facts = timeline_facts(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP, now=IAT + after_iat)
    assert (facts["token_state"], facts["credential_state"]) == (token, creds)


def test_the_figure_has_the_labelled_bars_lines_and_now_marker() -> None:
    fig = lifetime_figure(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP, now=IAT + 3000)
    top, bottom = fig.axes
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "kubelet renews (80 % of TTL, 19 h 12 min)" in texts
    assert "advisory\n15 min before" in texts and "mandatory\n10 min before" in texts
    assert " now" in texts
    assert {c.get_label() for c in bottom.collections} >= {
        "credentials: fresh",
        "SDK advisory refresh window (15 min)",
        "SDK mandatory refresh window (10 min)",
    }
    assert {c.get_label() for c in top.collections} >= {
        "projected token: valid",
        "projected token: due for renewal",
        "STS session",
    }
    gids = {a.get_gid() for ax in fig.axes for a in ax.get_children()}
    assert {"renewal-line", "now-line", "bar-advisory", "bar-mandatory"} <= gids
    # the renewal line sits at 19.2 h on the hour axis
    (line,) = [ln for ln in top.lines if ln.get_gid() == "renewal-line"]
    assert line.get_xdata()[0] == pytest.approx(19.2)
    assert tuple(fig.get_size_inches()) == (9.0, 4.2)


def test_every_text_of_the_figure_is_at_least_11_px_as_the_widget_shows_it() -> None:
    fig = lifetime_figure(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP, now=IAT + 3000)
    fig.canvas.draw()
    sizes = [t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()]
    assert sizes, "the figure has no text"
    assert FIGSIZE[0] * PNG_DPI <= 1000, "wider than a notebook cell: the browser would shrink it"
    assert min(sizes) * PNG_DPI / 72 >= 11, f"smallest text {min(sizes)} pt at {PNG_DPI} dpi"


def test_without_now_there_is_no_now_line() -> None:
    fig = lifetime_figure(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP)
    assert "now-line" not in {a.get_gid() for ax in fig.axes for a in ax.get_children()}


def test_the_slider_moves_the_caption_and_the_image() -> None:
    w = TimelineWidget(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP)
    first = bytes(w.image.value)
    assert first.startswith(b"\x89PNG")
    assert w.state()["credential_state"] == "not yet issued"
    w.slider.value = 60 + 2760
    assert w.state() == {
        "now_after_iat_s": 2820,
        "token_state": "valid",
        "credential_state": "advisory refresh",
    }
    assert "advisory refresh" in w.caption.value and "in the background" in w.caption.value
    assert bytes(w.image.value) != first
    w.now = IAT + 70000
    assert w.state()["token_state"] == "due for renewal"
    assert w.slider.max == 86400


def test_the_readout_says_hours_and_minutes_not_raw_seconds() -> None:
    w = TimelineWidget(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP, render=False)
    assert w.slider.readout is False
    assert "(s after iat)" not in w.slider.description
    assert w.readout.value == "0 s after iat"
    w.slider.value = 2 * 3600 + 30 * 60
    assert w.readout.value == "2 h 30 min after iat"
    w.now = IAT + 69120
    assert w.readout.value == "19 h 12 min after iat"


@pytest.mark.parametrize(
    ("after_iat", "words", "x"),
    [
        (60 + 1800, " now", 30.0),
        (30, "\u2190 now: 30 s before STS issued them", 0.0),
        (60 + 3600 + 2 * 3600, "now: 2 h after they expired \u2192", 75.0),
    ],
)
def test_the_credentials_panel_always_marks_now(after_iat: int, words: str, x: float) -> None:
    fig = lifetime_figure(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP, now=IAT + after_iat)
    _top, bottom = fig.axes
    (label,) = [t for t in bottom.texts if t.get_gid() == "now-label-session"]
    assert label.get_text() == words
    assert label.get_position()[0] == pytest.approx(x)
    lines = [ln for ln in bottom.lines if ln.get_gid() == "now-line-session"]
    inside = 0 <= after_iat - 60 <= 3600 * 1.25
    assert len(lines) == (1 if inside else 0)
    if inside:
        assert lines[0].get_xdata()[0] == pytest.approx(x)


def test_without_now_the_credentials_panel_has_no_now_label() -> None:
    fig = lifetime_figure(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP)
    assert "now-label-session" not in {t.get_gid() for ax in fig.axes for t in ax.texts}


def test_the_stored_output_is_a_readable_summary_not_a_python_repr() -> None:
    w = TimelineWidget(IAT, EXP, sts_issued=STS_AT, sts_expires=STS_EXP, render=False)
    bundle = w._repr_mimebundle_()
    text = bundle["text/plain"]
    assert "children=" not in text and "IntSlider" not in text
    assert text.splitlines() == [
        "Token and credential lifetimes (timeline). Interactive widget: run this cell to use it.",
        "projected token: lives 24 h, from 2024-03-27 14:00:00 UTC to 2024-03-28 14:00:00 UTC",
        "kubelet renewal: at 80 % of its lifetime, 19 h 12 min after iat",
        "STS credentials: expire 1 h after issue; the SDK refreshes them from 15 min before "
        "(advisory) and 10 min before (mandatory)",
        "now: 0 s after iat: token valid, credentials not yet issued",
    ]
    assert (
        "<li>kubelet renewal: at 80 % of its lifetime, 19 h 12 min after iat</li>"
        in (bundle["text/html"])
    )
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == w.model_id


def test_the_summary_follows_the_token_it_was_given() -> None:
    short = TimelineWidget(IAT, IAT + 3600, sts_issued=STS_AT, sts_expires=STS_EXP, render=False)
    lines = short.static_lines()
    assert lines[0].startswith("projected token: lives 1 h, from ")
    assert lines[1] == "kubelet renewal: at 80 % of its lifetime, 48 min after iat"
