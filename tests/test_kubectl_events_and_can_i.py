"""Events, ``kubectl auth can-i`` and ``kubectl logs`` with the real kubectl (v1.36.1).

Run against the embedded lab and against the ``k8s`` backend (the real kube-apiserver,
scheduler and controller manager); where both answer, the same facts are asserted:
the scheduler's ``Scheduled`` event (posted by the scheduler, shown by ``kubectl get
events`` and ``kubectl describe``, also through ``events.k8s.io/v1``), what
SelfSubjectAccessReview says for the admin and for a ServiceAccount token, and the
end-to-end walkthrough with ``kubectl create sa`` and ``kubectl create deployment``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_kubectl_workloads import KUBECTL, Cluster, running_cluster, wait_for

pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl v1.36.1 is not built; run `make k8s-bin` to build it"
)

NODE = "ip-192-168-12-34.eu-west-1.compute.internal"
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "evpod"},
    "spec": {
        "containers": [{"name": "app", "image": "amazon/aws-cli", "command": ["sleep", "3600"]}]
    },
}


@pytest.fixture(scope="module", params=["embedded", "k8s"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(request.param, tmp_path_factory.mktemp(f"events-{request.param}"))


@pytest.fixture(scope="module")
def pod(cluster: Cluster) -> Iterator[dict[str, Any]]:
    cluster.ok("apply", "-f", "-", input=json.dumps(POD))
    cluster.ok("wait", "--for=condition=Ready", "pod/evpod", "--timeout=60s", timeout=90)
    try:
        yield cluster.json("get", "pod", "evpod")
    finally:
        cluster.run("delete", "pod", "evpod", "--wait=false")


def _events_of(cluster: Cluster, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.json(
        "get", "events", "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


def test_the_scheduler_posts_scheduled_and_kubectl_get_events_shows_it(
    cluster: Cluster, pod: dict[str, Any]
) -> None:
    scheduled = wait_for(
        lambda: [e for e in _events_of(cluster, "evpod") if e["reason"] == "Scheduled"],
        what="the Scheduled event",
    )[0]
    assert scheduled["message"] == f"Successfully assigned default/evpod to {NODE}"
    assert scheduled["type"] == "Normal"
    assert scheduled["reportingComponent"] == "default-scheduler"
    assert scheduled["action"] == "Binding"
    # Written through events.k8s.io by the scheduler: eventTime, no legacy timestamps.
    assert scheduled["eventTime"] and scheduled["firstTimestamp"] is None
    assert scheduled["source"] == {}
    assert scheduled["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert scheduled["metadata"]["name"].startswith("evpod.")

    table = cluster.ok("get", "events").splitlines()
    assert table[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    row = next(line for line in table if "Scheduled" in line and "pod/evpod" in line)
    assert row.split()[1:4] == ["Normal", "Scheduled", "pod/evpod"]

    described = cluster.ok("describe", "pod", "evpod")
    events = described[described.index("Events:") :]
    assert "default-scheduler" in events
    assert f"Successfully assigned default/evpod to {NODE}" in events

    v1 = cluster.json("get", "events.v1.events.k8s.io", "--field-selector", "regarding.name=evpod")[
        "items"
    ]
    new = next(e for e in v1 if e["reason"] == "Scheduled")
    assert new["note"] == scheduled["message"]
    assert new["reportingController"] == "default-scheduler"
    assert new["regarding"]["name"] == "evpod" and new["deprecatedSource"] == {}


def test_the_kubelet_posts_pulled_created_and_started(
    cluster: Cluster, pod: dict[str, Any]
) -> None:
    events = wait_for(
        lambda: [
            e for e in _events_of(cluster, "evpod") if e["source"].get("component") == "kubelet"
        ],
        what="the kubelet's events",
    )
    assert [(e["reason"], e["message"]) for e in events] == [
        (
            "Pulled",
            'Container image "amazon/aws-cli" already present on machine and can be '
            "accessed by the pod",
        ),
        ("Created", "Created container: app"),
        ("Started", "Started container app"),
    ]
    assert {e["involvedObject"]["fieldPath"] for e in events} == {"spec.containers{app}"}
    assert {e["source"]["host"] for e in events} == {NODE}
    described = cluster.ok("describe", "pod", "evpod")
    assert "spec.containers{app}: Started container app" in described


def _token_kubeconfig(cluster: Cluster, token: str) -> Path:
    """A kubeconfig with the cluster's server and CA and only a bearer token."""
    admin = yaml.safe_load((cluster.state / "kubeconfig").read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [
            {"name": "sa", "context": {"cluster": admin["clusters"][0]["name"], "user": "sa"}}
        ],
        "current-context": "sa",
    }
    path = cluster.state / "sa-kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_auth_can_i_says_yes_to_the_admin_and_what_rbac_grants_a_service_account(
    cluster: Cluster,
) -> None:
    assert cluster.ok("auth", "can-i", "create", "pods").strip() == "yes"
    assert cluster.ok("auth", "can-i", "delete", "deployments.apps", "-n", "kube-system") == "yes\n"
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectAccessReview",
        "spec": {
            "resourceAttributes": {"namespace": "default", "verb": "create", "resource": "pods"}
        },
    }
    # --validate=false: a ServiceAccount may not read the CRDs that validation lists.
    create = ("create", "--validate=false", "-f", "-", "-o", "json")
    answer = json.loads(cluster.ok(*create, input=json.dumps(review)))
    assert answer["status"]["allowed"] is True and answer["metadata"] == {}

    token = cluster.ok("create", "token", "s3-readonly-sa").strip()
    kubeconfig = _token_kubeconfig(cluster, token)
    as_sa = ("--kubeconfig", str(kubeconfig))
    who = cluster.ok(*as_sa, "auth", "whoami", "-o", "json")
    assert json.loads(who)["status"]["userInfo"]["username"] == (
        "system:serviceaccount:default:s3-readonly-sa"
    )
    # kubectl auth can-i prints "no" and exits 1 when the answer is no.
    refused = cluster.run(*as_sa, "auth", "can-i", "create", "pods")
    assert (refused.returncode, refused.stdout.strip()) == (1, "no")
    refused = cluster.run(*as_sa, "auth", "can-i", "list", "secrets", "-n", "kube-system")
    assert (refused.returncode, refused.stdout.strip()) == (1, "no")
    allowed = cluster.run(
        *as_sa, "auth", "can-i", "create", "selfsubjectaccessreviews.authorization.k8s.io"
    )
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes")
    answer = json.loads(cluster.ok(*as_sa, *create, input=json.dumps(review)))
    assert answer["status"]["allowed"] is False


def test_kubectl_logs_answers_in_kubernetes_shape_never_not_found(
    cluster: Cluster, pod: dict[str, Any]
) -> None:
    result = cluster.run("logs", "evpod")
    assert "NotFound" not in result.stderr
    if cluster.backend == "embedded":
        assert result.returncode == 1
        assert result.stderr.startswith(
            'Error from server (BadRequest): container "app" in pod "evpod" has no logs: '
            "irsa-lab does not run a container's main command"
        )
    # kubectl checks the container name itself, from the pod it read.
    wrong = cluster.run("logs", "evpod", "-c", "nosuch")
    assert wrong.stderr.strip() == "error: container nosuch is not valid for pod evpod out of: app"
    missing = cluster.run("logs", "nosuchpod")
    assert missing.stderr.strip() == (
        'error: error from server (NotFound): pods "nosuchpod" not found in namespace "default"'
    )


def test_the_walkthrough_with_kubectl_create_sa_and_create_deployment(cluster: Cluster) -> None:
    role = "arn:aws:iam::111122223333:role/walkthrough"
    assert cluster.ok("create", "sa", "demo-sa").strip() == "serviceaccount/demo-sa created"
    cluster.ok("annotate", "sa", "demo-sa", f"eks.amazonaws.com/role-arn={role}")
    created = cluster.ok(
        "create", "deployment", "demo", "--image=amazon/aws-cli", "--", "sleep", "infinity"
    )
    assert created.strip() == "deployment.apps/demo created"
    try:
        cluster.ok("set", "serviceaccount", "deployment", "demo", "demo-sa")
        cluster.ok("rollout", "restart", "deployment", "demo")
        out = cluster.ok("rollout", "status", "deployment", "demo", "--timeout=60s", timeout=90)
        assert out.strip().endswith('deployment "demo" successfully rolled out')

        def mutated() -> list[dict[str, Any]]:
            pods = cluster.pods("app=demo")
            return [
                p
                for p in pods
                if {
                    e["name"]: e.get("value") for e in p["spec"]["containers"][0].get("env") or []
                }.get("AWS_ROLE_ARN")
                == role
            ]

        pod = wait_for(mutated, what="a pod mutated with the role")[0]
        assert pod["spec"]["serviceAccountName"] == "demo-sa"
        assert cluster.ok("auth", "can-i", "create", "pods").strip() == "yes"
        events = cluster.ok("get", "events")
        assert "ScalingReplicaSet" in events and "Scheduled" in events
        logs = cluster.run("logs", "deploy/demo")
        assert "NotFound" not in logs.stderr
    finally:
        cluster.ok("delete", "deployment", "demo")
        cluster.ok("delete", "sa", "demo-sa")
