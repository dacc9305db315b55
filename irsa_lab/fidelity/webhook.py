"""The webhook suite: the Python port against the real upstream pod identity webhook.

Why: the lab's webhook (``irsa_lab.webhook``) claims to be a faithful port of
aws/amazon-eks-pod-identity-webhook, and the learner trusts every env var and volume
it shows. The fixtures of ``tests/test_webhook_conformance.py`` check it against
upstream's *expected* patches; this suite checks it against the *running* program,
built from the pinned source, over many more inputs than upstream ever wrote down.

How :func:`run` works:

1. an :class:`~irsa_lab.stack.EmbeddedLab` in a temporary folder is the Kubernetes
   API; the upstream binary lists and watches ServiceAccounts from it through the
   lab's kubeconfig, with a serving certificate from the lab CA;
2. one upstream process per distinct flag set (:data:`FLAG_SETS`, plus the flags
   the upstream fixtures imply); container-credentials mode reads a
   ``--watch-container-credentials-config`` file listing the cases' identities;
3. every case's ServiceAccount is created first (unique names), then a sentinel
   ServiceAccount; once each process mutates a pod of the sentinel, its informer
   has seen every earlier ServiceAccount (a watch delivers in resourceVersion order);
4. each case's AdmissionReview goes to its process over HTTPS and to
   :func:`irsa_lab.webhook.server.review` in-process, with the same settings;
5. the answers are compared by meaning (:func:`compare_answers`): ``allowed``, the
   denial message, the uid, the patch's operations, and the pods the two patches
   produce, after removing what Go's re-serialisation of containers adds or drops.
   A Pod Identity expiration of exactly 86400 s is jittered by upstream from its
   clock-seeded random source: it is checked against [79200, 86400] instead.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import os
import random
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import yaml

from .. import constants as C
from ..backends import binaries
from ..constants import VOLUME_MOUNT_FIELDS
from ..httpd import free_port
from ..pki import LabCA, write_secret
from ..webhook.annotations import parse_go_bool, parse_go_int64
from ..webhook.cache import ServiceAccountCache
from ..webhook.server import review
from ..webhook.settings import ContainerCredentialsSettings, WebhookSettings
from .report import Difference, SuiteResult

__all__ = [
    "FLAG_SETS",
    "NAMESPACE",
    "PROGRAM",
    "FlagSet",
    "WebhookCase",
    "compare_answers",
    "fixture_cases",
    "generate_cases",
    "normalise_pod",
    "review_body",
    "run",
    "shared_fixtures_dir",
    "upstream_flags",
]

PROGRAM = "amazon-eks-pod-identity-webhook"
NAMESPACE = "webhook-fidelity"
SENTINEL_SA = "zz-sentinel"  # created after every case's ServiceAccount
SENTINEL_CC_SA = "zz-sentinel-cc"  # listed in every container-credentials config, never created
STARTUP_TIMEOUT_S = 60.0
CONCURRENCY = 24
_TESTING = "testing.eks.amazonaws.com/"
_ENVELOPE_ACCEPTED = (
    "upstream v0.6.17 answers without apiVersion/kind; the port echoes the request's, as "
    "upstream master does since #310, because a vanilla API server rejects an "
    "admission.k8s.io/v1 answer without them (docs/reference/webhook.md §6.1)"
)


# --- flag sets -------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagSet:
    """One configuration of the upstream binary and the equivalent port settings.

    ``raw`` overrides the text of a flag, for values the settings normalise (a
    ``--token-expiration`` below 600 is clamped up by both programs at start-up).
    ``container_credentials`` without identities: the suite lists them per case.
    """

    name: str
    settings: WebhookSettings
    raw: Mapping[str, str] = field(default_factory=dict)


FLAG_SETS: tuple[FlagSet, ...] = (
    FlagSet("defaults", WebhookSettings()),
    FlagSet(
        "region+regional-sts",
        WebhookSettings(aws_default_region=C.REGION, sts_regional_endpoint=True),
    ),
    FlagSet(
        "audience+mount-path",
        # An untidy mount path: the mount keeps it as given, the token file is cleaned.
        WebhookSettings(
            token_audience="irsa-lab.example",  # noqa: S106 - an audience, not a secret
            token_mount_path="/var/run/../run//irsa-lab/token-dir/",  # noqa: S106 - a path
        ),
    ),
    FlagSet(
        "token-expiration",
        WebhookSettings(token_expiration=100),  # both clamp the flag up to 600
        raw={"--token-expiration": "100"},
    ),
    FlagSet(
        "container-credentials",
        WebhookSettings(
            aws_default_region="us-east-1",
            container_credentials=ContainerCredentialsSettings(),
        ),
    ),
    FlagSet(
        "container-credentials custom+prefix",
        WebhookSettings(
            annotation_prefix="irsa-lab.example.com",
            sts_regional_endpoint=True,
            token_expiration=7200,  # the default of a cached ServiceAccount, not of an unknown one
            container_credentials=ContainerCredentialsSettings(
                audience="pods.irsa-lab.example",
                mount_path="/var/run/pod-identity",
                volume_name="pod-identity-token",
                token_path="sub/token",  # noqa: S106 - a file name
                full_uri="http://127.0.0.1:2703/v1/credentials",
            ),
        ),
    ),
)


_GroupKey = tuple[WebhookSettings, frozenset[tuple[str, str]]]


def _group_key(flags: FlagSet) -> _GroupKey:
    # Cases share a process when their flags are the same; the identities are the
    # suite's, gathered from the cases of the group.
    settings = flags.settings
    cc = settings.container_credentials
    if cc is not None and cc.identities:
        settings = replace(settings, container_credentials=replace(cc, identities=frozenset()))
    return settings, frozenset(flags.raw.items())


def upstream_flags(
    settings: WebhookSettings, *, cc_config: Path | None, raw: Mapping[str, str] | None = None
) -> list[str]:
    """The upstream command-line flags that stand for ``settings`` (no TLS/port flags)."""
    flags = {
        "--annotation-prefix": settings.annotation_prefix,
        "--token-audience": settings.token_audience,
        "--token-mount-path": settings.token_mount_path,
        "--token-expiration": str(settings.token_expiration),
        "--aws-default-region": settings.aws_default_region,
        "--sts-regional-endpoint": "true" if settings.sts_regional_endpoint else "false",
    }
    cc = settings.container_credentials
    if cc is not None:
        if cc_config is None:
            raise ValueError("container-credentials mode needs its config file")
        flags.update(
            {
                "--watch-container-credentials-config": str(cc_config),
                "--container-credentials-audience": cc.audience,
                "--container-credentials-token-mount-path": cc.mount_path,
                "--container-credentials-token-volume-name": cc.volume_name,
                "--container-credentials-token-path": cc.token_path,
                "--container-credentials-full-uri": cc.full_uri,
            }
        )
    flags.update(raw or {})
    return [f"{k}={v}" for k, v in flags.items()]


# --- cases ---------------------------------------------------------------------------


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


# The generator's vocabulary: valid, edge and invalid values of every input upstream reads.
_ODD_ARNS = (
    "not-an-arn",
    "arn:aws:iam::12345:role/short-account",
    "arn:aws-cn:iam::111122223333:role/path/to/role",
    "AmazonEKSPodS3ReadOnlyAccessRole",
    " arn:aws:iam::123456789012:role/spaced ",
    "arn:aws:iam::123456789012:role/ünïcødé",
    "arn:aws:iam::123456789012:user/not-a-role",
)
_AUDIENCES = ("sts.amazonaws.com", "", "custom-audience", "https://kubernetes.default.svc")
_BOOLS = (
    "true",
    "false",
    "1",
    "0",
    "t",
    "F",
    "TRUE",
    "True",
    "tRuE",
    "yes",
    "on",
    "",
    " true",
    "garbage",
)
_EXPIRATIONS = (
    "3600",
    "600",
    "599",
    "0",
    "-1",
    "86400",
    "86401",
    "200000",
    "1h",
    " 3600",
    "3600 ",
    "3_600",
    "+900",
    "3600.0",
    "0600",
    "-0",
    "9223372036854775807",
    "9223372036854775808",
    "",
    "0x258",
    "1e4",
    "٣٦٠٠",
)
# Mutating admission runs before validation: a webhook does see an empty name.
_CONTAINER_NAMES = ("app", "sidecar", "worker", "proxy", "b", " b", "")
_SKIPS = (
    "app",
    "sidecar",
    "app,sidecar",
    "app, sidecar",
    "sidecar,b",
    "a, b",
    '"app"',
    '"app,sidecar"',
    'a"pp',
    '"app"x',
    "",
    "\napp",
    "app\nsidecar",
    "nope",
    ",",
    "app,",
    '"a""pp"',
    ' "app"',
    "app\r\nsidecar",
    "app\rsidecar",
    '"app\nx",sidecar',
    "\n\napp",
    '"unterminated',
)
_OTHER_ENV = (("HOME", "/root"), ("LOG_LEVEL", "debug"), ("EMPTY", ""), ("", "nameless"))
_AWS_ENV = (
    (C.ENV_ROLE_ARN, "arn:aws:iam::123456789012:role/already-defined"),
    (C.ENV_WEB_IDENTITY_TOKEN_FILE, "/already/token"),
    (C.ENV_REGION, "ap-south-1"),
    (C.ENV_DEFAULT_REGION, "ap-south-2"),
    (C.ENV_STS_REGIONAL_ENDPOINTS, "legacy"),
    (C.ENV_CONTAINER_CREDENTIALS_FULL_URI, "http://already/"),
    (C.ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE, "/already/cc-token"),
)
_NODE_SELECTORS = (
    {C.NODE_SELECTOR_OS: C.WINDOWS_OS},
    {C.NODE_SELECTOR_OS_BETA: C.WINDOWS_OS},
    {C.NODE_SELECTOR_OS: "linux"},
    {C.NODE_SELECTOR_OS: "Windows"},
    {C.NODE_SELECTOR_OS: "linux", C.NODE_SELECTOR_OS_BETA: C.WINDOWS_OS},
)


def _webhook_volume_names(fs: FlagSet) -> list[str]:
    names = [C.TOKEN_VOLUME_NAME, C.CONTAINER_CREDENTIALS_VOLUME_NAME]
    cc = fs.settings.container_credentials
    if cc is not None:
        names.append(cc.volume_name)
    return names


def _gen_env(rng: random.Random) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    for name, value in rng.sample(_AWS_ENV, rng.randint(0, 4)) + rng.sample(
        _OTHER_ENV, rng.randint(0, 2)
    ):
        if rng.random() < 0.1:
            env.append(
                {
                    "name": name,
                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                }
            )
        else:
            env.append({"name": name, "value": value})
    rng.shuffle(env)
    return env


def _gen_container(rng: random.Random, name: str, fs: FlagSet, init: bool) -> dict[str, Any]:
    ctr: dict[str, Any] = {"name": name, "image": rng.choice(("amazon/aws-cli", "busybox:1.36"))}
    if rng.random() < 0.3:
        ctr["command"] = ["sleep", "3600"]
    if rng.random() < 0.6:
        ctr["env"] = _gen_env(rng)
    if rng.random() < 0.35:
        mounts: list[dict[str, Any]] = [{"name": "data", "mountPath": "/data"}]
        if rng.random() < 0.4:
            mounts.append(
                {
                    "name": rng.choice(_webhook_volume_names(fs)),
                    "mountPath": rng.choice(("/some/other/path", C.TOKEN_MOUNT_PATH)),
                    "readOnly": rng.random() < 0.5,
                }
            )
        ctr["volumeMounts"] = mounts
    if rng.random() < 0.2:
        ctr["ports"] = [{"containerPort": 8080, "protocol": "TCP"}]
    if rng.random() < 0.15:
        ctr["resources"] = {"limits": {"cpu": "500m", "memory": "128Mi"}}
    if rng.random() < 0.1:
        ctr["readinessProbe"] = {"grpc": {"port": 5000}}
    if rng.random() < 0.1:
        ctr["securityContext"] = {"runAsNonRoot": True, "readOnlyRootFilesystem": True}
    if init and rng.random() < 0.3:
        ctr["restartPolicy"] = "Always"  # a native sidecar
    return ctr


def _key(fs: FlagSet, rng: random.Random, suffix: str) -> str:
    # Mostly the flag set's prefix; sometimes another one, which upstream ignores.
    prefix = fs.settings.annotation_prefix
    if rng.random() < 0.08:
        prefix = C.ANNOTATION_PREFIX if prefix != C.ANNOTATION_PREFIX else "other.example.com"
    return f"{prefix}/{suffix}"


def _gen_sa(rng: random.Random, fs: FlagSet) -> dict[str, str] | None:
    if rng.random() < 0.06:
        return None
    ann: dict[str, str] = {}
    r = rng.random()
    if r < 0.55:
        ann[_key(fs, rng, C.ROLE_ARN_SUFFIX)] = C.ROLE_ARN
    elif r < 0.6:
        ann[_key(fs, rng, C.ROLE_ARN_SUFFIX)] = ""
    elif r < 0.8:
        ann[_key(fs, rng, C.ROLE_ARN_SUFFIX)] = rng.choice(_ODD_ARNS)
    if rng.random() < 0.35:
        ann[_key(fs, rng, C.AUDIENCE_SUFFIX)] = rng.choice(_AUDIENCES)
    if rng.random() < 0.5:
        ann[_key(fs, rng, C.STS_REGIONAL_SUFFIX)] = rng.choice(_BOOLS)
    if rng.random() < 0.5:
        ann[_key(fs, rng, C.TOKEN_EXPIRATION_SUFFIX)] = rng.choice(_EXPIRATIONS)
    if rng.random() < 0.05:
        ann[_key(fs, rng, C.SKIP_CONTAINERS_SUFFIX)] = "app"  # no effect on a ServiceAccount
    if rng.random() < 0.2:
        ann["kubernetes.io/description"] = "unrelated"
    return ann


def _malform(rng: random.Random, pod: dict[str, Any]) -> str:
    # Objects Go cannot decode into a v1.Pod: upstream denies them with its decoder's message.
    choice = rng.randrange(7)
    spec, meta = pod["spec"], pod["metadata"]
    if choice in (1, 3) and not spec["containers"]:
        choice = 0
    if choice == 0:
        spec["containers"] = "app"
        return "containers-is-a-string"
    if choice == 1:
        spec["containers"][0]["env"] = [{"name": "N", "value": 5}]
        return "env-value-is-a-number"
    if choice == 2:
        meta["annotations"] = {"a": 5}
        return "annotation-is-a-number"
    if choice == 3:
        spec["containers"][0]["volumeMounts"] = [
            {"name": "v", "mountPath": "/v", "readOnly": "yes"}
        ]
        return "readOnly-is-a-string"
    if choice == 4:
        spec["serviceAccountName"] = 7
        return "serviceAccountName-is-a-number"
    if choice == 5:
        meta["labels"] = ["a"]
        return "labels-is-a-list"
    spec["nodeSelector"] = {C.NODE_SELECTOR_OS: None, "x": 1}
    return "nodeSelector-value-is-a-number"


def _gen_case(rng: random.Random, index: int, fs: FlagSet) -> WebhookCase:
    sa_name = f"generated-{index:05d}"
    meta: dict[str, Any] = {"namespace": NAMESPACE}
    if rng.random() < 0.8:
        meta["name"] = f"pod-{index}"
    else:
        meta["generateName"] = "pod-"
    r = rng.random()
    if r < 0.35:
        pass
    elif r < 0.4:
        meta["labels"] = None
    elif r < 0.5:
        meta["labels"] = {}
    else:
        meta["labels"] = {"app": "demo"}
    annotations: dict[str, str] = {}
    if rng.random() < 0.3:
        annotations[_key(fs, rng, C.TOKEN_EXPIRATION_SUFFIX)] = rng.choice(_EXPIRATIONS)
    if rng.random() < 0.25:
        annotations[_key(fs, rng, C.SKIP_CONTAINERS_SUFFIX)] = rng.choice(_SKIPS)
    if rng.random() < 0.1:
        annotations[_key(fs, rng, C.ROLE_ARN_SUFFIX)] = "arn:aws:iam::123456789012:role/pod-level"
    if annotations or rng.random() < 0.1:
        meta["annotations"] = annotations

    names = rng.sample(_CONTAINER_NAMES, rng.randint(0 if rng.random() < 0.02 else 1, 3))
    spec: dict[str, Any] = {"containers": [_gen_container(rng, n, fs, False) for n in names]}
    if rng.random() >= 0.01:  # else a pod that names no ServiceAccount
        spec["serviceAccountName"] = sa_name
    if rng.random() < 0.35:
        init_names = rng.sample(("init", "sidecar", "app", "migrate"), rng.randint(0, 2))
        spec["initContainers"] = [_gen_container(rng, n, fs, True) for n in init_names]
    r = rng.random()
    if r < 0.35:
        pass
    elif r < 0.4:
        spec["volumes"] = None
    elif r < 0.5:
        spec["volumes"] = []
    else:
        vols: list[dict[str, Any]] = [{"name": "data", "emptyDir": {}}]
        if rng.random() < 0.25:
            vols.append(
                {
                    "name": rng.choice(_webhook_volume_names(fs)),
                    "hostPath": {"path": "/var/lib/token", "type": "DirectoryOrCreate"},
                }
            )
        if rng.random() < 0.3:
            vols.append({"name": "config", "configMap": {"name": "app-config"}})
        rng.shuffle(vols)
        spec["volumes"] = vols
    if rng.random() < 0.2:
        spec["securityContext"] = {"fsGroup": 65534, "runAsUser": 1000}
    if rng.random() < 0.1:
        spec["hostNetwork"] = True
    if rng.random() < 0.15:
        spec["nodeSelector"] = dict(rng.choice(_NODE_SELECTORS))
    if rng.random() < 0.05:
        spec["automountServiceAccountToken"] = False
    pod: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    name = f"generated {index} [{fs.name}]"
    if rng.random() < 0.02:
        name += " malformed " + _malform(rng, pod)
    cc_listed = fs.settings.container_credentials is not None and rng.random() < 0.65
    return WebhookCase(name, fs, pod, sa_name, _gen_sa(rng, fs), cc_listed)


def generate_cases(
    count: int, seed: int, flag_sets: Sequence[FlagSet] = FLAG_SETS
) -> list[WebhookCase]:
    """``count`` cases from a ``random.Random(seed)``, spread evenly over ``flag_sets``."""
    rng = random.Random(seed)
    return [_gen_case(rng, i, flag_sets[i % len(flag_sets)]) for i in range(count)]


# --- the comparison ----------------------------------------------------------------------


def normalise_pod(value: Any) -> Any:
    """A pod without what Go's re-serialisation of the containers changes and means nothing.

    Upstream's patch carries containers re-marshalled from Go structs: zero values of
    ``omitempty`` fields (``""``, ``false``, ``[]``) are dropped, ``null`` pointers and an
    empty ``resources`` appear, a volumeMount without ``mountPath`` gets ``""``. The API
    server reads both forms alike, so both sides lose them before the comparison.
    """
    if isinstance(value, list):
        return [normalise_pod(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for k, v in value.items():
        if v is None or v is False or v == "" or v == []:
            continue
        if k == "resources" and v == {}:
            continue
        out[k] = normalise_pod(v)
    return out


def _first_difference(a: Any, b: Any, path: str = "") -> tuple[str, Any, Any] | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            if k not in a or k not in b:
                return f"{path}/{k}", a.get(k, "<absent>"), b.get(k, "<absent>")
            found = _first_difference(a[k], b[k], f"{path}/{k}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _first_difference(x, y, f"{path}/{i}")
            if found:
                return found
        if len(a) != len(b):
            return f"{path} (length)", len(a), len(b)
        return None
    if a != b or type(a) is not type(b):
        return path or "/", a, b
    return None


def _short(value: Any, limit: int = 160) -> str:
    text = (
        value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _decode_patch(response: Mapping[str, Any]) -> tuple[list[dict[str, Any]] | None, str]:
    raw = response.get("patch")
    if raw is None:
        return None, ""
    try:
        ops = json.loads(base64.b64decode(raw))
    except ValueError as exc:
        return None, f"undecodable patch: {exc}"
    return ops, ""


def _token_expirations(pod: Mapping[str, Any], volume_name: str) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    found = []
    for vol in spec.get("volumes") or []:
        if isinstance(vol, dict) and vol.get("name") == volume_name:
            for src in (vol.get("projected") or {}).get("sources") or []:
                token = src.get("serviceAccountToken") if isinstance(src, dict) else None
                if isinstance(token, dict):
                    found.append(token)
    return found


def compare_answers(
    case: str,
    pod: Mapping[str, Any],
    standin: Mapping[str, Any],
    real: Mapping[str, Any],
    *,
    jitter_volume: str | None = None,
) -> list[Difference]:
    """The differences between two AdmissionReview answers for ``pod``, by meaning.

    ``standin`` / ``real`` are the decoded answers of the port and of upstream.
    ``jitter_volume`` names the projected volume whose ``expirationSeconds`` upstream
    drew at random: the real value must lie in [79200, 86400], and then counts as
    equal to the port's (which takes the floor without a random source).
    """
    diffs: list[Difference] = []

    def add(what: str, mine: Any, theirs: Any) -> None:
        diffs.append(Difference(case, what, _short(mine), _short(theirs)))

    mine = standin.get("response") or {}
    theirs = real.get("response") or {}
    if mine.get("uid") != theirs.get("uid"):
        add("uid", mine.get("uid"), theirs.get("uid"))
    my_msg = (mine.get("status") or {}).get("message")
    their_msg = (theirs.get("status") or {}).get("message")
    if mine.get("allowed") != theirs.get("allowed"):
        # One difference, not its consequences (message, patch, patchType).
        add(
            "allowed",
            f"{mine.get('allowed')} {my_msg or ''}",
            f"{theirs.get('allowed')} {their_msg or ''}",
        )
        return diffs
    if my_msg != their_msg:
        add("denial message", my_msg, their_msg)
    my_ops, my_err = _decode_patch(mine)
    their_ops, their_err = _decode_patch(theirs)
    if my_err or their_err:
        add("patch", my_err or "ok", their_err or "ok")
        return diffs
    if (my_ops is None) != (their_ops is None):
        add("patch present", my_ops is not None, their_ops is not None)
        return diffs
    if mine.get("patchType") != theirs.get("patchType"):
        add("patchType", mine.get("patchType"), theirs.get("patchType"))
    if my_ops is None or their_ops is None:
        return diffs
    my_shape = [(op.get("op"), op.get("path")) for op in my_ops]
    their_shape = [(op.get("op"), op.get("path")) for op in their_ops]
    if my_shape != their_shape:
        add("patch operations", my_shape, their_shape)
    try:
        my_pod = jsonpatch.apply_patch(dict(pod), my_ops)
        their_pod = jsonpatch.apply_patch(dict(pod), their_ops)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        add("patch applies", "see real", f"one patch does not apply: {exc}")
        return diffs
    if jitter_volume is not None:
        mine_tokens = _token_expirations(my_pod, jitter_volume)
        for i, token in enumerate(_token_expirations(their_pod, jitter_volume)):
            exp = token.get("expirationSeconds")
            low, high = C.TOKEN_EXPIRATION_JITTER_FLOOR_S, C.DEFAULT_TOKEN_EXPIRATION_S
            if not isinstance(exp, int) or not low <= exp <= high:
                add("jittered expirationSeconds", f"in [{low}, {high}]", exp)
            elif i < len(mine_tokens):
                token["expirationSeconds"] = mine_tokens[i].get("expirationSeconds")
    found = _first_difference(normalise_pod(my_pod), normalise_pod(their_pod))
    if found is not None:
        where, a, b = found
        add(f"patched pod {where}", a, b)
    return diffs


# --- running the programs -------------------------------------------------------------


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


@dataclass
class _Process:
    """One running upstream webhook and the port settings it stands beside."""

    key: _GroupKey
    settings: WebhookSettings  # with this process's identities
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    label: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@contextmanager
def _processes(
    binary: Path,
    groups: Mapping[_GroupKey, list[WebhookCase]],
    tmp: Path,
    kubeconfig: Path,
    ca: LabCA,
) -> Iterator[list[_Process]]:
    """Start one upstream webhook per flag set; stop every one of them on the way out."""
    cert = ca.issue()
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert_file.write_bytes(cert.cert_pem)
    write_secret(key_file, cert.key_pem)
    started: list[_Process] = []
    try:
        for n, (key, cases) in enumerate(groups.items()):
            cc_file: Path | None = None
            settings, raw = key[0], dict(key[1])
            cc = settings.container_credentials
            if cc is not None:
                pairs = {(NAMESPACE, c.sa_name) for c in cases if c.cc_listed}
                pairs.add((NAMESPACE, SENTINEL_CC_SA))
                identities = [{"namespace": ns, "serviceAccount": sa} for ns, sa in sorted(pairs)]
                cc_file = tmp / f"cc-{n}" / "config.json"
                cc_file.parent.mkdir()
                cc_file.write_text(json.dumps({"identities": identities}))
                settings = replace(
                    settings, container_credentials=replace(cc, identities=frozenset(pairs))
                )
            port, metrics_port = free_port(), free_port()
            log = tmp / f"webhook-{n}.log"
            args = [
                str(binary),
                "--in-cluster=false",
                f"--kubeconfig={kubeconfig}",
                f"--port={port}",
                f"--metrics-port={metrics_port}",
                f"--tls-cert={cert_file}",
                f"--tls-key={key_file}",
                "--logtostderr",
                *upstream_flags(key[0], cc_config=cc_file, raw=raw),
            ]
            with log.open("wb") as fh:
                proc = subprocess.Popen(
                    args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            started.append(_Process(key, settings, proc, port, log, cases[0].flags.name))
        yield started
    finally:
        for p in started:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in started:
            try:
                p.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(timeout=5)


def _run_async(coro: Any) -> Any:
    # Own loop in a worker thread: run() works from a notebook whose loop is running.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _create_service_accounts(
    session: aiohttp.ClientSession, api: str, items: Iterable[tuple[str, dict[str, str]]]
) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def post(path: str, body: dict[str, Any]) -> None:
        async with sem, session.post(api + path, json=body) as resp:
            if resp.status not in (200, 201):
                raise RuntimeError(f"POST {path}: HTTP {resp.status}: {await resp.text()}")

    await post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    path = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts"
    await asyncio.gather(
        *(
            post(
                path,
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": name, "annotations": ann},
                },
            )
            for name, ann in items
        )
    )


async def _post_review(
    session: aiohttp.ClientSession, url: str, body: bytes, ssl_ctx: ssl.SSLContext
) -> dict[str, Any]:
    async with session.post(
        url + C.WEBHOOK_MUTATE_PATH,
        data=body,
        headers={"Content-Type": C.WEBHOOK_CONTENT_TYPE},
        ssl=ssl_ctx,
    ) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {text[:200]}")
        answer: dict[str, Any] = json.loads(text)
        return answer


async def _wait_ready(
    session: aiohttp.ClientSession, p: _Process, ssl_ctx: ssl.SSLContext, deadline: float
) -> None:
    """Wait until ``p`` mutates a pod of the sentinel (IRSA) and, in container-credentials
    mode, of the listed sentinel: its informer then holds every ServiceAccount made before."""
    probes = [(SENTINEL_SA, "/spec/containers")]
    if p.settings.container_credentials is not None:
        probes.append((SENTINEL_CC_SA, "/metadata/labels"))
    for sa, expected_path in probes:
        pod = {
            "metadata": {"name": "sentinel"},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "c"}]},
        }
        body = review_body("sentinel", NAMESPACE, pod)
        last = ""
        while True:
            if p.proc.poll() is not None:
                raise RuntimeError(
                    f"upstream webhook [{p.label}] exited with {p.proc.returncode}:\n{p.log_tail()}"
                )
            try:
                answer = await _post_review(session, p.url, body, ssl_ctx)
                ops, _ = _decode_patch(answer.get("response") or {})
                if ops and any(op.get("path") == expected_path for op in ops):
                    break
                last = "answered without mutating the sentinel pod"
            except (aiohttp.ClientError, OSError, RuntimeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"upstream webhook [{p.label}] did not see the sentinel ServiceAccount in "
                    f"{STARTUP_TIMEOUT_S:.0f} s ({last}): its informer cannot list/watch "
                    f"ServiceAccounts from the embedded API server?\n{p.log_tail()}"
                )
            await asyncio.sleep(0.05)


async def _drive(
    api: str,
    token: str,
    ca: LabCA,
    procs: Sequence[_Process],
    service_accounts: list[tuple[str, dict[str, str]]],
    reviews: list[tuple[int, _Process, bytes]],
) -> dict[int, dict[str, Any]]:
    ssl_ctx = ca.client_context()
    connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=CONCURRENCY * 2)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await _create_service_accounts(session, api, service_accounts)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        await asyncio.gather(*(_wait_ready(session, p, ssl_ctx, deadline) for p in procs))
        sem = asyncio.Semaphore(CONCURRENCY)
        answers: dict[int, dict[str, Any]] = {}

        async def one(index: int, p: _Process, body: bytes) -> None:
            async with sem:
                answers[index] = await _post_review(session, p.url, body, ssl_ctx)

        await asyncio.gather(*(one(i, p, b) for i, p, b in reviews))
    return answers


def run(*, generated: int = 1000, seed: int = 1, fixtures_dir: Path | None = None) -> SuiteResult:
    """Compare the port with the real webhook on the upstream fixtures and ``generated`` cases.

    Raises ``RuntimeError`` when the binary is not built (``make k8s-bin``) or a process
    cannot start or sync; every process and temporary file is gone when it returns.
    """
    from ..stack import EmbeddedLab  # the whole stack: imported only when a suite runs

    found = binaries.find(PROGRAM)
    version = binaries.PROGRAMS[PROGRAM].version
    if found is None:
        raise RuntimeError(f"{PROGRAM} not built: run `{binaries.get_command(PROGRAM)}`")
    result = SuiteResult(
        name="webhook",
        title="Pod identity webhook",
        standin="irsa_lab.webhook (Python port)",
        real=f"{PROGRAM} {version}",
    )
    started = time.monotonic()

    cases: list[WebhookCase] = []
    folder = fixtures_dir if fixtures_dir is not None else shared_fixtures_dir()
    if folder.is_dir():
        fixtures = fixture_cases(folder)
        cases += fixtures
        result.notes.append(f"{len(fixtures)} upstream fixtures from {folder.name}/")
    else:
        result.notes.append(f"upstream fixtures skipped: {folder} not found")
    cases += generate_cases(generated, seed)

    # Cases grouped by the flags their process runs with.
    groups: dict[_GroupKey, list[WebhookCase]] = {}
    for case in cases:
        groups.setdefault(_group_key(case.flags), []).append(case)

    service_accounts: list[tuple[str, dict[str, str]]] = [
        (c.sa_name, c.sa_annotations) for c in cases if c.sa_annotations is not None
    ]
    prefixes = sorted({settings.annotation_prefix for settings, _ in groups})
    service_accounts.append(
        (SENTINEL_SA, {f"{p}/{C.ROLE_ARN_SUFFIX}": C.ROLE_ARN for p in prefixes})
    )

    tmp = Path(tempfile.mkdtemp(prefix="irsa-lab-webhook-fidelity-"))
    try:
        with ExitStack() as stack:
            lab = EmbeddedLab(state_dir=tmp / "state")
            lab.start()
            stack.callback(lab.stop)
            procs = stack.enter_context(
                _processes(found.path, groups, tmp, tmp / "state" / "kubeconfig", lab.ca)
            )
            by_key = {p.key: p for p in procs}
            bodies: list[tuple[int, _Process, bytes]] = []
            for i, case in enumerate(cases):
                proc = by_key[_group_key(case.flags)]
                bodies.append((i, proc, review_body(f"uid-{i:05d}", NAMESPACE, case.pod)))
            answers: dict[int, dict[str, Any]] = _run_async(
                _drive(
                    lab.endpoints.apiserver, lab.api_token, lab.ca, procs, service_accounts, bodies
                )
            )

        caches: dict[str, ServiceAccountCache] = {}
        for prefix in prefixes:
            cache = ServiceAccountCache(prefix)
            for name, ann in service_accounts:
                cache.put(NAMESPACE, name, ann)
            caches[prefix] = cache
        envelope = 0
        for i, proc, body in bodies:
            case = cases[i]
            settings = proc.settings
            outcome = review(body, lookup=caches[settings.annotation_prefix], settings=settings)
            mine: dict[str, Any] = dict(outcome.review)
            theirs = answers[i]
            # Where the port jittered (it takes the floor without a random source), upstream
            # drew from its clock-seeded source: only the range can be compared.
            cfg = outcome.result.config if outcome.result is not None else None
            jittered = cfg is not None and "jittered" in cfg.sources.get("expiration", "")
            jitter = cfg.volume_name if cfg is not None and jittered else None
            result.differences += compare_answers(
                case.name, case.pod, mine, theirs, jitter_volume=jitter
            )
            if {k: mine.get(k) for k in ("apiVersion", "kind")} != {
                k: theirs.get(k) for k in ("apiVersion", "kind")
            }:
                envelope += 1
            result.cases += 1
        if envelope:
            result.differences.append(
                Difference(
                    f"{envelope} of {result.cases} cases",
                    "answer apiVersion/kind",
                    "admission.k8s.io/v1 AdmissionReview (echoed)",
                    "absent",
                    accepted=_ENVELOPE_ACCEPTED,
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    elapsed = time.monotonic() - started
    result.notes += [
        f"{len(groups)} upstream processes (one per flag set); {result.cases} cases "
        f"({generated} generated from random.Random({seed})) in {elapsed:.1f} s",
        "compared: uid, allowed, denial message, patchType, the patch's (op, path) list, and "
        "the pod each patch produces, without Go's zero values and empty resources",
        "a Pod Identity expiration of exactly 86400 s is jittered by upstream from its clock: "
        "checked to lie in [79200, 86400]",
        "inputs are pods as an API server sends them (decoded, so well typed, before "
        "admission); a field of the wrong JSON type that the webhook never reads is out of "
        "scope: upstream's Go decoder refuses it, the port checks only the fields it reads",
    ]
    return result
