"""Notebook 06's helpers: the same pod through IRSA and through EKS Pod Identity.

The pure views (the mutation table, the story drawn from trace events, the masking) are
checked on hand-made inputs; the rest against an embedded lab, through the real
clients: the set-up is idempotent, the Pod Identity pod runs as its role with the
session tags, reads its own namespace's prefix only, and the precedence rules hold.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from irsa_lab import constants as C
from irsa_lab.labs import probes
from irsa_lab.lessons import pod_identity as pi
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock
from irsa_lab.trace import TraceEvent

AGENT_URL = "http://127.0.0.1:40123/v1/credentials"


def _pod(name: str, env: dict[str, str], volume: str, audience: str, mount: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": "sa",
            "containers": [
                {
                    "env": [{"name": k, "value": v} for k, v in env.items()],
                    "volumeMounts": [{"name": volume, "mountPath": mount}],
                }
            ],
            "volumes": [
                {
                    "name": volume,
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": audience,
                                    "expirationSeconds": 3600,
                                }
                            }
                        ]
                    },
                }
            ],
        },
    }


def test_the_mutation_table_puts_each_way_s_variables_in_its_own_column() -> None:
    irsa = _pod(
        "mypod",
        {C.ENV_ROLE_ARN: C.ROLE_ARN, C.ENV_WEB_IDENTITY_TOKEN_FILE: C.TOKEN_FILE},
        C.TOKEN_VOLUME_NAME,
        C.DEFAULT_AUDIENCE,
        C.TOKEN_MOUNT_PATH,
    )
    pod_identity = _pod(
        "reports",
        {C.ENV_CONTAINER_CREDENTIALS_FULL_URI: AGENT_URL},
        C.CONTAINER_CREDENTIALS_VOLUME_NAME,
        C.CONTAINER_CREDENTIALS_AUDIENCE,
        C.CONTAINER_CREDENTIALS_MOUNT_PATH,
    )
    rows = {
        line.split()[0]: line.split()[1:]
        for line in pi.mutation_table(irsa, pod_identity).splitlines()[2:]
    }
    assert rows[C.ENV_ROLE_ARN] == [C.ROLE_ARN, "-"]
    assert rows[C.ENV_CONTAINER_CREDENTIALS_FULL_URI] == [
        "-",
        "http://127.0.0.1:<port>/v1/credentials",
    ]
    assert rows["audience"] == [C.DEFAULT_AUDIENCE, C.CONTAINER_CREDENTIALS_AUDIENCE]
    assert rows["expirationSeconds"] == ["3600", "3600"]


def _event(
    seq: int, source: str, target: str, call: str, outcome: str = "ok", **detail: Any
) -> TraceEvent:
    return TraceEvent(
        seq, float(seq), source, target, call, outcome, detail=detail, wall=float(seq)
    )


ARN = "arn:aws:sts::123456789012:assumed-role/R/eks-irsa-lab-reports-0f8fad5b-d9cb-469f-a165-70867728950e"


def test_the_story_draws_each_request_before_what_it_caused_and_each_reply_after() -> None:
    events = [
        _event(1, "sdk", "token-file", "read token", path="/t"),
        # Each caller records its call once it has its answer: EKS Auth's key fetch, then
        # EKS Auth's call, then the agent's.
        _event(2, "eks-auth", "oidc", "GET jwks", status=200),
        _event(
            3,
            "pod-identity-agent",
            "eks-auth",
            "AssumeRoleForPodIdentity",
            caller="arn:aws:sts::1:assumed-role/Node/i-1",
            subject="default/reports-sa",
            arn=ARN,
        ),
        _event(4, "pod", "pod-identity-agent", "GET /v1/credentials", cache="miss", arn=ARN),
        _event(5, "sdk", "sts", "GetCallerIdentity", arn=ARN),
    ]
    hops = [
        line
        for line in pi.pod_identity_story(events).splitlines()
        if line[:3].strip().rstrip(".").isdigit()
    ]
    assert [h.split(". ", 1)[1] for h in hops] == [
        "pod -> token file: read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "pod -> agent: GET /v1/credentials",
        "agent -> EKS Auth: AssumeRoleForPodIdentity",
        "EKS Auth -> issuer: GET jwks",
        "EKS Auth -> agent: credentials",
        "agent -> pod: credentials (JSON)",
        "pod -> STS: GetCallerIdentity",
    ]
    story = pi.pod_identity_story(events)
    assert "signed by Node (the node's role)" in story
    assert "eks-irsa-lab-reports-<uuid>" in story and "0f8fad5b" not in story


def test_a_cache_hit_never_reaches_eks_auth_and_an_agent_error_is_shown() -> None:
    hit = pi.pod_identity_story(
        [_event(1, "pod", "pod-identity-agent", "GET /v1/credentials", cache="hit")]
    )
    assert "cache hit: EKS Auth not asked" in hit and "EKS Auth ->" not in hit
    # botocore tries three times; each try is one agent call and one EKS Auth refusal.
    tries = []
    for n in range(3):
        tries += [
            _event(
                2 * n + 1,
                "pod-identity-agent",
                "eks-auth",
                "AssumeRoleForPodIdentity",
                "AccessDeniedException",
                message="no TagSession",
            ),
            _event(
                2 * n + 2,
                "pod",
                "pod-identity-agent",
                "GET /v1/credentials",
                "400",
                message="no TagSession",
            ),
        ]
    refused = pi.pod_identity_story(tries)
    assert refused.count("agent -> EKS Auth: AssumeRoleForPodIdentity") == 3
    assert "EKS Auth -> agent: error" in refused and "agent -> pod: HTTP 400" in refused


class _ExecOnly:
    """A lab whose pod answers one command with a fixed result (for the probe's parser)."""

    def __init__(self, returncode: int, stdout: str, stderr: str) -> None:
        self.done = subprocess.CompletedProcess([], returncode, stdout, stderr)

    def exec(self, *args: Any, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return self.done


def test_the_probe_reads_eks_auth_s_error_as_the_agent_passed_it_on() -> None:
    stderr = (
        "\nError when retrieving credentials from container-role: Error retrieving metadata: "
        "Received non 200 response 400 from container metadata: [5b1c]: (AccessDeniedException): "
        "pods.eks.amazonaws.com is not authorized to perform: sts:TagSession on resource: "
        "arn:aws:iam::123456789012:role/R, fault: client\n"
    )
    me = probes.whoami(_ExecOnly(255, "", stderr))  # type: ignore[arg-type]
    assert (me.error, me.operation) == ("AccessDeniedException", "AssumeRoleForPodIdentity")
    assert me.message.endswith("on resource: arn:aws:iam::123456789012:role/R")
    assert me.failure is None  # not one of STS's AssumeRoleWithWebIdentity refusals


# --- against a lab --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    stack = EmbeddedLab(
        state_dir=tmp_path_factory.mktemp("pod-identity"), seed=DEFAULT_SEED, clock=lab_clock(True)
    ).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    pi.set_up(lab)
    yield lab
    lab.close()


def test_the_set_up_can_run_again_and_keeps_one_association_per_service_account(lab: Lab) -> None:
    again = pi.set_up(lab)
    assert again.associations == [
        (C.NAMESPACE, pi.PI_SERVICE_ACCOUNT, pi.PI_ROLE_NAME),
        (pi.TEAM_NAMESPACE, pi.PI_SERVICE_ACCOUNT, pi.PI_ROLE_NAME),
    ]
    listed = lab.aws_client("eks").list_pod_identity_associations(clusterName=C.CLUSTER_NAME)
    pairs = sorted((a["namespace"], a["serviceAccount"]) for a in listed["associations"])
    assert pairs == sorted(
        [(C.NAMESPACE, pi.PI_SERVICE_ACCOUNT), (pi.TEAM_NAMESPACE, pi.PI_SERVICE_ACCOUNT)]
    )


def test_the_pod_identity_pod_has_no_role_arn_and_runs_as_the_association_s_role(lab: Lab) -> None:
    irsa, pod_identity = pi.both_ways(lab)
    assert pi.env_names(pod_identity)[-2:] == [
        C.ENV_CONTAINER_CREDENTIALS_FULL_URI,
        C.ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE,
    ]
    assert C.ENV_ROLE_ARN not in pi.env_names(pod_identity) and C.ENV_ROLE_ARN in pi.env_names(irsa)
    assert pi.token_claims(lab, pi.PI_POD)["aud"] == [C.CONTAINER_CREDENTIALS_AUDIENCE]
    run = pi.credential_run(lab)
    assert run.arn == (
        f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/{pi.PI_ROLE_NAME}/eks-{C.CLUSTER_NAME}-{pi.PI_POD}-<uuid>"
    )
    assert "agent -> EKS Auth: AssumeRoleForPodIdentity" in run.steps()
    tags = pi.session_tags_text(run)
    assert (
        "kubernetes-namespace        default" in tags
        and "kubernetes-pod-name         reports" in tags
    )


def test_each_namespace_reads_its_own_prefix_and_gets_access_denied_for_the_other(lab: Lab) -> None:
    lab.recreate_pod(pi.pod_identity_manifest())
    lab.recreate_pod(pi.pod_identity_manifest(pi.TEAM_NAMESPACE))
    mine = pi.read_object(
        lab, pi.PI_POD, f"{pi.TEAM_NAMESPACE}/report.txt", namespace=pi.TEAM_NAMESPACE
    )
    theirs = pi.read_object(
        lab, pi.PI_POD, f"{C.NAMESPACE}/report.txt", namespace=pi.TEAM_NAMESPACE
    )
    assert mine == (
        f"{pi.TEAM_NAMESPACE}/{pi.PI_POD} reads {pi.TEAM_NAMESPACE}/report.txt: "
        '"the analytics namespace\'s report"'
    )
    assert "(AccessDenied) when calling the GetObject operation" in theirs


def test_an_association_beats_the_annotation_and_a_hand_set_irsa_pair_beats_the_agent(
    lab: Lab,
) -> None:
    pi.associate(lab, C.NAMESPACE, C.SERVICE_ACCOUNT)
    try:
        both = lab.recreate_pod(
            pi.pod_identity_manifest(name=pi.BOTH_POD, service_account=C.SERVICE_ACCOUNT)
        )
        assert C.ENV_ROLE_ARN not in pi.env_names(both)
        assert f"/{pi.PI_ROLE_NAME}/" in pi.identity(lab, pi.BOTH_POD).arn
        hand_set = lab.recreate_pod(pi.web_identity_manifest())
        assert {C.ENV_ROLE_ARN, C.ENV_CONTAINER_CREDENTIALS_FULL_URI} <= set(pi.env_names(hand_set))
        assert f"/{C.ROLE_NAME}/" in pi.identity(lab, pi.BOTH_WEB_IDENTITY_POD).arn
    finally:
        assert pi.drop_association(lab, C.NAMESPACE, C.SERVICE_ACCOUNT) == [
            f"{C.NAMESPACE}/{C.SERVICE_ACCOUNT}"
        ]
    mypod = lab.recreate_pod(
        pi.pod_identity_manifest(name=C.POD_NAME, service_account=C.SERVICE_ACCOUNT)
    )
    assert C.ENV_ROLE_ARN in pi.env_names(mypod)
