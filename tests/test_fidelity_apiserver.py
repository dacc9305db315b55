"""The API server differential suite: the embedded stand-in against the real kube-apiserver.

The suite itself needs the programs ``make k8s-bin`` builds; the comparison helpers
are tested without them.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest

from irsa_lab.backends import binaries
from irsa_lab.fidelity import apiserver as suite
from irsa_lab.fidelity.apiserver_accepted import ACCEPTED, Acceptance, accept
from irsa_lab.fidelity.apiserver_clients import Side
from irsa_lab.fidelity.apiserver_diff import (
    compare_claims,
    compare_jose_header,
    compare_json,
    compare_key_order,
    compare_lines,
    parse_warnings,
)
from irsa_lab.fidelity.apiserver_masks import mask, mask_text
from irsa_lab.fidelity.report import Difference, SuiteResult

MISSING = binaries.missing()
needs_binaries = pytest.mark.skipif(
    bool(MISSING), reason=f"{', '.join(MISSING)} not built: run `make k8s-bin`"
)
# Every request of the script with its aspects (response, JWT header, claims, key order).
EXPECTED_CASES = 65

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/AAAA"
OTHER_ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/BBBB"


def claims(issuer: str = ISSUER, iat: int = 1_700_000_000, **override: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "aud": ["sts.amazonaws.com"],
        "exp": iat + 86400,
        "iat": iat,
        "iss": issuer,
        "jti": "0e32c009-8de0-44ac-915b-4481d8870f4b",
        "kubernetes.io": {
            "namespace": "default",
            "serviceaccount": {
                "name": "s3-readonly-sa",
                "uid": "410fa875-2da2-45ed-beb5-0e7a74e871b9",
            },
        },
        "nbf": iat,
        "sub": "system:serviceaccount:default:s3-readonly-sa",
    }
    out.update(override)
    return out


# --- the helpers ------------------------------------------------------------------------------


def test_claims_that_differ_only_in_generated_values_and_issuer_are_equal() -> None:
    mine = claims(ISSUER, 1_700_000_000)
    theirs = claims(OTHER_ISSUER, 1_800_000_123, jti="5e8b0e00-cae9-438f-bcaf-448e6a90f2ef")
    assert compare_claims("c", mine, theirs, standin_issuer=ISSUER, real_issuer=OTHER_ISSUER) == []


def test_two_different_claim_sets_give_differences() -> None:
    mine = claims(exp=1_700_000_000 + 3600, aud="sts.amazonaws.com")
    theirs = claims()
    theirs["kubernetes.io"] = {**theirs["kubernetes.io"], "node": {"name": "n", "uid": "u"}}
    diffs = compare_claims("bound token", mine, theirs, standin_issuer=ISSUER, real_issuer=ISSUER)
    assert all(isinstance(d, Difference) and d.case == "bound token" for d in diffs)
    by_what = {d.what: d for d in diffs}
    assert by_what["type of claim aud"].standin == "string"  # a claim of another type
    assert by_what["type of claim aud"].real == "array"
    assert (by_what["claims.exp"].standin, by_what["claims.exp"].real) == ("iat+3600", "iat+86400")
    assert by_what["claims.kubernetes.io.node"].standin == "<absent>"
    assert not any(d.accepted for d in diffs)


def test_a_token_from_another_issuer_or_without_a_claim_is_a_difference() -> None:
    mine = claims(OTHER_ISSUER)
    del mine["jti"]
    diffs = compare_claims("c", mine, claims(), standin_issuer=ISSUER, real_issuer=ISSUER)
    whats = [d.what for d in diffs]
    assert "claim names" in whats
    assert "claims.iss" in whats  # not the lab's own issuer: left unmasked


def test_the_extended_rule_is_compared_relative_to_iat() -> None:
    kube = {"namespace": "default", "warnafter": 1_700_003_607}
    mine = claims(exp=1_700_000_000 + 31_536_000, **{"kubernetes.io": kube})
    theirs = claims(
        iat=1_800_000_000,
        exp=1_800_000_000 + 31_536_000,
        **{"kubernetes.io": {"namespace": "default", "warnafter": 1_800_003_600}},
    )
    diffs = compare_claims("c", mine, theirs, standin_issuer=ISSUER, real_issuer=ISSUER)
    assert [(d.what, d.standin, d.real) for d in diffs] == [
        ("claims.kubernetes.io.warnafter", "iat+3607", "iat+3600")
    ]


def test_jose_headers_compare_names_alg_and_the_kids_format_and_origin() -> None:
    kid = "Zm03M2EmKvB2qLwB21OHtt7eTmkMRCnchxrwZCVPt1M"
    other = "gVLsq3XsMK-1HC777heHzLKkIvV2mzynJjlz5YG06fY"
    real = {"alg": "RS256", "kid": kid}
    assert (
        compare_jose_header(
            "c", {"kid": other, "alg": "RS256"}, real, standin_kids=[other], real_kids=[kid]
        )
        == []
    )
    diffs = compare_jose_header(
        "c", {"alg": "RS256", "kid": other, "typ": "JWT"}, real, standin_kids=[], real_kids=[kid]
    )
    assert sorted(d.what for d in diffs) == ["header.kid in the lab's JWKS", "header.typ"]


def test_mask_keeps_formats_visible() -> None:
    masked = mask(
        {
            "metadata": {
                "uid": "8db6d6e2-0997-48cd-ab12-6a9f45a3eaf8",
                "resourceVersion": "235",
                "creationTimestamp": "2026-11-30T04:39:41Z",
                "managedFields": [
                    {"manager": "kubelet", "operation": "Update", "subresource": "status"}
                ],
            },
            "volumes": [{"name": "kube-api-access-2gbxs"}, {"name": "aws-iam-token"}],
            "iss": ISSUER + "/x",
            "uid": "not-a-uuid",
            "url": "https://127.0.0.1:50763/openid/v1/jwks",
        },
        issuer=ISSUER,
    )
    assert masked == {
        "metadata": {
            "uid": "<uuid>",
            "resourceVersion": "<resourceVersion>",
            "creationTimestamp": "<time>",
            "managedFields": ["kubelet/Update/status"],
        },
        "volumes": [{"name": "kube-api-access-<5 chars>"}, {"name": "aws-iam-token"}],
        "iss": "<issuer>/x",
        "uid": "not-a-uuid",
        "url": "https://127.0.0.1:<port>/openid/v1/jwks",
    }


def test_compare_json_reports_missing_extra_retyped_and_resized_values() -> None:
    diffs = compare_json(
        "c",
        {"a": 1, "b": "x", "list": [1, 2], "only-mine": True},
        {"a": "1", "b": "x", "list": [1], "only-theirs": None},
    )
    assert [(d.what, d.standin, d.real) for d in diffs] == [
        ("a", "1 (number)", "1 (string)"),
        ("list (length 2 vs 1)", "[1, 2]", "[1]"),
        ("only-theirs", "<absent>", "null"),
        ("only-mine", "true", "<absent>"),
    ]


def test_compare_key_order_and_lines() -> None:
    diffs = compare_key_order("c", {"m": {"a": 1, "b": 2}}, {"m": {"b": 2, "a": 1}}, ["m", "x"])
    assert [(d.what, d.standin, d.real) for d in diffs] == [("key order of m", "a,b", "b,a")]
    diffs = compare_lines(
        "c", "Name: a\nGeneration: 1\nKind: X\n", "Name: a\nKind: X\nEvents: none"
    )
    assert [(d.what, d.standin, d.real) for d in diffs] == [
        ("after line 1", "Generation: 1", "<absent>"),
        ("line 3", "<absent>", "Events: none"),
    ]


def test_mask_text_hides_what_kubectl_prints_that_changes_run_to_run() -> None:
    text = (
        "  Resource Version:    241\n  UID:  867e09c4-03c9-4430-b7d3-341b31abf4a7\n"
        '  resourceVersion: "16"\n    Ca Bundle:  LS0tLS1=\n    URL: https://127.0.0.1:51729/mutate\n'
    )
    assert mask_text(text) == (
        "  Resource Version:    <resourceVersion>\n  UID:  <uuid>\n"
        '  resourceVersion: "<resourceVersion>"\n    Ca Bundle:  <caBundle>\n'
        "    URL: https://127.0.0.1:<port>/mutate\n"
    )


def test_warning_headers_are_read_one_or_several_at_a_time() -> None:
    header = '299 - "a \\"quoted\\" word", 299 - "b, with a comma"'
    assert parse_warnings(header) == ['a "quoted" word', "b, with a comma"]
    assert parse_warnings(None) == []


def test_accept_fills_in_the_first_matching_reason_only() -> None:
    rules = [Acceptance("pod*", "spec.*", "why", real="x*")]
    got = accept(
        [
            Difference("pod as stored", "spec.nodeName", "a", "xyz"),
            Difference("pod as stored", "spec.nodeName", "a", "yyy"),
            Difference("token", "spec.nodeName", "a", "xyz"),
        ],
        rules,
    )
    assert [d.accepted for d in got] == ["why", "", ""]


def test_every_acceptance_says_why() -> None:
    assert all(len(rule.reason) > 40 for rule in ACCEPTED)


# --- the suite against the real programs ---------------------------------------------------


@pytest.fixture(scope="module")
def result() -> SuiteResult:
    return suite.run()


@needs_binaries
def test_the_stand_in_answers_as_the_real_api_server_or_says_why_not(result: SuiteResult) -> None:
    assert result.cases >= EXPECTED_CASES
    assert not result.unexplained, "\n".join(
        f"{d.case}: {d.what}: stand-in {d.standin!r}, real {d.real!r}" for d in result.unexplained
    )


@needs_binaries
def test_every_acceptance_still_matches_a_difference(result: SuiteResult) -> None:
    # A rule that matches nothing any more hides nothing: remove it with the fix.
    stale = [r for r in ACCEPTED if not any(r.matches(d) for d in result.differences)]
    assert stale == []


@needs_binaries
def test_a_failure_midway_stops_every_process_and_leaves_no_temp_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from irsa_lab.backends import k8s

    spawned: list[subprocess.Popen[bytes]] = []
    spawn = k8s.K8sLab._spawn

    def spy(self: k8s.K8sLab, *args: Any, **kwargs: Any) -> Any:
        proc = spawn(self, *args, **kwargs)
        spawned.append(proc.popen)
        return proc

    def broken(side: Side) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(k8s.K8sLab, "_spawn", spy)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(suite, "observe", broken)
    with pytest.raises(RuntimeError, match="boom"):
        suite.run()
    assert spawned
    assert all(p.poll() is not None for p in spawned)
    assert list(tmp_path.iterdir()) == []
