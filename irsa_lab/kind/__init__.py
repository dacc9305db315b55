"""The kind backend: a real kind cluster as an EKS-shaped OIDC issuer, with the real
amazon-eks-pod-identity-webhook in it and the lab's AWS stand-ins trusting it.

Everything the cluster needs is rendered by pure functions (``config``, ``keys``,
``manifests``) and checked without Docker; ``cluster`` is the thin edge that calls
kind and kubectl; ``checks`` holds the doctor checks. See docs/kind.md.
"""

from __future__ import annotations

from .cluster import KindError, KindLab, kind_down, kind_up
from .config import kind_config, kind_config_text, validate_kind_config
from .keys import KindKeys, ensure_keys, jwks, write_keys
from .manifests import discovery_rbac, webhook_manifests

__all__ = [
    "KindError",
    "KindKeys",
    "KindLab",
    "discovery_rbac",
    "ensure_keys",
    "jwks",
    "kind_config",
    "kind_config_text",
    "kind_down",
    "kind_up",
    "validate_kind_config",
    "webhook_manifests",
    "write_keys",
]
