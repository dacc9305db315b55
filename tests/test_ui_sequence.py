"""Sequence diagrams from a trace: failed runs draw and read differently from good ones."""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg

from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.trace import Trace, write_fact
from irsa_lab.ui.sequence import (
    LANES,
    Step,
    describe_steps,
    figure_texts,
    mermaid,
    reference_steps,
    sequence_figure,
    stacked_figure,
    steps_from_trace,
)


def recorded(fail: bool) -> Trace:
    t = Trace(ManualClock(LAB_EPOCH))
    t.record("kubelet", "apiserver", "TokenRequest", recorder="kubelet")
    t.record("kubelet", "token-file", "write", recorder="kubelet")
    t.record("learner", "apiserver", "CreatePod")  # not on the STS diagram's lanes
    t.record("sdk", "token-file", "read token")
    t.record("sdk", "sts", "AssumeRoleWithWebIdentity")
    t.record("sts", "sts", "parse token")
    t.record("sts", "iam", "find OIDC provider")
    t.record("sts", "oidc", "GET openid-configuration")
    t.record("sts", "oidc", "GET jwks")
    t.record("sts", "sts", "verify signature")
    outcome = "AccessDenied" if fail else "ok"
    t.record("sts", "iam", "evaluate trust policy", outcome)
    t.record("sts", "sdk", "AssumeRoleWithWebIdentity reply", outcome)
    if not fail:
        t.record("pod", "s3", "ListBuckets")
    return t


def test_steps_map_trace_components_to_lanes() -> None:
    steps = steps_from_trace(recorded(fail=False).events())
    assert [(s.source, s.target, s.text) for s in steps] == [
        ("kubelet", "API server", "TokenRequest"),
        ("API server", "kubelet", "TokenRequest reply: token"),
        ("kubelet", "token file", "write"),
        ("pod/SDK", "token file", "read token"),
        ("pod/SDK", "STS", "AssumeRoleWithWebIdentity"),
        ("STS", "STS", "parse token"),
        ("STS", "IAM trust check", "find OIDC provider"),
        ("STS", "OIDC discovery", "GET openid-configuration"),
        ("OIDC discovery", "STS", "GET openid-configuration reply: discovery document"),
        ("STS", "JWKS", "GET jwks"),
        ("JWKS", "STS", "GET jwks reply: keys"),
        ("STS", "STS", "verify signature"),
        ("STS", "IAM trust check", "evaluate trust policy"),
        ("STS", "pod/SDK", "AssumeRoleWithWebIdentity reply: credentials"),
        ("pod/SDK", "S3", "ListBuckets"),
    ]
    assert all(s.ok for s in steps)


def test_a_failed_event_becomes_a_failed_step_with_its_code() -> None:
    steps = steps_from_trace(recorded(fail=True).events())
    failed = [s for s in steps if not s.ok]
    assert [(s.label, s.outcome) for s in failed] == [
        ("evaluate trust policy", "AccessDenied"),
        ("AssumeRoleWithWebIdentity reply", "AccessDenied"),
    ]


def test_a_failed_trace_draws_a_red_x_and_the_word_failed() -> None:
    ok_fig = sequence_figure(steps_from_trace(recorded(fail=False).events()), title="works")
    bad_fig = sequence_figure(steps_from_trace(recorded(fail=True).events()), title="fails")
    ok_texts, bad_texts = figure_texts(ok_fig), figure_texts(bad_fig)
    assert not any("FAILED" in t for t in ok_texts)
    assert "13. evaluate trust policy  FAILED: AccessDenied" in bad_texts
    assert "fails (FAILED: AccessDenied)" in bad_texts
    assert "works (all steps ok)" in ok_texts

    def markers(fig) -> list[str]:
        return [
            ln.get_gid()
            for ax in fig.axes
            for ln in ax.lines
            if (ln.get_gid() or "").startswith("failed-marker")
        ]

    assert markers(ok_fig) == []
    assert markers(bad_fig) == ["failed-marker-13", "failed-marker-14"]
    (x_marker,) = [ln for ln in bad_fig.axes[0].lines if ln.get_gid() == "failed-marker-13"]
    assert x_marker.get_marker() == "X"
    # one lifeline per lane used; S3 is never reached in the failed run
    assert "lane-S3" in {t.get_gid() for t in ok_fig.axes[0].texts}
    assert "lane-S3" not in {t.get_gid() for t in bad_fig.axes[0].texts}


def test_the_working_and_failed_runs_are_stacked_on_the_same_lanes() -> None:
    fig = stacked_figure(
        reference_steps(), reference_steps("find OIDC provider", "InvalidIdentityToken")
    )
    top, below = fig.axes
    lanes = [
        {t.get_text() for t in ax.texts if (t.get_gid() or "").startswith("lane-")}
        for ax in (top, below)
    ]
    assert lanes[0] == lanes[1]
    assert top.get_ylim() == below.get_ylim()
    assert "7. find OIDC provider  FAILED: InvalidIdentityToken" in figure_texts(fig)
    # one above the other, each as wide as the figure allows
    FigureCanvasAgg(fig).draw()  # constrained layout places the axes when drawn
    a, b = top.get_position(), below.get_position()
    assert a.y0 > b.y1
    assert a.x0 == b.x0 and a.width == b.width and a.width > 0.9


def test_mermaid_text_contains_every_step_and_marks_failures() -> None:
    ok_steps = steps_from_trace(recorded(fail=False).events())
    bad_steps = steps_from_trace(recorded(fail=True).events())
    ok_text, bad_text = mermaid(ok_steps), mermaid(bad_steps)
    assert ok_text.startswith("```mermaid\nsequenceDiagram\n") and ok_text.endswith("\n```")
    for step in ok_steps:
        assert f": {step.label}" in ok_text
    assert "participant JWKS as JWKS" in ok_text
    assert "Kubelet->>API: TokenRequest" in ok_text
    assert "STS->>OIDC: GET openid-configuration" in ok_text
    assert "STS--xSDK: AssumeRoleWithWebIdentity reply FAILED: AccessDenied" in bad_text
    assert "STS-xIAM: evaluate trust policy FAILED: AccessDenied" in bad_text
    assert "-x" not in ok_text
    assert ok_text != bad_text


def test_the_text_alternative_numbers_the_steps() -> None:
    text = describe_steps(
        [
            Step("pod/SDK", "STS", "AssumeRoleWithWebIdentity"),
            Step(
                "STS", "pod/SDK", "AssumeRoleWithWebIdentity reply", False, "ExpiredTokenException"
            ),
        ]
    )
    assert text.splitlines() == [
        "+  1. pod/SDK -> STS: AssumeRoleWithWebIdentity (ok)",
        "-  2. STS -> pod/SDK: AssumeRoleWithWebIdentity reply (FAILED: ExpiredTokenException)",
    ]


def test_a_step_merged_late_is_drawn_where_it_happened(tmp_path: Path) -> None:
    wall = [100.0]

    class Wall:
        def now(self) -> float:
            return wall[0]

    t = Trace(ManualClock(LAB_EPOCH), wall_clock=Wall())
    facts = tmp_path / "facts.jsonl"
    t.watch(facts)
    t.record("kubelet", "apiserver", "TokenRequest", recorder="kubelet")
    wall[0] = 102.0
    t.record("sdk", "sts", "AssumeRoleWithWebIdentity")
    write_fact(
        facts,
        {"source": "sdk", "target": "token-file", "call": "read token", "wall": 101.0},
    )
    steps = steps_from_trace(t.events())
    assert [s.label for s in steps] == [
        "TokenRequest",
        "TokenRequest reply",
        "read token",
        "AssumeRoleWithWebIdentity",
    ]


def test_the_kubelet_and_the_api_server_have_lanes_left_of_the_token_file() -> None:
    assert LANES[:4] == ("API server", "kubelet", "token file", "pod/SDK")
    fig = sequence_figure(steps_from_trace(recorded(fail=False).events()))
    lanes = [t.get_gid() for t in fig.axes[0].texts if (t.get_gid() or "").startswith("lane-")]
    assert lanes[:2] == ["lane-API server", "lane-kubelet"]
    assert "1. TokenRequest" in figure_texts(fig)
    assert "2. TokenRequest reply: token" in figure_texts(fig)
