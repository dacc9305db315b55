"""Every upstream fixture, and every case of our own, through the mutation.

Upstream fixtures live in ../shared/webhook-fixtures (never copied here); our cases in
irsa_lab/webhook/cases use the same format and the same harness.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonpatch
import pytest
from webhook_fixtures import (
    CASES_DIR,
    SKIP_REASON,
    fixture_files,
    load_case,
    normalise_patch,
    shared_fixtures_dir,
)

from irsa_lab.webhook.mutate import mutate_pod

SHARED = shared_fixtures_dir()
IRSA_FIXTURES = fixture_files(SHARED)
CC_FIXTURES = fixture_files(SHARED / "containercredentials")
OWN_CASES = sorted(CASES_DIR.rglob("*.pod.yaml"))
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=SKIP_REASON)


def _id(path: Path, root: Path) -> str:
    return str(path.relative_to(root))


def check_case(path: Path) -> None:
    case = load_case(path)
    assert not case.skip
    before = copy.deepcopy(case.pod)
    result = mutate_pod(
        case.pod, namespace="default", sa_annotations=case.sa_annotations, settings=case.settings
    )
    assert case.pod == before, "mutate_pod must not modify its input"
    got, want = normalise_patch(result.patch), normalise_patch(case.expected)
    assert [(op["op"], op["path"]) for op in got] == [(op["op"], op["path"]) for op in want]
    assert got == want
    # And the patch applies to the pod it was made for.
    jsonpatch.apply_patch(case.pod, result.patch)


@needs_shared
def test_the_shared_folder_holds_18_irsa_and_6_container_credentials_fixtures() -> None:
    assert len(IRSA_FIXTURES) == 18
    assert len(CC_FIXTURES) == 6


@needs_shared
@pytest.mark.parametrize(
    "path", IRSA_FIXTURES + CC_FIXTURES, ids=[_id(p, SHARED) for p in IRSA_FIXTURES + CC_FIXTURES]
)
def test_upstream_fixture_gets_its_expected_patch(path: Path) -> None:
    check_case(path)


def test_there_are_at_least_eight_cases_of_our_own() -> None:
    assert len(OWN_CASES) >= 8


@pytest.mark.parametrize("path", OWN_CASES, ids=[_id(p, CASES_DIR) for p in OWN_CASES])
def test_own_case_gets_its_expected_patch(path: Path) -> None:
    check_case(path)


def test_the_comparison_sees_a_swapped_env_order() -> None:
    case = load_case(CASES_DIR / "labDefaultsNoVolumes.pod.yaml")
    bad = copy.deepcopy(case.expected)
    env = bad[1]["value"][0]["env"]
    env[1], env[2] = env[2], env[1]
    assert normalise_patch(bad) != normalise_patch(case.expected)


def test_the_normaliser_drops_only_go_artifacts() -> None:
    go = [
        {
            "op": "add",
            "path": "/spec/containers",
            "value": [
                {
                    "name": "a",
                    "resources": {},
                    "readinessProbe": {"grpc": {"port": 1, "service": None}},
                    "volumeMounts": [{"name": "v", "mountPath": ""}],
                }
            ],
        }
    ]
    py = [
        {
            "op": "add",
            "path": "/spec/containers",
            "value": [
                {
                    "name": "a",
                    "readinessProbe": {"grpc": {"port": 1}},
                    "volumeMounts": [{"name": "v", "path": "/bogus"}],
                }
            ],
        }
    ]
    assert normalise_patch(go) == normalise_patch(py)
    limits = [
        {
            "op": "add",
            "path": "/spec/containers",
            "value": [{"name": "a", "resources": {"limits": {"cpu": "1"}}}],
        }
    ]
    assert normalise_patch(limits) != normalise_patch(py)
