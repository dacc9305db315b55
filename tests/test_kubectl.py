"""kubectl (1.32) against the API stand-in with the written kubeconfig."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kube_fixtures import KubeLab, TestWebhook, running_kube_lab, serve_webhook

from irsa_lab.jose import decode_unverified

pytestmark = [
    pytest.mark.kubectl,
    pytest.mark.skipif(
        shutil.which("kubectl") is None,
        reason="kubectl is not installed; install kubectl to run these tests",
    ),
]

POD_YAML = """\
apiVersion: v1
kind: Pod
metadata:
  name: mypod
spec:
  containers:
  - name: app
    image: amazon/aws-cli
    command: ["sleep", "3600"]
"""


@pytest.fixture
def kube_lab(tmp_path: Path) -> Iterator[KubeLab]:
    with running_kube_lab(tmp_path) as lab:
        yield lab


def kubectl(lab: KubeLab, *args: str) -> str:
    """Run kubectl with the lab's kubeconfig and a private HOME (fresh discovery cache)."""
    home = lab.kubeconfig.parent / "home"
    home.mkdir(exist_ok=True)
    env = {**os.environ, "KUBECONFIG": str(lab.kubeconfig), "HOME": str(home)}
    result = subprocess.run(
        ["kubectl", *args],
        env=env,
        cwd=lab.kubeconfig.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_kubectl_gets_namespaces_and_service_accounts(kube_lab: KubeLab) -> None:
    out = kubectl(kube_lab, "get", "ns")
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    assert "default           Active" in out
    out = kubectl(kube_lab, "get", "sa")
    assert out.splitlines()[1].split()[:2] == ["default", "0"]


def test_kubectl_describes_the_default_service_account(kube_lab: KubeLab) -> None:
    out = kubectl(kube_lab, "describe", "sa", "default")
    assert "Name:                default" in out and "Namespace:           default" in out


def test_kubectl_applies_gets_and_deletes_a_pod(kube_lab: KubeLab) -> None:
    (kube_lab.kubeconfig.parent / "pod.yaml").write_text(POD_YAML)
    assert kubectl(kube_lab, "apply", "-f", "pod.yaml").strip() == "pod/mypod created"
    pod = json.loads(kubectl(kube_lab, "get", "pod", "mypod", "-o", "json"))
    assert pod["kind"] == "Pod" and pod["spec"]["serviceAccountName"] == "default"
    assert "kubectl.kubernetes.io/last-applied-configuration" in pod["metadata"]["annotations"]
    text = kubectl(kube_lab, "get", "pod", "mypod", "-o", "yaml")
    assert "name: mypod" in text and "kube-api-access-" in text
    assert kubectl(kube_lab, "delete", "pod", "mypod").strip() == 'pod "mypod" deleted'
    assert kube_lab.api.store.get("pods", "default", "mypod") is None


def test_kubectl_creates_a_token_for_sts(kube_lab: KubeLab) -> None:
    token = kubectl(
        kube_lab,
        "create",
        "token",
        "default",
        "--audience",
        "sts.amazonaws.com",
        "--duration",
        "10m",
    ).strip()
    _, claims = decode_unverified(token)
    assert claims["aud"] == ["sts.amazonaws.com"] and claims["exp"] - claims["iat"] == 600
    assert claims["sub"] == "system:serviceaccount:default:default"


def test_kubectl_annotates_a_service_account(kube_lab: KubeLab) -> None:
    arn = "arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"
    kubectl(kube_lab, "annotate", "sa", "default", f"eks.amazonaws.com/role-arn={arn}")
    sa = kube_lab.api.store.get("serviceaccounts", "default", "default")
    assert sa is not None and sa["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": arn}


def test_kubectl_describes_a_webhook_configuration(kube_lab: KubeLab) -> None:
    hook: TestWebhook = serve_webhook(kube_lab)
    kube_lab.api.create_webhook_configuration(hook.configuration("pod-identity-webhook"))
    out = kubectl(kube_lab, "describe", "mutatingwebhookconfiguration", "pod-identity-webhook")
    assert "Name:         pod-identity-webhook" in out
    assert "Failure Policy:  Fail" in out and "Timeout Seconds:  10" in out


def test_kubectl_reads_the_discovery_documents(kube_lab: KubeLab) -> None:
    doc = json.loads(kubectl(kube_lab, "get", "--raw", "/.well-known/openid-configuration"))
    assert doc["issuer"] == kube_lab.api.issuer.issuer
    assert json.loads(kubectl(kube_lab, "get", "--raw", "/openid/v1/jwks"))["keys"]
