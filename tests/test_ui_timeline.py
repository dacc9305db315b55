"""Lifetimes: kubelet renewal at 80 %, the SDK's refresh windows, the now slider."""

from __future__ import annotations

import pytest

from irsa_lab.clock import LAB_EPOCH
from irsa_lab.ui.timeline import (
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
