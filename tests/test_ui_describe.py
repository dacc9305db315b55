"""kubectl describe layouts, compared with golden strings."""

from __future__ import annotations

from irsa_lab.constants import ROLE_ARN, TOKEN_FILE, TOKEN_MOUNT_PATH
from irsa_lab.ui.describe import (
    describe_mutating_webhook_configuration,
    describe_pod_env,
    describe_service_account,
    smart_label,
)

SA = {
    "apiVersion": "v1",
    "kind": "ServiceAccount",
    "metadata": {
        "name": "s3-readonly-sa",
        "namespace": "default",
        "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN},
    },
}


def test_service_account_describes_as_in_the_article() -> None:
    assert describe_service_account(SA) == (
        "Name:                s3-readonly-sa\n"
        "Namespace:           default\n"
        "Labels:              <none>\n"
        f"Annotations:         eks.amazonaws.com/role-arn: {ROLE_ARN}\n"
        "Image pull secrets:  <none>\n"
        "Mountable secrets:   <none>\n"
        "Tokens:              <none>\n"
        "Events:              <none>"
    )


def test_service_account_lists_labels_annotations_and_secrets_one_per_line() -> None:
    sa = {
        "metadata": {
            "name": "sa",
            "namespace": "ns",
            "labels": {"b": "2", "a": "1"},
            "annotations": {"z": "last", "kubectl.kubernetes.io/last-applied-configuration": "{}"},
        },
        "secrets": [{"name": "s1"}, {"name": "s2"}],
    }
    assert describe_service_account(sa).splitlines() == [
        "Name:                sa",
        "Namespace:           ns",
        "Labels:              a=1",
        "                     b=2",
        "Annotations:         z: last",
        "Image pull secrets:  <none>",
        "Mountable secrets:   s1",
        "                     s2",
        "Tokens:              <none>",
        "Events:              <none>",
    ]


def test_smart_labels_follow_kubectl() -> None:
    assert smart_label("apiVersion") == "API Version"
    assert smart_label("caBundle") == "Ca Bundle"
    assert smart_label("url") == "URL"
    assert smart_label("admissionReviewVersions") == "Admission Review Versions"
    assert smart_label("eks.amazonaws.com/skip") == "eks.amazonaws.com/skip"


def test_mutating_webhook_configuration_uses_the_generic_nested_layout() -> None:
    cfg = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": "pod-identity-webhook",
            "uid": "u-1",
            "resourceVersion": "7",
            "managedFields": [{"manager": "x"}],
        },
        "webhooks": [
            {
                "name": "iam-for-pods.amazonaws.com",
                "admissionReviewVersions": ["v1beta1"],
                "clientConfig": {
                    "url": "https://127.0.0.1:23443/mutate",
                    "caBundle": "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t",
                },
                "failurePolicy": "Ignore",
                "matchPolicy": "Equivalent",
                "namespaceSelector": {},
                "reinvocationPolicy": "IfNeeded",
                "rules": [
                    {
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "operations": ["CREATE"],
                        "resources": ["pods"],
                        "scope": "*",
                    }
                ],
                "sideEffects": "None",
                "timeoutSeconds": 10,
            }
        ],
    }
    assert describe_mutating_webhook_configuration(cfg, short_ca_bundle=True) == (
        "Name:         pod-identity-webhook\n"
        "Namespace:    \n"
        "Labels:       <none>\n"
        "Annotations:  <none>\n"
        "API Version:  admissionregistration.k8s.io/v1\n"
        "Kind:         MutatingWebhookConfiguration\n"
        "Metadata:\n"
        "  Resource Version:  7\n"
        "  UID:               u-1\n"
        "Webhooks:\n"
        "  Admission Review Versions:\n"
        "    v1beta1\n"
        "  Client Config:\n"
        "    Ca Bundle:     LS0tLS1CRUdJTiBD...\n"
        "    URL:           https://127.0.0.1:23443/mutate\n"
        "  Failure Policy:  Ignore\n"
        "  Match Policy:    Equivalent\n"
        "  Name:            iam-for-pods.amazonaws.com\n"
        "  Namespace Selector:\n"
        "  Reinvocation Policy:  IfNeeded\n"
        "  Rules:\n"
        "    API Groups:\n"
        "      \n"
        "    API Versions:\n"
        "      v1\n"
        "    Operations:\n"
        "      CREATE\n"
        "    Resources:\n"
        "      pods\n"
        "    Scope:          *\n"
        "  Side Effects:     None\n"
        "  Timeout Seconds:  10\n"
        "Events:             <none>"
    )


def test_pod_env_shows_environment_mounts_and_the_projected_volume() -> None:
    pod = {
        "metadata": {"name": "mypod", "namespace": "default"},
        "spec": {
            "serviceAccountName": "s3-readonly-sa",
            "containers": [
                {
                    "name": "app",
                    "env": [
                        {"name": "AWS_ROLE_ARN", "value": ROLE_ARN},
                        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE},
                        {
                            "name": "POD",
                            "valueFrom": {
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}
                            },
                        },
                    ],
                    "volumeMounts": [
                        {
                            "name": "kube-api-access-x2k9z",
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                            "readOnly": True,
                        },
                        {"name": "aws-iam-token", "mountPath": TOKEN_MOUNT_PATH, "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "aws-iam-token",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": "sts.amazonaws.com",
                                    "expirationSeconds": 86400,
                                    "path": "token",
                                }
                            }
                        ]
                    },
                }
            ],
        },
    }
    assert describe_pod_env(pod) == (
        "Name:             mypod\n"
        "Namespace:        default\n"
        "Service Account:  s3-readonly-sa\n"
        "Containers:\n"
        "  app:\n"
        "    Environment:\n"
        f"      AWS_ROLE_ARN:                 {ROLE_ARN}\n"
        f"      AWS_WEB_IDENTITY_TOKEN_FILE:  {TOKEN_FILE}\n"
        "      POD:                           (v1:metadata.name)\n"
        "    Mounts:\n"
        f"      {TOKEN_MOUNT_PATH} from aws-iam-token (ro)\n"
        "      /var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-x2k9z (ro)\n"
        "Volumes:\n"
        "  aws-iam-token:\n"
        "    Type:                    Projected (a volume that contains injected data from multiple sources)\n"
        "    TokenExpirationSeconds:  86400"
    )
