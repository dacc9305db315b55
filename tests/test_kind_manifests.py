"""The webhook deployment, discovery RBAC and probe for kind, checked without a cluster."""

from __future__ import annotations

import base64
import ssl
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from irsa_lab.constants import (
    ENV_ROLE_ARN,
    ENV_WEB_IDENTITY_TOKEN_FILE,
    KIND_WEBHOOK_IMAGE,
    KIND_WEBHOOK_NAMESPACE,
    ROLE_ARN,
    SKIP_WEBHOOK_LABEL,
    TOKEN_FILE,
    TOKEN_VOLUME_NAME,
    WEBHOOK_NAME,
)
from irsa_lab.kind.manifests import (
    discovery_rbac,
    issue_serving_cert,
    probe_pod,
    scenario_manifests,
    to_yaml,
    webhook_dns_names,
    webhook_manifests,
    why_not_mutated,
)
from irsa_lab.pki import LabCA, write_secret

SERVICE_HOST = f"pod-identity-webhook.{KIND_WEBHOOK_NAMESPACE}.svc"


@pytest.fixture(scope="module")
def ca() -> LabCA:
    return LabCA.create()


@pytest.fixture(scope="module")
def docs(ca: LabCA) -> dict[str, dict[str, Any]]:
    # Parsed back from the YAML kubectl receives, so the test sees what the cluster sees.
    text = to_yaml(webhook_manifests(ca=ca, serving=issue_serving_cert(ca)))
    return {d["kind"]: d for d in yaml.safe_load_all(text)}


def _handshake(cert_pem: bytes, key_pem: bytes, ca_pem: bytes, hostname: str) -> None:
    """A TLS handshake in memory: the API server's side trusts only ``ca_pem``."""
    with tempfile.TemporaryDirectory() as d:
        Path(d, "tls.crt").write_bytes(cert_pem)
        write_secret(Path(d, "tls.key"), key_pem)
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(Path(d, "tls.crt"), Path(d, "tls.key"))
    client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname=hostname)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, end in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    end.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return
    raise AssertionError("handshake did not finish")


def test_ca_bundle_is_base64_of_the_lab_ca_pem(ca: LabCA, docs: dict[str, dict[str, Any]]) -> None:
    (hook,) = docs["MutatingWebhookConfiguration"]["webhooks"]
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == ca.cert_pem


def test_serving_cert_in_the_secret_verifies_against_the_ca_bundle_for_the_service_name(
    docs: dict[str, dict[str, Any]],
) -> None:
    secret = docs["Secret"]
    assert secret["type"] == "kubernetes.io/tls"
    cert_pem = base64.b64decode(secret["data"]["tls.crt"])
    key_pem = base64.b64decode(secret["data"]["tls.key"])
    (hook,) = docs["MutatingWebhookConfiguration"]["webhooks"]
    ca_pem = base64.b64decode(hook["clientConfig"]["caBundle"])
    x509.load_pem_x509_certificate(cert_pem).verify_directly_issued_by(
        x509.load_pem_x509_certificate(ca_pem)
    )
    # The name the API server dials for clientConfig.service: <svc>.<ns>.svc
    svc = hook["clientConfig"]["service"]
    assert f"{svc['name']}.{svc['namespace']}.svc" == SERVICE_HOST
    _handshake(cert_pem, key_pem, ca_pem, SERVICE_HOST)


def test_serving_cert_is_refused_for_a_name_it_does_not_cover(
    docs: dict[str, dict[str, Any]],
) -> None:
    secret = docs["Secret"]
    (hook,) = docs["MutatingWebhookConfiguration"]["webhooks"]
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(
            base64.b64decode(secret["data"]["tls.crt"]),
            base64.b64decode(secret["data"]["tls.key"]),
            base64.b64decode(hook["clientConfig"]["caBundle"]),
            "pod-identity-webhook.default.svc",
        )


def test_serving_cert_covers_every_name_upstream_lists() -> None:
    assert webhook_dns_names("ns") == (
        "pod-identity-webhook.ns.svc",
        "pod-identity-webhook",
        "pod-identity-webhook.ns",
        "pod-identity-webhook.ns.svc.cluster.local",
    )


def test_webhook_configuration_keeps_upstreams_settings(docs: dict[str, dict[str, Any]]) -> None:
    (hook,) = docs["MutatingWebhookConfiguration"]["webhooks"]
    assert hook["name"] == WEBHOOK_NAME == "iam-for-pods.amazonaws.com"
    assert hook["rules"] == [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
    ]
    assert hook["failurePolicy"] == "Ignore"
    assert hook["sideEffects"] == "None"
    assert hook["objectSelector"] == {
        "matchExpressions": [{"key": SKIP_WEBHOOK_LABEL, "operator": "DoesNotExist"}]
    }
    assert hook["clientConfig"]["service"]["path"] == "/mutate"


def test_deployment_runs_the_upstream_image_pinned_by_tag_with_the_lab_flags(
    docs: dict[str, dict[str, Any]],
) -> None:
    (container,) = docs["Deployment"]["spec"]["template"]["spec"]["containers"]
    image = container["image"]
    assert image == KIND_WEBHOOK_IMAGE
    assert image.rsplit(":", 1)[1].startswith("v") and "amazon-eks-pod-identity-webhook" in image
    flags = dict(a.split("=", 1) for a in container["command"][1:] if "=" in a)
    assert container["command"][0] == "/webhook"
    assert flags == {
        "--in-cluster": "false",
        "--namespace": KIND_WEBHOOK_NAMESPACE,
        "--service-name": "pod-identity-webhook",
        "--port": "443",
        "--tls-cert": "/etc/webhook/certs/tls.crt",
        "--tls-key": "/etc/webhook/certs/tls.key",
        "--annotation-prefix": "eks.amazonaws.com",
        "--token-audience": "sts.amazonaws.com",
        "--aws-default-region": "eu-west-1",
        "--sts-regional-endpoint": "true",
        # Pod Identity mode (tests/test_kind_pod_identity.py checks the file's delivery)
        "--watch-container-credentials-config": "/etc/irsa-lab/pod-identity/identities.json",
        "--container-credentials-full-uri": "http://169.254.170.23/v1/credentials",
    }


def test_deployment_mounts_the_tls_secret_where_the_flags_look(
    docs: dict[str, dict[str, Any]],
) -> None:
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "cert")
    volume = next(v for v in pod["volumes"] if v["name"] == "cert")
    assert volume["name"] == mount["name"]
    assert volume["secret"]["secretName"] == docs["Secret"]["metadata"]["name"]
    assert mount["mountPath"] == "/etc/webhook/certs" and mount["readOnly"] is True
    assert pod["serviceAccountName"] == docs["ServiceAccount"]["metadata"]["name"]


def test_webhook_pod_opts_out_of_its_own_mutation(docs: dict[str, dict[str, Any]]) -> None:
    labels = docs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert SKIP_WEBHOOK_LABEL in labels


def test_service_sends_port_443_to_the_deployments_pods(docs: dict[str, dict[str, Any]]) -> None:
    service, deployment = docs["Service"], docs["Deployment"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": 443}]


def test_webhook_may_only_read_service_accounts(docs: dict[str, dict[str, Any]]) -> None:
    assert docs["ClusterRole"]["rules"] == [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "watch", "list"]}
    ]
    binding = docs["ClusterRoleBinding"]
    assert binding["roleRef"]["name"] == docs["ClusterRole"]["metadata"]["name"]
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": "pod-identity-webhook",
            "namespace": KIND_WEBHOOK_NAMESPACE,
        }
    ]


def test_everything_namespaced_lives_in_the_webhook_namespace(
    docs: dict[str, dict[str, Any]],
) -> None:
    assert docs["Namespace"]["metadata"]["name"] == KIND_WEBHOOK_NAMESPACE
    for kind in ("ServiceAccount", "Secret", "Deployment", "Service"):
        assert docs[kind]["metadata"]["namespace"] == KIND_WEBHOOK_NAMESPACE


def test_anonymous_discovery_binds_the_builtin_role_to_unauthenticated() -> None:
    (binding,) = discovery_rbac()
    assert binding["kind"] == "ClusterRoleBinding"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "system:service-account-issuer-discovery",
    }
    assert binding["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:unauthenticated"}
    ]


def test_default_scenario_service_account_carries_the_role() -> None:
    (sa,) = scenario_manifests()
    assert sa["metadata"] == {
        "name": "s3-readonly-sa",
        "namespace": "default",
        "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN},
    }


def _mutated(pod: dict[str, Any]) -> dict[str, Any]:
    out = yaml.safe_load(yaml.safe_dump(pod))
    out["spec"]["containers"][0]["env"] = [
        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
        {"name": ENV_ROLE_ARN, "value": ROLE_ARN},
        {"name": ENV_WEB_IDENTITY_TOKEN_FILE, "value": TOKEN_FILE},
    ]
    out["spec"]["volumes"] = [{"name": TOKEN_VOLUME_NAME, "projected": {"sources": []}}]
    return dict(out)


def test_probe_counts_as_mutated_only_with_role_token_file_and_volume() -> None:
    pod = probe_pod()
    assert pod["spec"]["serviceAccountName"] == "s3-readonly-sa"
    assert why_not_mutated(_mutated(pod)) is None
    assert "AWS_ROLE_ARN" in (why_not_mutated(pod) or "")
    no_volume = _mutated(pod)
    no_volume["spec"]["volumes"] = []
    assert TOKEN_VOLUME_NAME in (why_not_mutated(no_volume) or "")
    other_role = _mutated(pod)
    other_role["spec"]["containers"][0]["env"][1]["value"] = "arn:aws:iam::1:role/x"
    assert why_not_mutated(other_role) is not None


# That the real API server accepts every manifest (server-side dry run, schema,
# admission) is checked against the k8s backend: tests/test_k8s_backend.py.
