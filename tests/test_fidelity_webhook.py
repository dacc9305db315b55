"""The webhook differential suite: the Python port against the real upstream binary.

The suite itself needs ``amazon-eks-pod-identity-webhook`` built by ``make k8s-bin``;
the comparison and the generator are tested without it.
"""

from __future__ import annotations

import base64
import json
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kube_fixtures import running_kube_lab

from irsa_lab import constants as C
from irsa_lab.backends.binaries import find
from irsa_lab.fidelity import webhook as suite
from irsa_lab.fidelity.webhook_cases import shared_fixtures_dir
from irsa_lab.fidelity.webhook_compare import compare_answers, normalise_pod
from irsa_lab.fidelity.webhook_flags import FLAG_SETS, upstream_flags
from irsa_lab.fidelity.webhook_generator import generate_cases
from irsa_lab.fidelity.webhook_upstream import PROGRAM
from irsa_lab.kube.store import INITIAL_EVENTS_END_ANNOTATION
from irsa_lab.webhook.settings import ContainerCredentialsSettings, WebhookSettings

needs_binary = pytest.mark.skipif(
    find(PROGRAM) is None,
    reason="amazon-eks-pod-identity-webhook not built: run `make k8s-bin`",
)

POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns"},
    "spec": {"serviceAccountName": "sa", "containers": [{"name": "app", "image": "i"}]},
}


def answer(ops: list[dict[str, Any]] | None, *, allowed: bool = True, message: str = "") -> dict:
    response: dict[str, Any] = {"uid": "u", "allowed": allowed}
    if message:
        response["status"] = {"metadata": {}, "message": message}
    if ops is not None:
        response["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        response["patchType"] = "JSONPatch"
    return {"response": response}


def env_patch(*env: tuple[str, str], expiration: int = 86400, volume: str = "v") -> list[dict]:
    return [
        {
            "op": "add",
            "path": "/spec/volumes",
            "value": [
                {
                    "name": volume,
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": expiration, "path": "t"}}
                        ]
                    },
                }
            ],
        },
        {
            "op": "add",
            "path": "/spec/containers",
            "value": [
                {"name": "app", "image": "i", "env": [{"name": n, "value": v} for n, v in env]}
            ],
        },
    ]


# --- the comparison -----------------------------------------------------------------------


def test_identical_answers_have_no_difference() -> None:
    ops = env_patch(("AWS_ROLE_ARN", "arn"))
    assert compare_answers("c", POD, answer(ops), answer(ops)) == []


def test_two_different_patches_are_a_difference() -> None:
    mine = answer(env_patch(("AWS_ROLE_ARN", "arn"), ("AWS_REGION", "eu-west-1")))
    theirs = answer(env_patch(("AWS_REGION", "eu-west-1"), ("AWS_ROLE_ARN", "arn")))
    diffs = compare_answers("swapped env", POD, mine, theirs)
    assert [d.what for d in diffs] == ["patched pod /spec/containers/0/env/0/name"]
    assert diffs[0].case == "swapped env"
    assert diffs[0].standin == "AWS_ROLE_ARN" and diffs[0].real == "AWS_REGION"
    assert not diffs[0].accepted


def test_a_denial_against_an_allow_is_one_difference() -> None:
    diffs = compare_answers("c", POD, answer(None), answer(None, allowed=False, message="nope"))
    assert [d.what for d in diffs] == ["allowed"]
    assert "nope" in diffs[0].real


def test_different_denial_messages_are_a_difference() -> None:
    mine = answer(None, allowed=False, message="a")
    theirs = answer(None, allowed=False, message="b")
    assert [d.what for d in compare_answers("c", POD, mine, theirs)] == ["denial message"]


def test_a_patch_against_no_patch_is_a_difference() -> None:
    diffs = compare_answers("c", POD, answer(env_patch()), answer(None))
    assert [d.what for d in diffs] == ["patch present"]


def test_a_different_patch_shape_with_the_same_result_is_still_reported() -> None:
    pod = {**POD, "spec": {**POD["spec"], "volumes": []}}
    vol = {"name": "v", "emptyDir": {}}
    mine = answer([{"op": "add", "path": "/spec/volumes/0", "value": vol}])
    theirs = answer([{"op": "add", "path": "/spec/volumes", "value": [vol]}])
    assert [d.what for d in compare_answers("c", pod, mine, theirs)] == ["patch operations"]


def test_go_zero_values_and_empty_resources_are_not_differences() -> None:
    mine = [
        {
            "op": "add",
            "path": "/spec/containers",
            "value": [
                {
                    "name": "app",
                    "image": "i",
                    "env": [{"name": "E", "value": ""}],
                    "volumeMounts": [{"name": "v", "mountPath": "/v", "readOnly": False}],
                }
            ],
        }
    ]
    theirs = [
        {
            "op": "add",
            "path": "/spec/containers",
            "value": [
                {
                    "name": "app",
                    "image": "i",
                    "env": [{"name": "E"}],
                    "resources": {},
                    "readinessProbe": None,
                    "volumeMounts": [{"name": "v", "mountPath": "/v"}],
                }
            ],
        }
    ]
    assert compare_answers("c", POD, answer(mine), answer(theirs)) == []
    assert normalise_pod({"resources": {"limits": {"cpu": "1"}}}) == {
        "resources": {"limits": {"cpu": "1"}}
    }


def test_a_jittered_expiration_is_compared_against_its_range() -> None:
    mine = answer(env_patch(expiration=C.TOKEN_EXPIRATION_JITTER_FLOOR_S))
    inside = answer(env_patch(expiration=83117))
    outside = answer(env_patch(expiration=3600))
    assert compare_answers("c", POD, mine, inside, jitter_volume="v") == []
    # Without the jitter allowance, or outside the range, it is a difference.
    assert compare_answers("c", POD, mine, inside)
    diffs = compare_answers("c", POD, mine, outside, jitter_volume="v")
    assert "jittered expirationSeconds" in [d.what for d in diffs]


# --- flags and cases -------------------------------------------------------------------


def test_upstream_flags_spell_every_setting() -> None:
    settings = WebhookSettings(
        aws_default_region="eu-west-1",
        sts_regional_endpoint=True,
        container_credentials=ContainerCredentialsSettings(full_uri="http://x/"),
    )
    flags = upstream_flags(settings, cc_config=Path("/cc.json"), raw={"--token-expiration": "5"})
    assert "--aws-default-region=eu-west-1" in flags
    assert "--sts-regional-endpoint=true" in flags
    assert "--watch-container-credentials-config=/cc.json" in flags
    assert "--container-credentials-full-uri=http://x/" in flags
    assert "--token-expiration=5" in flags
    with pytest.raises(ValueError):
        upstream_flags(settings, cc_config=None)


def test_generated_cases_are_the_same_for_the_same_seed_and_cover_every_flag_set() -> None:
    one, two = generate_cases(60, 7), generate_cases(60, 7)
    assert [(c.name, c.pod, c.sa_annotations, c.cc_listed) for c in one] == [
        (c.name, c.pod, c.sa_annotations, c.cc_listed) for c in two
    ]
    assert {c.flags.name for c in one} == {f.name for f in FLAG_SETS}
    assert len({c.sa_name for c in one}) == 60
    assert generate_cases(60, 8)[5].pod != one[5].pod


def test_the_embedded_api_server_ends_a_streaming_list_with_the_initial_events_bookmark(
    tmp_path: Path,
) -> None:
    # client-go's informers (WatchListClient, on by default since 1.35) wait for this
    # bookmark; without it the upstream webhook's ServiceAccount cache never syncs.
    with running_kube_lab(tmp_path) as lab:
        query = (
            "watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan"
            "&allowWatchBookmarks=true&timeoutSeconds=1"
        )
        req = urllib.request.Request(  # noqa: S310 - an https URL of the test server
            f"{lab.url}/api/v1/namespaces?{query}",
            headers={"Authorization": f"Bearer {lab.api.token}"},
        )
        with urllib.request.urlopen(req, context=lab.ca.client_context()) as resp:  # noqa: S310
            events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [e["type"] for e in events[:-1]] == ["ADDED"] * (len(events) - 1)
    assert len(events) > 1
    last = events[-1]
    assert last["type"] == "BOOKMARK"
    assert last["object"]["kind"] == "Namespace"
    assert last["object"]["metadata"]["annotations"] == {INITIAL_EVENTS_END_ANNOTATION: "true"}
    newest = max(int(e["object"]["metadata"]["resourceVersion"]) for e in events[:-1])
    assert int(last["object"]["metadata"]["resourceVersion"]) >= newest


# --- the suite against the real binary ------------------------------------------------


@needs_binary
def test_the_port_answers_as_the_real_webhook_on_the_fixtures_and_300_generated_cases() -> None:
    fixtures = 24 if shared_fixtures_dir().is_dir() else 0
    result = suite.run(generated=300, seed=1)
    assert result.cases == 300 + fixtures
    assert not result.unexplained, "\n".join(
        f"{d.case}: {d.what}: port {d.standin!r}, upstream {d.real!r}" for d in result.unexplained
    )


@needs_binary
def test_a_failure_midway_stops_every_process_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[subprocess.Popen[bytes]] = []

    async def broken(*args: Any, **kwargs: Any) -> Any:
        started.extend(p.proc for p in args[3])
        raise RuntimeError("boom")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(suite, "_drive", broken)
    with pytest.raises(RuntimeError, match="boom"):
        suite.run(generated=12, seed=3)
    assert started
    assert all(p.poll() is not None for p in started)
    assert list(tmp_path.iterdir()) == []
