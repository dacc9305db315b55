"""The ``pod-identity-webhook`` MutatingWebhookConfiguration, as the article shows it.

Upstream's ``deploy/mutatingwebhook.yaml`` (docs/reference/webhook.md §5) fixes most fields:
CREATE on ``pods``, ``failurePolicy: Ignore`` (a webhook that is down lets pods through
unmutated), an ``objectSelector`` that skips pods labelled
``eks.amazonaws.com/skip-pod-identity-webhook`` with any value, ``sideEffects: None``
and ``admissionReviewVersions: ["v1beta1"]``. The article's EKS cluster names the
webhook ``iam-for-pods.amazonaws.com``, calls it by URL, and adds
``reinvocationPolicy: IfNeeded`` and ``timeoutSeconds: 10``.
"""

from __future__ import annotations

import base64
from typing import Any

from .. import constants as C

__all__ = [
    "pod_identity_webhook_configuration",
]


def pod_identity_webhook_configuration(
    *,
    ca_bundle_pem: bytes,
    url: str | None = None,
    service: tuple[str, str] | None = None,
    failure_policy: str = "Ignore",
    reinvocation_policy: str | None = "IfNeeded",
    timeout_seconds: int | None = 10,
    admission_review_versions: tuple[str, ...] = C.ADMISSION_REVIEW_VERSIONS,
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration object (``admissionregistration.k8s.io/v1``).

    ``ca_bundle_pem`` is the PEM of the CA that signed the webhook's certificate (it
    goes in base64, as the API requires). Give ``url`` (the webhook's base URL; the
    path ``/mutate`` is appended) or ``service`` (``(name, namespace)``); with neither,
    the Service of upstream's manifest, ``pod-identity-webhook`` in ``default``. ``reinvocation_policy`` / ``timeout_seconds`` of ``None`` leave the
    Kubernetes defaults (``Never`` / 10) to the API server, as upstream's manifest does.
    """
    if url is not None and service is not None:
        raise ValueError("give url or service, not both")
    if url is None and service is None:
        service = (C.WEBHOOK_CONFIG_NAME, C.NAMESPACE)
    client: dict[str, Any]
    if url is not None:
        client = {"url": url.rstrip("/") + C.WEBHOOK_MUTATE_PATH}
    else:
        assert service is not None
        client = {
            "service": {
                "name": service[0],
                "namespace": service[1],
                "path": C.WEBHOOK_MUTATE_PATH,
            }
        }
    client["caBundle"] = base64.b64encode(ca_bundle_pem).decode()
    webhook: dict[str, Any] = {
        "name": C.WEBHOOK_NAME,
        "admissionReviewVersions": list(admission_review_versions),
        "clientConfig": client,
        "failurePolicy": failure_policy,
        "objectSelector": {
            "matchExpressions": [{"key": C.SKIP_WEBHOOK_LABEL, "operator": "DoesNotExist"}]
        },
        "rules": [
            {
                "operations": ["CREATE"],
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "resources": ["pods"],
            }
        ],
        "sideEffects": "None",
    }
    if reinvocation_policy is not None:
        webhook["reinvocationPolicy"] = reinvocation_policy
    if timeout_seconds is not None:
        webhook["timeoutSeconds"] = timeout_seconds
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": C.WEBHOOK_CONFIG_NAME},
        "webhooks": [webhook],
    }
