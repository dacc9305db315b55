"""Notebook 04's helpers: the sequence of a real STS exchange, read from the trace."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from irsa_lab import constants as C
from irsa_lab.lessons import sts_call, trust_policy
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock
from irsa_lab.ui import sequence


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    stack = EmbeddedLab(
        state_dir=tmp_path_factory.mktemp("stage4"), seed=DEFAULT_SEED, clock=lab_clock(True)
    ).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    lab.create_pod(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": C.POD_NAME, "namespace": C.NAMESPACE},
            "spec": {
                "serviceAccountName": C.SERVICE_ACCOUNT,
                "containers": [{"name": C.POD_CONTAINER, "image": C.POD_IMAGE}],
            },
        }
    )
    yield lab
    lab.close()


def test_a_cold_run_shows_sts_fetching_discovery_and_jwks_before_s3(lab: Lab) -> None:
    run = sts_call.recorded_run(lab, ["aws", "s3", "ls"])
    assert run.returncode == 0 and C.BUCKET in run.output
    labels = [s.label for s in run.steps]
    call = labels.index("AssumeRoleWithWebIdentity")
    # The kubelet's TokenRequest and write put the token there; the SDK read it (the
    # aws CLI v2 reads it twice: for its credential cache key, then for the call).
    assert labels[:3] == ["TokenRequest", "TokenRequest reply", "write"]
    assert labels[3:call] and set(labels[3:call]) == {"read token"}
    assert [s.text for s in run.steps[call:]] == [
        "AssumeRoleWithWebIdentity",
        "parse token",
        "find OIDC provider",
        "GET openid-configuration",
        "GET openid-configuration reply: discovery document",
        "GET jwks",
        "GET jwks reply: keys",
        "verify signature",
        "check claims",
        "evaluate trust policy",
        "AssumeRoleWithWebIdentity reply: credentials",
        "ListBuckets",
    ]
    assert all(s.ok for s in run.steps)
    assert {s.target for s in run.steps} == set(sequence.LANES)
    assert (run.steps[0].source, run.steps[0].target) == ("kubelet", "API server")
    assert (run.steps[1].source, run.steps[1].target) == ("API server", "kubelet")


def test_a_warm_run_uses_the_cached_keys(lab: Lab) -> None:
    sts_call.recorded_run(lab, ["aws", "s3", "ls"])
    warm = sts_call.recorded_run(lab, ["aws", "s3", "ls"], cold_keys=False)
    assert "GET jwks" not in [s.label for s in warm.steps]


def test_the_failed_run_diagram_differs_from_the_successful_one(lab: Lab) -> None:
    ok = sts_call.recorded_run(lab, ["aws", "s3", "ls"])
    with sts_call.broken_trust(lab, "sub"):
        failed = sts_call.recorded_run(lab, ["aws", "s3", "ls"])
    assert "AccessDenied" in failed.output
    bad = [s for s in failed.steps if not s.ok]
    assert [(s.label, s.outcome) for s in bad] == [
        ("evaluate trust policy", "AccessDenied"),
        ("AssumeRoleWithWebIdentity reply", "AccessDenied"),
    ]
    assert "ListBuckets" not in [s.label for s in failed.steps]
    ok_texts = sequence.figure_texts(sequence.sequence_figure(ok.steps))
    bad_texts = sequence.figure_texts(sequence.sequence_figure(failed.steps))
    assert ok_texts != bad_texts
    assert any("FAILED: AccessDenied" in t for t in bad_texts)
    assert not any("FAILED" in t for t in ok_texts)
    assert "STS-xIAM" in sequence.mermaid(failed.steps)
    # the trust policy is back
    assert trust_policy.trust_policy(lab) == json.loads(trust_policy.correct_trust_policy(lab))


def test_a_broken_audience_condition_is_also_access_denied(lab: Lab) -> None:
    with sts_call.broken_trust(lab, "aud") as what:
        failed = sts_call.recorded_run(lab, ["aws", "sts", "get-caller-identity"], cold_keys=False)
    assert "sts.amazon.com" in what
    assert failed.returncode != 0 and "AccessDenied" in failed.output


def test_the_story_tells_each_step_without_secrets(lab: Lab) -> None:
    run = sts_call.recorded_run(lab, ["aws", "sts", "get-caller-identity"])
    story = sts_call.botocore_story(run.events)
    assert "fetched the issuer's discovery document" in story
    assert "botocore-session-<digits>" in story
    assert "ASIA" not in story
    assert run.identity["Arn"].endswith(f"/{C.ROLE_NAME}/botocore-session-<digits>")


def test_an_upload_is_refused_by_s3_not_sts(lab: Lab) -> None:
    up = sts_call.upload(lab)
    assert up.returncode != 0
    assert "AccessDenied" in up.output and "s3:PutObject" in up.output
    last = up.steps[-1]
    assert (last.target, last.ok, last.outcome) == ("S3", False, "AccessDenied")
    assert all(s.ok for s in up.steps[:-1])


def test_mask_session_hides_only_the_digits() -> None:
    assert (
        sts_call.mask_session("x/botocore-session-1711548000 y") == "x/botocore-session-<digits> y"
    )


def test_broken_trust_refuses_an_unknown_way_to_break_it() -> None:
    with pytest.raises(ValueError, match="'sub' or 'aud'"):
        with sts_call.broken_trust(None, "iss"):
            pass


def test_as_png_renders_a_figure_without_pyplot(lab: Lab) -> None:
    run = sts_call.recorded_run(lab, ["aws", "sts", "get-caller-identity"], cold_keys=False)
    image = sts_call.as_png(sequence.sequence_figure(run.steps))
    assert image.data[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_command_that_never_reads_the_token_draws_no_token_steps(lab: Lab) -> None:
    run = sts_call.recorded_run(lab, ["true"])
    assert run.returncode == 0
    assert run.steps == []
    assert sts_call.botocore_story(run.events) == ""


def test_the_drawn_sequence_starts_with_the_kubelets_token_request(lab: Lab) -> None:
    run = sts_call.recorded_run(lab, ["aws", "sts", "get-caller-identity"], cold_keys=False)
    texts = sequence.figure_texts(sequence.sequence_figure(run.steps))
    assert "1. TokenRequest" in texts and "3. write" in texts
    assert "2. TokenRequest reply: token" in texts
    assert "Kubelet->>API: TokenRequest" in sequence.mermaid(run.steps)
    assert "API-->>Kubelet: TokenRequest reply: token" in sequence.mermaid(run.steps)
    request = run.events[0]
    assert (request.recorder, request.call) == ("kubelet", "TokenRequest")
    assert request.detail["audiences"] == ["sts.amazonaws.com"]
    # the write that request led to is the folder each read of this run resolved to
    reads = [e for e in run.events if e.call == "read token"]
    assert {e.detail["payload"] for e in reads} == {run.events[1].detail["payload"]}


def test_the_story_names_the_code_that_read_the_token(lab: Lab) -> None:
    run = sts_call.recorded_run(lab, ["aws", "sts", "get-caller-identity"], cold_keys=False)
    story = sts_call.botocore_story(run.events)
    assert "the kubelet asked the API server for a token bound to the pod" in story
    assert f"{C.TOKEN_FILE}, opened by " in story
    assert "FileWebIdentityTokenLoader.__call__ in aws" in story


def test_the_drawn_token_reads_are_the_reads_the_pod_recorded_in_their_order(lab: Lab) -> None:
    run = sts_call.recorded_run(lab, ["aws", "sts", "get-caller-identity"], cold_keys=False)
    reads = [e for e in run.events if e.call == "read token"]
    assert reads and {e.recorder for e in reads} == {"exec-hook"}
    calls = [e.call for e in run.events]
    # recorded by the pod's process while it ran: after the kubelet's write, before STS
    assert calls.index("write") < calls.index("read token")
    assert max(i for i, c in enumerate(calls) if c == "read token") < calls.index(
        "AssumeRoleWithWebIdentity"
    )
    texts = sequence.figure_texts(sequence.sequence_figure(run.steps))
    drawn = [t.split(". ", 1)[1] for t in texts if t[:1].isdigit()]
    assert drawn[:3] == ["TokenRequest", "TokenRequest reply: token", "write"]
    assert drawn[3 : 3 + len(reads)] == ["read token"] * len(reads)
    assert drawn[3 + len(reads)] == "AssumeRoleWithWebIdentity"
