"""Notebook 03's helpers: the playground's "try it for real" goes through the real chain."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from irsa_lab import constants as C
from irsa_lab.lessons import trust_policy
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock
from irsa_lab.ui.playground import PRESETS, Playground


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    stack = EmbeddedLab(
        state_dir=tmp_path_factory.mktemp("stage3"), seed=DEFAULT_SEED, clock=lab_clock(True)
    ).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    yield lab
    lab.close()


@pytest.fixture
def pg(lab: Lab) -> Playground:
    return trust_policy.playground(lab)


def _iam_state(lab: Lab) -> tuple[dict[str, object], list[str]]:
    iam = lab.aws_client("iam")
    policy = iam.get_role(RoleName=C.ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    providers = [
        p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    ]
    return policy, sorted(providers)


def test_trying_each_preset_for_real_agrees_with_judge(pg: Playground) -> None:
    checks = trust_policy.compare_presets(pg)
    assert [c.preset for c in checks] == list(PRESETS)
    for c in checks:
        assert c.agree, (c.preset, c.predicted.text(), c.real.text())
        assert c.real.code == pg.presets[c.preset].expected_code
        assert c.real.source == trust_policy.REAL_SOURCE


def test_comparing_the_presets_leaves_the_playground_as_it_found_it(pg: Playground) -> None:
    pg.apply_preset("ServiceAccount typo")
    before, shown = pg.snapshot(), pg.static_text()
    checks = trust_policy.compare_presets(pg, ["correct", "missing OIDC provider"])
    assert [c.real.code for c in checks] == [None, "InvalidIdentityToken"]
    assert pg.snapshot() == before and pg.static_text() == shown
    assert pg.error_code == "AccessDenied"


def test_the_real_verdict_is_shown_beside_the_prediction_in_two_columns(pg: Playground) -> None:
    pg.apply_preset("wrong namespace")
    real = pg.run_for_real()
    assert real is not None
    html = pg.real_html.value
    columns = html[html.index("<table") :]
    assert columns.startswith('<table style="border-collapse:collapse;width:100%;')
    assert columns.count('<col style="width:50%;">') == 2
    left, right = columns.split("the real STS stand-in answers", 1)[1].split("</td><td", 1)
    assert "Checks (playground)" in left and f"Checks ({trust_policy.REAL_SOURCE})" in right
    assert "real STS stand-in: - DENIED: AccessDenied" in pg.static_text()


def test_trying_for_real_puts_iam_and_kubernetes_back_as_they_were(
    lab: Lab, pg: Playground
) -> None:
    before = _iam_state(lab)
    trust_policy.compare_presets(pg)
    assert _iam_state(lab) == before
    # The "wrong namespace" preset made it and deleted it: gone, or still being emptied
    # by the namespace controller, as on a cluster.
    left = [ns for ns in lab.core.list_namespace().items if ns.metadata.name == "dev"]
    assert all(ns.status.phase == "Terminating" for ns in left), left
    # Comparing again at once meets the terminating namespace and waits for it to go.
    assert trust_policy.compare_presets(pg) and _iam_state(lab) == before


def test_a_denied_real_run_names_the_failed_sub_condition(pg: Playground) -> None:
    pg.apply_preset("ServiceAccount typo")
    real = pg.run_for_real()
    assert real is not None and real.code == "AccessDenied" and real.http_status == 403
    failed = [r for r in real.failed_conditions if r.operator == "StringEquals"]
    assert [r.key.endswith(":sub") for r in failed] == [True]
    summary = trust_policy.verdict_summary(real)
    assert "failed condition: StringEquals" in summary
    assert "system:serviceaccount:default:s3-readonly-sa" in summary


def test_a_malformed_policy_is_refused_by_iam_in_both_verdicts(pg: Playground) -> None:
    pg.policy_text = '{"Version": "2012-10-17", "Statement": ['
    real = pg.run_for_real()
    assert real is not None
    assert (real.allowed, real.code) == (pg.verdict.allowed, pg.verdict.code)
    assert real.code == "MalformedPolicyDocument"


def test_the_broken_policy_denies_mypod_and_the_correct_one_lets_it_in(lab: Lab) -> None:
    iam = lab.aws_client("iam")
    broken = json.loads(trust_policy.broken_trust_policy(lab))
    correct = json.loads(trust_policy.correct_trust_policy(lab))
    assert trust_policy.trust_policy(lab) == correct
    assert broken != correct
    cond = broken["Statement"][0]["Condition"]["StringEquals"]
    assert any(v == "system:serviceaccount:default:s3-read-only-sa" for v in cond.values())
    iam.update_assume_role_policy(RoleName=C.ROLE_NAME, PolicyDocument=json.dumps(correct))


def test_aws_cli_runs_as_the_administrator(lab: Lab) -> None:
    done = trust_policy.aws_cli(
        lab, "sts", "get-caller-identity", "--query", "Arn", "--output", "text"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == C.ADMIN_USER_ARN


def test_a_namespace_still_terminating_is_waited_for_until_it_is_gone() -> None:
    """Comparing twice in a row meets "dev" still Terminating from the first run (nothing
    can be created in it): the playground waits for the namespace controller."""
    from kubernetes.client.rest import ApiException

    reads: list[str] = []

    class Core:
        def read_namespace(self, name: str) -> object:
            reads.append(name)
            if len(reads) < 3:
                return {"status": {"phase": "Terminating"}}
            raise ApiException(status=404)

    trust_policy._wait_until_gone(Core(), "dev")
    assert reads == ["dev"] * 3

    class Stuck:
        def read_namespace(self, name: str) -> object:
            return {"status": {"phase": "Terminating"}}

    with pytest.raises(TimeoutError, match="namespace dev still terminating"):
        trust_policy._wait_until_gone(Stuck(), "dev", timeout=0.2)
