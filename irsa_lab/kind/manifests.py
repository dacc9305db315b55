"""The Kubernetes objects the kind backend applies, as plain dicts.

- the upstream pod identity webhook (aws/amazon-eks-pod-identity-webhook), deployed as
  its ``deploy/`` folder does but **without cert-manager**: the lab CA signs the serving
  certificate, which goes into a TLS Secret, and the CA goes into the
  MutatingWebhookConfiguration's ``caBundle`` (docs/reference/kubernetes.md §5.3); in
  Pod Identity mode too, watching the node's identities file through a ``hostPath``
  directory (:mod:`irsa_lab.kind.pod_identity`);
- the binding that lets anonymous clients (the STS stand-in, as AWS STS is) read the
  issuer discovery document and JWKS (docs/reference/kubernetes.md §2.3);
- the default scenario's ServiceAccount, and the probe pod whose server-side dry run
  proves the webhook really mutates.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import Any

import yaml

from ..constants import (
    ADMISSION_REVIEW_VERSIONS,
    ANNOTATION_PREFIX,
    DEFAULT_AUDIENCE,
    ENV_ROLE_ARN,
    ENV_WEB_IDENTITY_TOKEN_FILE,
    KIND_DISCOVERY_BINDING,
    KIND_DISCOVERY_CLUSTER_ROLE,
    KIND_PROBE_POD,
    KIND_WEBHOOK_CERT_DIR,
    KIND_WEBHOOK_IMAGE,
    KIND_WEBHOOK_NAMESPACE,
    KIND_WEBHOOK_SERVICE,
    KIND_WEBHOOK_TLS_SECRET,
    NAMESPACE,
    POD_IMAGE,
    REGION,
    ROLE_ARN,
    ROLE_ARN_ANNOTATION,
    SERVICE_ACCOUNT,
    SKIP_WEBHOOK_LABEL,
    TOKEN_VOLUME_NAME,
    WEBHOOK_CONFIG_NAME,
    WEBHOOK_HEALTHZ_PATH,
    WEBHOOK_MUTATE_PATH,
    WEBHOOK_NAME,
)
from ..pki import LabCA, ServerCert
from .pod_identity import NODE_CONFIG_FILE, NODE_CONFIG_VOLUME, POD_AGENT_URL

__all__ = [
    "Manifest",
    "WEBHOOK_PORT",
    "discovery_rbac",
    "issue_serving_cert",
    "mutating_webhook_configuration",
    "probe_pod",
    "scenario_manifests",
    "to_yaml",
    "webhook_args",
    "webhook_dns_names",
    "webhook_manifests",
    "why_not_mutated",
]

Manifest = dict[str, Any]
_APP = {"app": KIND_WEBHOOK_SERVICE}
WEBHOOK_PORT = 443


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def webhook_dns_names(
    namespace: str = KIND_WEBHOOK_NAMESPACE, service: str = KIND_WEBHOOK_SERVICE
) -> tuple[str, ...]:
    """The names the serving certificate covers; the API server dials the first."""
    return (
        f"{service}.{namespace}.svc",
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc.cluster.local",
    )


def issue_serving_cert(ca: LabCA, namespace: str = KIND_WEBHOOK_NAMESPACE) -> ServerCert:
    """A serving certificate for the webhook Service, signed by the lab CA."""
    return ca.issue(webhook_dns_names(namespace))


def webhook_args(
    *,
    namespace: str = KIND_WEBHOOK_NAMESPACE,
    region: str = REGION,
    container_credentials: tuple[str, str] | None = None,
) -> list[str]:
    """The webhook binary's command line (flag names and meanings: docs/reference/webhook.md §4).

    ``container_credentials`` is (config file, agent URL): the Pod Identity mode's
    ``--watch-container-credentials-config`` and ``--container-credentials-full-uri``
    (docs/reference/pod-identity.md §5.1); without it the mode is off.
    """
    pod_identity = (
        [
            f"--watch-container-credentials-config={container_credentials[0]}",
            f"--container-credentials-full-uri={container_credentials[1]}",
        ]
        if container_credentials is not None
        else []
    )
    return [
        "/webhook",
        # --in-cluster=true obtains a cert through a CSR and is broken on certificates/v1
        # clusters; upstream's README says to serve a cert from a Secret instead.
        "--in-cluster=false",
        f"--namespace={namespace}",
        f"--service-name={KIND_WEBHOOK_SERVICE}",
        f"--port={WEBHOOK_PORT}",
        f"--tls-cert={KIND_WEBHOOK_CERT_DIR}/tls.crt",
        f"--tls-key={KIND_WEBHOOK_CERT_DIR}/tls.key",
        f"--annotation-prefix={ANNOTATION_PREFIX}",
        f"--token-audience={DEFAULT_AUDIENCE}",
        # EKS runs the webhook with a region, so pods get AWS_REGION/AWS_DEFAULT_REGION,
        # and with regional STS endpoints, so AWS_STS_REGIONAL_ENDPOINTS=regional.
        f"--aws-default-region={region}",
        "--sts-regional-endpoint=true",
        *pod_identity,
        "--logtostderr",
    ]


def webhook_manifests(
    *,
    ca: LabCA,
    serving: ServerCert,
    namespace: str = KIND_WEBHOOK_NAMESPACE,
    image: str = KIND_WEBHOOK_IMAGE,
    region: str = REGION,
    config_file: str = NODE_CONFIG_FILE,
    agent_url: str = POD_AGENT_URL,
) -> list[Manifest]:
    """Namespace, RBAC, TLS Secret, Deployment, Service and MutatingWebhookConfiguration.

    The webhook runs in Pod Identity mode: it watches ``config_file``, whose directory is
    the node's own (``hostPath``), mounted at the same path, so that the lab's rename in
    the node is the event fsnotify reports (a ConfigMap's ``..data`` swap would not be,
    docs/reference/pod-identity.md §5.3), and injects ``agent_url``.
    """
    config_dir = config_file.rpartition("/")[0]
    meta = {"name": KIND_WEBHOOK_SERVICE, "namespace": namespace}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": KIND_WEBHOOK_SERVICE},
            # The webhook reads role-arn and friends from ServiceAccounts through an
            # informer. No CSR rights: with --in-cluster=false it never makes a CSR.
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["serviceaccounts"],
                    "verbs": ["get", "watch", "list"],
                }
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": KIND_WEBHOOK_SERVICE},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": KIND_WEBHOOK_SERVICE,
            },
            "subjects": [{"kind": "ServiceAccount", **meta}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": KIND_WEBHOOK_TLS_SECRET, "namespace": namespace},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": _b64(serving.cert_pem), "tls.key": _b64(serving.key_pem)},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**meta, "labels": dict(_APP)},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": dict(_APP)},
                "template": {
                    # The webhook must never be asked to mutate its own pod.
                    "metadata": {"labels": {**_APP, SKIP_WEBHOOK_LABEL: "true"}},
                    "spec": {
                        "serviceAccountName": KIND_WEBHOOK_SERVICE,
                        "containers": [
                            {
                                "name": KIND_WEBHOOK_SERVICE,
                                "image": image,
                                "imagePullPolicy": "IfNotPresent",
                                "command": webhook_args(
                                    namespace=namespace,
                                    region=region,
                                    container_credentials=(config_file, agent_url),
                                ),
                                "ports": [{"name": "https", "containerPort": WEBHOOK_PORT}],
                                "readinessProbe": {
                                    "httpGet": {
                                        "path": WEBHOOK_HEALTHZ_PATH,
                                        "port": WEBHOOK_PORT,
                                        "scheme": "HTTPS",
                                    },
                                    "periodSeconds": 2,
                                },
                                "volumeMounts": [
                                    {
                                        "name": "cert",
                                        "mountPath": KIND_WEBHOOK_CERT_DIR,
                                        "readOnly": True,
                                    },
                                    {
                                        "name": NODE_CONFIG_VOLUME,
                                        "mountPath": config_dir,
                                        "readOnly": True,
                                    },
                                ],
                                "resources": {
                                    "requests": {"cpu": "10m", "memory": "32Mi"},
                                    "limits": {"memory": "128Mi"},
                                },
                            }
                        ],
                        "volumes": [
                            {"name": "cert", "secret": {"secretName": KIND_WEBHOOK_TLS_SECRET}},
                            {
                                "name": NODE_CONFIG_VOLUME,
                                "hostPath": {"path": config_dir, "type": "DirectoryOrCreate"},
                            },
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {**meta, "labels": dict(_APP)},
            "spec": {
                "selector": dict(_APP),
                "ports": [{"name": "https", "port": WEBHOOK_PORT, "targetPort": WEBHOOK_PORT}],
            },
        },
        mutating_webhook_configuration(ca_pem=ca.cert_pem, namespace=namespace),
    ]


def mutating_webhook_configuration(
    *, ca_pem: bytes, namespace: str = KIND_WEBHOOK_NAMESPACE, url: str | None = None
) -> Manifest:
    """Upstream's ``deploy/mutatingwebhook.yaml``, with the lab CA in ``caBundle``.

    The webhook keeps EKS's name (``iam-for-pods.amazonaws.com``, as in the article);
    everything else is upstream's, including ``failurePolicy: Ignore``: a webhook that
    is down admits pods unmutated, which is why ``kind up`` waits for a mutated probe.

    ``url`` replaces ``clientConfig.service`` (the ``k8s`` backend: no kube-proxy routes
    a Service there, so the API server calls the webhook on loopback directly).
    """
    client_config: dict[str, Any] = (
        {"url": url}
        if url is not None
        else {
            "service": {
                "name": KIND_WEBHOOK_SERVICE,
                "namespace": namespace,
                "path": WEBHOOK_MUTATE_PATH,
                "port": WEBHOOK_PORT,
            }
        }
    )
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": WEBHOOK_CONFIG_NAME},
        "webhooks": [
            {
                "name": WEBHOOK_NAME,
                "clientConfig": {**client_config, "caBundle": _b64(ca_pem)},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
                "failurePolicy": "Ignore",
                "objectSelector": {
                    "matchExpressions": [{"key": SKIP_WEBHOOK_LABEL, "operator": "DoesNotExist"}]
                },
                "sideEffects": "None",
                "admissionReviewVersions": list(ADMISSION_REVIEW_VERSIONS),
            }
        ],
    }


def discovery_rbac() -> list[Manifest]:
    """Let anonymous clients read ``/.well-known/openid-configuration`` and the JWKS.

    The built-in binding grants discovery to ``system:serviceaccounts`` only; AWS STS
    (and the lab's STS on the host) fetch it without credentials.
    """
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": KIND_DISCOVERY_BINDING},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": KIND_DISCOVERY_CLUSTER_ROLE,
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": "system:unauthenticated",
                }
            ],
        }
    ]


def scenario_manifests(role_arn: str = ROLE_ARN) -> list[Manifest]:
    """The default scenario's cluster side: ``default/s3-readonly-sa`` carrying the role."""
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": SERVICE_ACCOUNT,
                "namespace": NAMESPACE,
                "annotations": {ROLE_ARN_ANNOTATION: role_arn},
            },
        }
    ]


def probe_pod(name: str = KIND_PROBE_POD, image: str = POD_IMAGE) -> Manifest:
    """A pod of the annotated ServiceAccount, created only as a server-side dry run."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "containers": [{"name": "probe", "image": image, "command": ["sleep", "3600"]}],
        },
    }


def why_not_mutated(pod: Manifest, role_arn: str = ROLE_ARN) -> str | None:
    """None if the webhook mutated ``pod`` for ``role_arn``, else what is missing."""
    spec = pod.get("spec") or {}
    containers = spec.get("containers") or []
    if not containers:
        return "the pod has no containers"
    env = {e.get("name"): e.get("value") for e in containers[0].get("env") or []}
    if env.get(ENV_ROLE_ARN) != role_arn:
        return f"{ENV_ROLE_ARN} is {env.get(ENV_ROLE_ARN)!r}, not {role_arn!r}"
    if ENV_WEB_IDENTITY_TOKEN_FILE not in env:
        return f"{ENV_WEB_IDENTITY_TOKEN_FILE} is not set"
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    if TOKEN_VOLUME_NAME not in volumes:
        return f"the {TOKEN_VOLUME_NAME} volume is missing"
    return None


def to_yaml(manifests: Iterable[Manifest]) -> str:
    """A multi-document YAML stream for ``kubectl apply -f -``."""
    return yaml.safe_dump_all(list(manifests), sort_keys=False)
