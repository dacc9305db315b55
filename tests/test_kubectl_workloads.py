"""Deployments, ReplicaSets and namespaces with the real kubectl (v1.36.1), on both backends.

The same commands run against the embedded lab (the API stand-in and
:mod:`irsa_lab.kube.controllers`) and against the ``k8s`` backend (the real
kube-apiserver and kube-controller-manager), and the same facts are asserted on both:
the article's fix for "annotated after the pod was created" (``kubectl rollout
restart``) gives new pods the ServiceAccount's new role, ``kubectl rollout status``
finishes, deleting a Deployment removes its ReplicaSets and pods, a pod refused by
admission is a ``FailedCreate`` event, and a namespace comes with its ``default``
ServiceAccount and takes its contents with it when deleted.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from irsa_lab.backends import binaries

KUBECTL = binaries.find("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl v1.36.1 is not built; run `make k8s-bin` to build it"
)

ROLE_A = "arn:aws:iam::111122223333:role/web-before"
ROLE_B = "arn:aws:iam::111122223333:role/web-after"
TOKEN_FILE = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"


def deployment(name: str, service_account: str | None = None) -> str:
    spec = {"containers": [{"name": "aws-cli", "image": "amazon/aws-cli"}]}
    spec["containers"][0]["command"] = ["sleep", "infinity"]
    if service_account:
        spec["serviceAccountName"] = service_account
    return json.dumps(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
            },
        }
    )


class Cluster:
    """kubectl against one backend's kubeconfig, with a private HOME."""

    def __init__(self, backend: str, state: Path) -> None:
        self.backend = backend
        self.state = state
        home = state / "home"
        home.mkdir(exist_ok=True)
        self.env = {**os.environ, "KUBECONFIG": str(state / "kubeconfig"), "HOME": str(home)}

    def run(
        self, *args: str, input: str | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        return subprocess.run(
            [str(KUBECTL.path), *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, input: str | None = None, timeout: float = 60) -> str:
        result = self.run(*args, input=input, timeout=timeout)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "-o", "json"))

    def pods(self, selector: str, namespace: str = "default") -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.json("get", "pods", "-n", namespace, "-l", selector)[
            "items"
        ]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def wait_for(check: Callable[[], Any], timeout: float = 30, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        time.sleep(0.3)


def running_cluster(backend: str, state: Path) -> Iterator[Cluster]:
    """A lab of ``backend`` (embedded, or the real programs of ``k8s``) for the time of a
    module, with kubectl pointed at it; the ``k8s`` one skips when they are not built."""
    if backend == "embedded":
        from irsa_lab.stack import EmbeddedLab

        with EmbeddedLab(state_dir=state, seed=20240327):
            yield Cluster("embedded", state)
        return
    missing = binaries.missing()
    if missing:
        pytest.skip(f"{', '.join(missing)} not built: run `make k8s-bin` (needs Go)")
    from irsa_lab.backends.k8s import K8sLab

    with K8sLab(state_dir=state):
        yield Cluster("k8s", state)


@pytest.fixture(scope="module", params=["embedded", "k8s"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    yield from running_cluster(request.param, tmp_path_factory.mktemp(f"workloads-{request.param}"))


def _role_of(pod: dict[str, Any]) -> str | None:
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
    return env.get("AWS_ROLE_ARN")


def test_rollout_restart_gives_new_pods_the_service_accounts_new_role(cluster: Cluster) -> None:
    sa = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "web-sa"}}
    assert cluster.ok("apply", "-f", "-", input=json.dumps(sa)).strip() == (
        "serviceaccount/web-sa created"
    )
    cluster.ok("annotate", "sa", "web-sa", f"eks.amazonaws.com/role-arn={ROLE_A}")
    assert cluster.ok("apply", "-f", "-", input=deployment("web")).strip() == (
        "deployment.apps/web created"
    )
    try:
        # The first template rolls out before the ServiceAccount changes it, so the
        # revisions are the same whatever the machine's speed: 1, 2 (set sa), 3 (restart).
        cluster.ok("rollout", "status", "deployment", "web", "--timeout=60s", timeout=90)
        assert "serviceaccount updated" in cluster.ok(
            "set", "serviceaccount", "deployment", "web", "web-sa"
        )
        out = cluster.ok("rollout", "status", "deployment", "web", "--timeout=60s", timeout=90)
        assert out.strip().endswith('deployment "web" successfully rolled out')
        first = wait_for(
            lambda: [p for p in cluster.pods("app=web") if _role_of(p) == ROLE_A],
            what="a pod with the first role",
        )
        assert first[0]["spec"]["serviceAccountName"] == "web-sa"

        # Annotated too late: running pods keep the old role until the rollout.
        cluster.ok(
            "annotate", "sa", "web-sa", "--overwrite", f"eks.amazonaws.com/role-arn={ROLE_B}"
        )
        assert all(_role_of(p) == ROLE_A for p in cluster.pods("app=web"))
        assert cluster.ok("rollout", "restart", "deployment", "web").strip() == (
            "deployment.apps/web restarted"
        )
        out = cluster.ok("rollout", "status", "deployment", "web", "--timeout=60s", timeout=90)
        assert out.strip().endswith('deployment "web" successfully rolled out')
        pods = wait_for(
            lambda: (lambda ps: ps if ps and all(_role_of(p) == ROLE_B for p in ps) else None)(
                cluster.pods("app=web")
            ),
            what="only pods with the new role",
        )
        pod = pods[0]
        assert "kubectl.kubernetes.io/restartedAt" in pod["metadata"]["annotations"]
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == TOKEN_FILE
        assert pod["spec"]["nodeName"]

        # The pod belongs to the newest ReplicaSet, which belongs to the Deployment.
        dep = cluster.json("get", "deployment", "web")
        assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        owner = pod["metadata"]["ownerReferences"][0]
        assert owner["kind"] == "ReplicaSet" and owner["controller"] is True
        rs = cluster.json("get", "replicaset", owner["name"])
        assert rs["metadata"]["ownerReferences"][0]["uid"] == dep["metadata"]["uid"]
        assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "3"
        tmpl_hash = rs["metadata"]["labels"]["pod-template-hash"]
        assert owner["name"] == f"web-{tmpl_hash}"
        assert pod["metadata"]["labels"]["pod-template-hash"] == tmpl_hash
        assert rs["spec"]["selector"]["matchLabels"] == {
            "app": "web",
            "pod-template-hash": tmpl_hash,
        }
        status = dep["status"]
        assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (
            1,
            1,
            1,
        )
        conditions = {c["type"]: c["reason"] for c in status["conditions"]}
        assert conditions == {
            "Available": "MinimumReplicasAvailable",
            "Progressing": "NewReplicaSetAvailable",
        }
        table = cluster.ok("get", "deployment", "web").splitlines()
        assert table[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
        assert table[1].split()[:4] == ["web", "1/1", "1", "1"]
        history = cluster.ok("rollout", "history", "deployment", "web")
        assert [line.split()[0] for line in history.splitlines()[2:] if line.strip()] == [
            "1",
            "2",
            "3",
        ]

        events = cluster.json("get", "events", "--field-selector", "reason=ScalingReplicaSet")
        messages = [e["message"] for e in events["items"]]
        assert f"Scaled up replica set web-{tmpl_hash} from 0 to 1" in messages
        assert any(m.startswith("Scaled down replica set web-") for m in messages)
        sources = {e["source"].get("component") for e in events["items"]}
        assert sources == {"deployment-controller"}
    finally:
        cluster.ok("delete", "deployment", "web")
        cluster.ok("delete", "sa", "web-sa")


def test_deleting_a_deployment_removes_its_replicasets_and_pods(cluster: Cluster) -> None:
    cluster.ok("apply", "-f", "-", input=deployment("gone"))
    cluster.ok("rollout", "status", "deployment", "gone", "--timeout=60s", timeout=90)
    assert len(cluster.pods("app=gone")) == 1
    assert cluster.ok("delete", "deployment", "gone").strip() == (
        'deployment.apps "gone" deleted from default namespace'
    )
    wait_for(
        lambda: (
            not cluster.json("get", "rs", "-l", "app=gone")["items"]
            and not cluster.json("get", "pods", "-l", "app=gone")["items"]
        ),
        what="the ReplicaSets and pods to be collected",
    )


def test_a_pod_refused_by_admission_is_a_failed_create_event(cluster: Cluster) -> None:
    cluster.ok("apply", "-f", "-", input=deployment("refused", service_account="nosuch"))
    try:

        def failed() -> list[dict[str, Any]]:
            items: list[dict[str, Any]] = cluster.json(
                "get", "events", "--field-selector", "reason=FailedCreate"
            )["items"]
            return [e for e in items if e["involvedObject"]["name"].startswith("refused-")]

        event = wait_for(failed, what="a FailedCreate event")[0]
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == "ReplicaSet"
        assert event["source"]["component"] == "replicaset-controller"
        assert event["message"].startswith("Error creating: ")
        assert event["message"].endswith(
            'error looking up service account default/nosuch: serviceaccount "nosuch" not found'
        )
        assert cluster.pods("app=refused") == []

        def replica_failure() -> dict[str, Any] | None:
            dep = cluster.json("get", "deployment", "refused")
            conds = {c["type"]: c for c in dep["status"].get("conditions") or []}
            return conds.get("ReplicaFailure")

        assert wait_for(replica_failure, what="ReplicaFailure")["reason"] == "FailedCreate"
        status = cluster.json("get", "deployment", "refused")["status"]
        assert status["unavailableReplicas"] == 1 and "availableReplicas" not in status
    finally:
        cluster.ok("delete", "deployment", "refused")


def test_a_namespace_gets_its_default_service_account_and_takes_its_contents_when_deleted(
    cluster: Cluster,
) -> None:
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "dev"}}
    assert cluster.ok("apply", "-f", "-", input=json.dumps(ns)).strip() == "namespace/dev created"
    wait_for(
        lambda: cluster.run("get", "sa", "default", "-n", "dev").returncode == 0,
        what="the namespace's default ServiceAccount",
    )
    cluster.ok("apply", "-n", "dev", "-f", "-", input=deployment("inner"))
    cluster.ok("rollout", "status", "-n", "dev", "deployment", "inner", "--timeout=60s", timeout=90)
    assert len(cluster.pods("app=inner", "dev")) == 1
    # The DELETE answers with the namespace as it now is: Terminating.
    deleted = json.loads(cluster.ok("delete", "--raw", "/api/v1/namespaces/dev"))
    assert deleted["status"]["phase"] == "Terminating"
    assert deleted["metadata"]["deletionTimestamp"]
    # Nothing new may be created in a namespace that is being terminated.
    refused = cluster.run("create", "-n", "dev", "-f", "-", input=deployment("late"))
    if refused.returncode != 0:  # unless the namespace was already gone
        assert "because it is being terminated" in refused.stderr or "not found" in refused.stderr
    wait_for(
        lambda: cluster.run("get", "namespace", "dev").returncode != 0,
        timeout=60,
        what="the namespace to go",
    )
    gone = cluster.run("get", "namespace", "dev")
    assert gone.stderr.strip() == 'Error from server (NotFound): namespaces "dev" not found'
    assert cluster.json("get", "pods", "-n", "dev")["items"] == []


def test_apply_set_image_and_scale_change_a_deployment_as_on_a_cluster(cluster: Cluster) -> None:
    cluster.ok("apply", "-f", "-", input=deployment("edit"))
    try:
        cluster.ok("rollout", "status", "deployment", "edit", "--timeout=60s", timeout=90)
        # Re-applying an edited manifest sends a strategic merge patch: the container is
        # merged by name, so what the edit did not touch stays.
        edited = json.loads(deployment("edit"))
        edited["spec"]["template"]["spec"]["containers"][0]["command"] = ["sleep", "3600"]
        assert cluster.ok("apply", "-f", "-", input=json.dumps(edited)).strip() == (
            "deployment.apps/edit configured"
        )
        cluster.ok("set", "image", "deployment/edit", "aws-cli=amazon/aws-cli:2.15.0")
        cluster.ok("set", "env", "deployment/edit", "GREETING=hello")
        spec = cluster.json("get", "deployment", "edit")["spec"]["template"]["spec"]
        assert len(spec["containers"]) == 1
        container = spec["containers"][0]
        assert container["command"] == ["sleep", "3600"]
        assert container["image"] == "amazon/aws-cli:2.15.0"
        assert container["env"] == [{"name": "GREETING", "value": "hello"}]
        assert not [k for k in json.dumps(spec).split('"') if k.startswith("$")]

        assert cluster.ok("scale", "deployment", "edit", "--replicas=2").strip() == (
            "deployment.apps/edit scaled"
        )
        cluster.ok("rollout", "status", "deployment", "edit", "--timeout=60s", timeout=90)
        pods = wait_for(
            lambda: (lambda ps: ps if len(ps) == 2 else None)(cluster.pods("app=edit")),
            what="two pods",
        )
        assert all(p["spec"]["containers"][0]["image"] == "amazon/aws-cli:2.15.0" for p in pods)
        scale = json.loads(
            cluster.ok("get", "--raw", "/apis/apps/v1/namespaces/default/deployments/edit/scale")
        )
        assert scale["kind"] == "Scale" and scale["spec"] == {"replicas": 2}
        assert scale["status"]["selector"] == "app=edit"
        cluster.ok("scale", "deployment", "edit", "--replicas=1")
        wait_for(lambda: len(cluster.pods("app=edit")) == 1, what="one pod")
    finally:
        cluster.ok("delete", "deployment", "edit")


def test_a_deployment_without_a_matching_selector_is_invalid_as_on_a_cluster(
    cluster: Cluster,
) -> None:
    spec = json.loads(deployment("sel"))
    del spec["spec"]["selector"]
    missing = cluster.run("create", "-f", "-", input=json.dumps(spec))
    assert missing.stderr.strip() == (
        'The Deployment "sel" is invalid: \n'
        "* spec.selector: Required value\n"
        '* spec.template.metadata.labels: Invalid value: {"app":"sel"}: '
        "`selector` does not match template `labels`"
    )
    cluster.ok("apply", "-f", "-", input=deployment("sel"))
    try:
        moved = cluster.run(
            "patch",
            "deployment",
            "sel",
            "--type=merge",
            "-p",
            '{"spec":{"selector":{"matchLabels":{"app":"other"}}}}',
        )
        assert moved.stderr.strip() == (
            'The Deployment "sel" is invalid: \n'
            '* spec.template.metadata.labels: Invalid value: {"app":"sel"}: '
            "`selector` does not match template `labels`\n"
            '* spec.selector: Invalid value: {"matchLabels":{"app":"other"}}: field is immutable'
        )
    finally:
        cluster.ok("delete", "deployment", "sel")
