"""The webhook suite's inputs: what a case is, and upstream's fixtures read as cases.

Why: upstream's own test pods (``pkg/handler/testdata``) carry their ServiceAccount,
flags and container-credentials config in ``testing.eks.amazonaws.com/`` annotations;
:func:`fixture_cases` turns each into a :class:`WebhookCase` the suite can send to
both programs. The generated cases are in :mod:`.webhook_generator`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from .. import constants as C
from ..constants import VOLUME_MOUNT_FIELDS
from ..webhook.annotations import parse_go_bool, parse_go_int64
from ..webhook.settings import ContainerCredentialsSettings, WebhookSettings
from .webhook_flags import FlagSet

__all__ = [
    "NAMESPACE",
    "WebhookCase",
    "fixture_cases",
    "review_body",
    "shared_fixtures_dir",
]

NAMESPACE = "webhook-fidelity"
_TESTING = "testing.eks.amazonaws.com/"


@dataclass
class WebhookCase:
    """One input: a pod in :data:`NAMESPACE`, its ServiceAccount and the flags to run with.

    ``sa_name`` is unique in the suite (the pod names it, unless the case is about a
    pod without one); ``sa_annotations`` of ``None``: no ServiceAccount object is
    created. ``cc_listed``: ``(NAMESPACE, sa_name)`` goes into the container-credentials
    config (meaningful when the flags enable that mode).
    """

    name: str
    flags: FlagSet
    pod: dict[str, Any]
    sa_name: str
    sa_annotations: dict[str, str] | None
    cc_listed: bool = False


def shared_fixtures_dir() -> Path:
    """``$IRSA_LAB_SHARED_DIR/webhook-fixtures``, else ``../shared/webhook-fixtures`` beside the repo."""
    override = os.environ.get("IRSA_LAB_SHARED_DIR")
    base = Path(override) if override else Path(__file__).resolve().parents[3] / "shared"
    return base / "webhook-fixtures"


def _as_decoded(pod: dict[str, Any]) -> dict[str, Any]:
    # The API server decodes a pod into its Go types before admission, so a webhook
    # never sees unknown fields; one fixture (rawPodHasVolumeMount) carries a bogus
    # volumeMount key that upstream's harness feeds in directly. Drop such keys.
    for key in ("initContainers", "containers"):
        for ctr in (pod.get("spec") or {}).get(key) or []:
            for mount in ctr.get("volumeMounts") or []:
                for k in [k for k in mount if k not in VOLUME_MOUNT_FIELDS]:
                    del mount[k]
    return pod


def _fixture_case(path: Path, root: Path, sa_name: str) -> WebhookCase:
    # Upstream's harness (docs/reference/webhook.md §7.1): testing annotations become the
    # ServiceAccount, the flags and the container-credentials config.
    pod = _as_decoded(yaml.safe_load(path.read_text()))
    pod["metadata"]["namespace"] = NAMESPACE
    pod["spec"]["serviceAccountName"] = sa_name
    ann: dict[str, str] = (pod.get("metadata") or {}).get("annotations") or {}
    sa: dict[str, str] = {}
    if _TESTING + "serviceAccount/roleArn" in ann:
        sa[C.ROLE_ARN_ANNOTATION] = ann[_TESTING + "serviceAccount/roleArn"]
    sa[C.AUDIENCE_ANNOTATION] = ann.get(_TESTING + "serviceAccount/audience", C.DEFAULT_AUDIENCE)
    sts_raw = ann.get(
        _TESTING + "serviceAccount/sts-regional-endpoints", ann.get(_TESTING + "handler/injectSTS")
    )
    sts = parse_go_bool(sts_raw) if sts_raw is not None else None
    sa[C.STS_REGIONAL_ANNOTATION] = "true" if sts else "false"
    exp_raw = ann.get(
        _TESTING + "serviceAccount/token-expiration", ann.get(_TESTING + "handler/expiration")
    )
    exp = parse_go_int64(exp_raw) if exp_raw is not None else None
    sa[C.TOKEN_EXPIRATION_ANNOTATION] = str(
        exp if exp is not None else C.DEFAULT_TOKEN_EXPIRATION_S
    )
    settings = WebhookSettings(
        aws_default_region=ann.get(_TESTING + "handler/region", ""),
        token_mount_path=ann.get(_TESTING + "handler/mountPath") or C.TOKEN_MOUNT_PATH,
    )
    cc_uri = ann.get(_TESTING + "containercredentials/uri", "")
    if cc_uri:
        settings = replace(
            settings,
            container_credentials=ContainerCredentialsSettings(
                audience=ann.get(_TESTING + "containercredentials/audience", ""),
                mount_path=ann.get(_TESTING + "containercredentials/mountPath", ""),
                volume_name=ann.get(_TESTING + "containercredentials/volumeName", ""),
                token_path=ann.get(_TESTING + "containercredentials/tokenPath", ""),
                full_uri=cc_uri,
            ),
        )
    name = "fixture " + str(path.relative_to(root)).removesuffix(".pod.yaml")
    return WebhookCase(name, FlagSet("fixture", settings), pod, sa_name, sa, bool(cc_uri))


def fixture_cases(folder: Path) -> list[WebhookCase]:
    """The upstream fixtures of ``folder`` and its ``containercredentials/`` subfolder.

    Each keeps upstream's harness meaning, in :data:`NAMESPACE` with its own ServiceAccount.
    """
    files = sorted(folder.glob("*.pod.yaml")) + sorted(
        (folder / "containercredentials").glob("*.pod.yaml")
    )
    return [_fixture_case(p, folder, f"fixture-{i:02d}") for i, p in enumerate(files)]


def review_body(uid: str, namespace: str, pod: Any) -> bytes:
    """The AdmissionReview (``admission.k8s.io/v1``) a real API server sends for a pod CREATE."""
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    name = pod.get("metadata", {}).get("name", "") if isinstance(pod, dict) else ""
    doc = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "name": name if isinstance(name, str) else "",
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }
    return json.dumps(doc, ensure_ascii=False).encode()
