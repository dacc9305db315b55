"""The kind backend: a real kind cluster as an EKS-shaped OIDC issuer, with the real
amazon-eks-pod-identity-webhook in it and the lab's AWS stand-ins trusting it.

Everything the cluster needs is rendered by pure functions (``config``, ``keys``,
``manifests``, ``network``) and checked without Docker; ``cluster`` is the thin edge
that calls docker, kind and kubectl; ``exec`` runs commands in a pod's real container
(``kubectl exec``); ``pod_identity`` feeds the webhook's Pod Identity mode and routes pods
to the agent; ``checks`` holds the doctor checks. See docs/kind.md.
"""

from __future__ import annotations

from .cluster import KindError, KindLab, kind_down, kind_up
from .config import kind_config, kind_config_text, validate_kind_config
from .exec import exec_in_kind_pod, read_pod_file
from .keys import KindKeys, ensure_keys, jwks, write_keys
from .manifests import discovery_rbac, webhook_manifests
from .network import PodNetwork, ca_configmap, pod_network, with_lab_ca

__all__ = [
    "KindError",
    "KindKeys",
    "KindLab",
    "PodNetwork",
    "ca_configmap",
    "discovery_rbac",
    "ensure_keys",
    "exec_in_kind_pod",
    "jwks",
    "kind_config",
    "kind_config_text",
    "kind_down",
    "kind_up",
    "pod_network",
    "read_pod_file",
    "validate_kind_config",
    "webhook_manifests",
    "with_lab_ca",
    "write_keys",
]
