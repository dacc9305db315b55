"""Generated webhook cases: random pods and ServiceAccounts over every input upstream reads.

Why: upstream's fixtures cover the cases its authors wrote down; the generator draws
valid, edge and invalid values of every annotation, env var, volume and flag from a
seeded :class:`random.Random`, so a run is repeatable and covers far more.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

from .. import constants as C
from .webhook_cases import NAMESPACE, WebhookCase
from .webhook_flags import FLAG_SETS, FlagSet

__all__ = ["generate_cases"]

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


def _absent_null_empty_or(
    rng: random.Random, obj: dict[str, Any], key: str, empty: Any, make: Callable[[], Any]
) -> None:
    """Leave ``key`` out (35 %), or set it to ``null`` (5 %), to ``empty`` (10 %) or to
    ``make()`` (50 %): the three ways a pod can hold no value, then one with a value."""
    r = rng.random()
    if r < 0.35:
        return
    if r < 0.4:
        obj[key] = None
    elif r < 0.5:
        obj[key] = empty
    else:
        obj[key] = make()


def _gen_volumes(rng: random.Random, fs: FlagSet) -> list[dict[str, Any]]:
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
    return vols


def _gen_case(rng: random.Random, index: int, fs: FlagSet) -> WebhookCase:
    sa_name = f"generated-{index:05d}"
    meta: dict[str, Any] = {"namespace": NAMESPACE}
    if rng.random() < 0.8:
        meta["name"] = f"pod-{index}"
    else:
        meta["generateName"] = "pod-"
    _absent_null_empty_or(rng, meta, "labels", {}, lambda: {"app": "demo"})
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
    _absent_null_empty_or(rng, spec, "volumes", [], lambda: _gen_volumes(rng, fs))
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
