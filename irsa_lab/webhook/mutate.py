"""The pod mutation: a pure function from a pod and its ServiceAccount to a JSONPatch.

This is the heart of the webhook (docs/reference/webhook.md §2, §3, §9). It reads nothing but
its arguments: the pod as the API server sent it, the namespace of the request, the
ServiceAccount's annotations as the cache holds them (``None`` when the cache does
not know the ServiceAccount) and the settings (upstream's flags). Randomness (the
Pod Identity expiration jitter) comes from an injected ``random.Random``.

Two modes, decided in this order (upstream's precedence):

1. **container credentials** (EKS Pod Identity), when ``(namespace, serviceAccountName)``
   is listed in the container-credentials config, even if the SA has a role ARN;
2. **STS web identity** (IRSA), when the SA is cached and has a non-empty ``role-arn``.

Otherwise there is nothing to do: the pod is allowed unchanged.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import constants as C
from .annotations import parse_go_bool, parse_skip_containers, parse_token_expiration
from .go_json import struct_field_error, value_error
from .settings import WebhookSettings

__all__ = [
    "REASON_CONTAINER_CREDENTIALS",
    "REASON_NO_ROLE_ARN",
    "REASON_SA_NOT_FOUND",
    "REASON_STS_WEB_IDENTITY",
    "Mode",
    "MutationResult",
    "PatchConfig",
    "PodDecodeError",
    "build_patch",
    "check_pod",
    "go_clean",
    "go_join",
    "json_pointer_token",
    "mutate_pod",
    "resolve_config",
    "windows_path",
]

Mode = Literal["sts_web_identity", "container_credentials"]

# MutationResult.reason values: the first two match upstream's pod_count metric labels.
REASON_STS_WEB_IDENTITY = "sts_web_identity"
REASON_CONTAINER_CREDENTIALS = "container_credentials"
REASON_SA_NOT_FOUND = "service_account_not_found"
REASON_NO_ROLE_ARN = "no_role_arn"


class PodDecodeError(ValueError):
    """Raised when the object is not a Pod Go could decode; carries a Go-style message.

    The server turns it into a denied AdmissionReview (``allowed: false``) whose
    message is this text, as upstream does when ``json.Unmarshal`` into a Pod fails.
    """


@dataclass(frozen=True)
class PatchConfig:
    """What the webhook will inject, once every source (pod, SA, flags) is resolved.

    ``sources`` says where each resolved value came from (``"pod annotation"``,
    ``"service account annotation"``, ``"flag default"``, ...), for explanations.
    """

    mode: Mode
    role_arn: str
    audience: str
    expiration_s: int
    regional_sts: bool
    region: str
    mount_path: str
    volume_name: str
    token_path: str
    token_file: str
    full_uri: str = ""
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class MutationResult:
    """The outcome of :func:`mutate_pod`.

    ``patch`` is the RFC 6902 operation list (empty when ``mutated`` is false);
    ``reason`` is one of the ``REASON_*`` codes; ``env_added`` maps each container
    name to the env var names appended to it; ``notes`` are plain sentences that
    explain the decisions (skipped containers, early exits, name-only checks).
    """

    patch: list[dict[str, Any]]
    mutated: bool
    reason: str
    env_added: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    config: PatchConfig | None = None


# --- Go decoding: which pods upstream could not even read ----------------------------


def _type_error(value: object, struct: str, path: str, gotype: str) -> PodDecodeError:
    return PodDecodeError(struct_field_error(value, f"{struct}.{path}", gotype))


def _check_str(obj: Mapping[str, Any], key: str, struct: str, path: str) -> None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _type_error(value, struct, f"{path}.{key}", "string")


def _check_object(value: object, struct: str, path: str, gotype: str) -> None:
    if value is not None and not isinstance(value, dict):
        raise _type_error(value, struct, path, gotype)


def _check_string_map(obj: Mapping[str, Any], key: str, struct: str, path: str) -> None:
    value = obj.get(key)
    _check_object(value, struct, f"{path}.{key}", "map[string]string")
    for v in (value or {}).values():
        if v is not None and not isinstance(v, str):
            raise _type_error(v, struct, f"{path}.{key}", "string")


def _check_list(obj: Mapping[str, Any], key: str, struct: str, path: str, item: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _type_error(value, struct, f"{path}.{key}", f"[]v1.{item}")
    for entry in value:
        _check_object(entry, struct, f"{path}.{key}", f"v1.{item}")
    return [e for e in value if e is not None]


def check_pod(obj: object) -> Mapping[str, Any]:
    """Check that ``obj`` decodes as a Go ``v1.Pod`` in every field the webhook reads.

    Returns the object (``null`` counts as an empty pod, as in Go); raises
    :class:`PodDecodeError` with a Go-style message for a type mismatch. Fields the
    webhook never reads are not checked, and unknown fields are ignored, as in Go.
    """
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise PodDecodeError(value_error(obj, "v1.Pod"))
    meta = obj.get("metadata")
    _check_object(meta, "Pod", "metadata", "v1.ObjectMeta")
    meta = meta or {}
    for key in ("name", "generateName", "namespace"):
        _check_str(meta, key, "ObjectMeta", "metadata")
    for key in ("annotations", "labels"):
        _check_string_map(meta, key, "ObjectMeta", "metadata")
    spec = obj.get("spec")
    _check_object(spec, "Pod", "spec", "v1.PodSpec")
    spec = spec or {}
    _check_str(spec, "serviceAccountName", "PodSpec", "spec")
    _check_string_map(spec, "nodeSelector", "PodSpec", "spec")
    for volume in _check_list(spec, "volumes", "PodSpec", "spec", "Volume"):
        _check_str(volume, "name", "Volume", "spec.volumes")
    for key in ("initContainers", "containers"):
        for ctr in _check_list(spec, key, "PodSpec", "spec", "Container"):
            path = f"spec.{key}"
            _check_str(ctr, "name", "Container", path)
            for env in _check_list(ctr, "env", "Container", path, "EnvVar"):
                _check_str(env, "name", "EnvVar", f"{path}.env")
                _check_str(env, "value", "EnvVar", f"{path}.env")
            for mount in _check_list(ctr, "volumeMounts", "Container", path, "VolumeMount"):
                _check_str(mount, "name", "VolumeMount", f"{path}.volumeMounts")
                _check_str(mount, "mountPath", "VolumeMount", f"{path}.volumeMounts")
                ro = mount.get("readOnly")
                if ro is not None and not isinstance(ro, bool):
                    raise _type_error(ro, "VolumeMount", f"{path}.volumeMounts.readOnly", "bool")
    return obj


# --- paths ---------------------------------------------------------------------------


def go_clean(path: str) -> str:
    """Go's ``path.Clean`` for slash paths: collapse ``//``, drop ``.``, resolve ``..``."""
    if path == "":
        return "."
    rooted = path.startswith("/")
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out and out[-1] != "..":
                out.pop()
            elif not rooted:
                out.append("..")
            continue
        out.append(part)
    cleaned = "/".join(out)
    if rooted:
        return "/" + cleaned
    return cleaned or "."


def go_join(*parts: str) -> str:
    """Go's ``filepath.Join`` on Linux: join the non-empty parts with ``/``, then clean."""
    kept = [p for p in parts if p]
    return go_clean("/".join(kept)) if kept else ""


def windows_path(path: str) -> str:
    """The token path a Windows container sees: ``C:`` and backslashes (mountPath stays Unix)."""
    return "C:" + path.replace("/", "\\")


def json_pointer_token(key: str) -> str:
    """Escape one JSON Pointer reference token (RFC 6901): ``~`` → ``~0``, ``/`` → ``~1``."""
    return key.replace("~", "~0").replace("/", "~1")


# --- resolving the patch config ------------------------------------------------------


def _expiration(
    pod_annotations: Mapping[str, str],
    sa_annotations: Mapping[str, str] | None,
    settings: WebhookSettings,
    *,
    sa_default: int,
) -> tuple[int, str]:
    # Precedence: pod annotation > ServiceAccount annotation > flag (or the Pod Identity
    # constant for an uncached SA). Unparsable values are ignored; parsed ones are
    # clamped up to 600 s; nothing is clamped down.
    key = settings.annotation(C.TOKEN_EXPIRATION_SUFFIX)
    minimum = C.MIN_TOKEN_EXPIRATION_S
    from_pod = parse_token_expiration(pod_annotations.get(key), minimum)
    if from_pod is not None:
        return from_pod, "pod annotation"
    if sa_annotations is not None:
        from_sa = parse_token_expiration(sa_annotations.get(key), minimum)
        if from_sa is not None:
            return from_sa, "service account annotation"
        return settings.token_expiration, "flag --token-expiration"
    return sa_default, "default"


def _regional_sts(
    sa_annotations: Mapping[str, str] | None, settings: WebhookSettings
) -> tuple[bool, str]:
    # The SA annotation wins over the flag in both directions ("false" turns a true flag
    # off); a value Go's ParseBool rejects (including "") leaves the flag in force.
    if sa_annotations is None:
        return False, "default"
    raw = sa_annotations.get(settings.annotation(C.STS_REGIONAL_SUFFIX))
    parsed = parse_go_bool(raw) if raw is not None else None
    if parsed is not None:
        return parsed, "service account annotation"
    return settings.sts_regional_endpoint, "flag --sts-regional-endpoint"


def resolve_config(
    settings: WebhookSettings,
    namespace: str,
    service_account: str,
    pod_annotations: Mapping[str, str],
    sa_annotations: Mapping[str, str] | None,
    rng: random.Random | None = None,
) -> tuple[PatchConfig | None, str]:
    """Decide the mode and every injected value; ``(None, reason)`` when nothing applies.

    ``service_account`` and ``pod_annotations`` are what the pod says
    (``spec.serviceAccountName``, ``metadata.annotations``); ``sa_annotations`` are the
    account's as cached, ``None`` when the cache does not know it.
    """
    cc = settings.container_credentials
    sts, sts_src = _regional_sts(sa_annotations, settings)

    # Pod Identity first: an exact (namespace, SA) match beats a role ARN on the SA.
    if cc is not None and cc.matches(namespace, service_account):
        exp, exp_src = _expiration(
            pod_annotations, sa_annotations, settings, sa_default=C.DEFAULT_TOKEN_EXPIRATION_S
        )
        if exp == C.DEFAULT_TOKEN_EXPIRATION_S:
            # Jitter only an expiration of exactly 24 h, wherever it came from.
            exp = (
                rng.randint(C.TOKEN_EXPIRATION_JITTER_FLOOR_S, C.DEFAULT_TOKEN_EXPIRATION_S)
                if rng
                else C.TOKEN_EXPIRATION_JITTER_FLOOR_S
            )
            exp_src += ", jittered"
        mode: Mode = "container_credentials"
        reason = REASON_CONTAINER_CREDENTIALS
        role_arn, audience = "", cc.audience
        mount_path, volume_name, token_path = cc.mount_path, cc.volume_name, cc.token_path
        full_uri = cc.full_uri
        sources = {
            "expiration": exp_src,
            "regional_sts": sts_src,
            "mode": "container credentials config",
        }
    else:
        if sa_annotations is None:
            return None, REASON_SA_NOT_FOUND
        role_arn = sa_annotations.get(settings.annotation(C.ROLE_ARN_SUFFIX), "")
        if not role_arn:
            return None, REASON_NO_ROLE_ARN
        audience_key = settings.annotation(C.AUDIENCE_SUFFIX)
        # A present audience annotation is used as is, even when empty.
        if audience_key in sa_annotations:
            audience, aud_src = sa_annotations[audience_key], "service account annotation"
        else:
            audience, aud_src = settings.token_audience, "flag --token-audience"
        exp, exp_src = _expiration(
            pod_annotations, sa_annotations, settings, sa_default=settings.token_expiration
        )
        mode, reason = "sts_web_identity", REASON_STS_WEB_IDENTITY
        mount_path, volume_name, token_path = (
            settings.token_mount_path,
            C.TOKEN_VOLUME_NAME,
            C.TOKEN_FILE_NAME,
        )
        full_uri = ""
        sources = {
            "audience": aud_src,
            "expiration": exp_src,
            "regional_sts": sts_src,
            "role_arn": "service account annotation",
        }
    config = PatchConfig(
        mode=mode,
        role_arn=role_arn,
        audience=audience,
        expiration_s=exp,
        regional_sts=sts,
        region=settings.aws_default_region,
        mount_path=mount_path,
        volume_name=volume_name,
        token_path=token_path,
        token_file=go_join(mount_path, token_path),
        full_uri=full_uri,
        sources=sources,
    )
    return config, reason


# --- building the patch --------------------------------------------------------------


def _env_name(entry: object) -> str:
    return (entry.get("name") or "") if isinstance(entry, dict) else ""


def _mutate_container(
    container: Mapping[str, Any], cfg: PatchConfig, windows: bool, notes: list[str]
) -> tuple[dict[str, Any], tuple[str, ...]]:
    out = copy.deepcopy(dict(container))
    name = out.get("name") or ""
    env: list[Any] = list(out.get("env") or [])
    names = {_env_name(e) for e in env}
    if cfg.mode == "container_credentials":
        id_defined = bool(
            names & {C.ENV_CONTAINER_CREDENTIALS_FULL_URI, C.ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE}
        )
    else:
        id_defined = bool(names & {C.ENV_ROLE_ARN, C.ENV_WEB_IDENTITY_TOKEN_FILE})
    region_defined = bool(names & {C.ENV_REGION, C.ENV_DEFAULT_REGION})
    sts_defined = C.ENV_STS_REGIONAL_ENDPOINTS in names

    # Upstream quirk: identity + region + STS already set means the container is left
    # exactly as it is, without even the token volumeMount (fixture rawPodHasAll).
    if id_defined and region_defined and sts_defined:
        notes.append(
            f"container {name!r} already sets identity, region and STS env vars: left unchanged, no mount added"
        )
        return out, ()

    token_file = windows_path(cfg.token_file) if windows else cfg.token_file
    added: list[dict[str, str]] = []
    # Order matters and is upstream's: STS, then the region pair, then the identity pair.
    if cfg.regional_sts and not sts_defined:
        added.append({"name": C.ENV_STS_REGIONAL_ENDPOINTS, "value": C.STS_REGIONAL_VALUE})
    # Each pair is all-or-nothing: one existing member suppresses both.
    if cfg.region and not region_defined:
        added.append({"name": C.ENV_DEFAULT_REGION, "value": cfg.region})
        added.append({"name": C.ENV_REGION, "value": cfg.region})
    elif cfg.region:
        notes.append(f"container {name!r} already sets a region: no region env vars added")
    if not id_defined:
        if cfg.mode == "container_credentials":
            added.append({"name": C.ENV_CONTAINER_CREDENTIALS_FULL_URI, "value": cfg.full_uri})
            added.append({"name": C.ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE, "value": token_file})
        else:
            added.append({"name": C.ENV_ROLE_ARN, "value": cfg.role_arn})
            added.append({"name": C.ENV_WEB_IDENTITY_TOKEN_FILE, "value": token_file})
    else:
        notes.append(
            f"container {name!r} already sets an identity env var: identity pair not added"
        )
    if added:
        out["env"] = env + added

    mounts: list[Any] = list(out.get("volumeMounts") or [])
    # Name-only check: a mount with the volume's name anywhere suppresses ours.
    if any(isinstance(m, dict) and m.get("name") == cfg.volume_name for m in mounts):
        notes.append(f"container {name!r} already mounts {cfg.volume_name!r}: its mount kept as is")
    else:
        mounts.append({"name": cfg.volume_name, "readOnly": True, "mountPath": cfg.mount_path})
        out["volumeMounts"] = mounts
    return out, tuple(e["name"] for e in added)


def _volume(cfg: PatchConfig) -> dict[str, Any]:
    token: dict[str, Any] = {}
    if cfg.audience:  # Kubernetes omits an empty audience: the API server's own is used
        token["audience"] = cfg.audience
    token["expirationSeconds"] = cfg.expiration_s
    token["path"] = cfg.token_path
    return {"name": cfg.volume_name, "projected": {"sources": [{"serviceAccountToken": token}]}}


def build_patch(
    pod: Mapping[str, Any], cfg: PatchConfig, settings: WebhookSettings
) -> tuple[list[dict[str, Any]], dict[str, tuple[str, ...]], list[str]]:
    """The JSONPatch for ``pod`` under a resolved config, with env added and notes."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    notes: list[str] = []
    patch: list[dict[str, Any]] = []

    if cfg.mode == "container_credentials":
        if meta.get("labels") is None:
            patch.append(
                {
                    "op": "add",
                    "path": "/metadata/labels",
                    "value": {C.POD_IDENTITY_LABEL: C.POD_IDENTITY_LABEL_VALUE},
                }
            )
        else:
            patch.append(
                {
                    "op": "add",
                    "path": "/metadata/labels/" + json_pointer_token(C.POD_IDENTITY_LABEL),
                    "value": C.POD_IDENTITY_LABEL_VALUE,
                }
            )

    volumes = spec.get("volumes")
    if any(isinstance(v, dict) and v.get("name") == cfg.volume_name for v in volumes or []):
        notes.append(f"pod already has a volume named {cfg.volume_name!r}: no volume added")
    elif volumes is None:
        patch.append({"op": "add", "path": "/spec/volumes", "value": [_volume(cfg)]})
    else:
        # An existing list (even an empty one) gets the volume prepended at index 0.
        patch.append({"op": "add", "path": "/spec/volumes/0", "value": _volume(cfg)})

    node_selector = spec.get("nodeSelector") or {}
    windows = C.WINDOWS_OS in (
        node_selector.get(C.NODE_SELECTOR_OS),
        node_selector.get(C.NODE_SELECTOR_OS_BETA),
    )
    skip_raw = (meta.get("annotations") or {}).get(settings.annotation(C.SKIP_CONTAINERS_SUFFIX))
    skip = parse_skip_containers(skip_raw) if skip_raw is not None else frozenset()

    env_added: dict[str, tuple[str, ...]] = {}

    def rewrite(containers: list[Any]) -> list[dict[str, Any]]:
        result = []
        for ctr in containers:
            ctr = ctr if isinstance(ctr, dict) else {}
            name = ctr.get("name") or ""
            if name in skip:
                notes.append(f"container {name!r} is listed in skip-containers: left unchanged")
                result.append(copy.deepcopy(ctr))
                continue
            new, added = _mutate_container(ctr, cfg, windows, notes)
            env_added[name] = added
            result.append(new)
        return result

    init = list(spec.get("initContainers") or [])
    new_init = rewrite(init)
    new_containers = rewrite(list(spec.get("containers") or []))
    # Whole arrays, always for containers and whenever there is an init container.
    patch.append({"op": "add", "path": "/spec/containers", "value": new_containers})
    if init:
        patch.append({"op": "add", "path": "/spec/initContainers", "value": new_init})
    return patch, env_added, notes


def mutate_pod(
    pod: Mapping[str, Any],
    *,
    namespace: str,
    sa_annotations: Mapping[str, str] | None,
    settings: WebhookSettings,
    rng: random.Random | None = None,
) -> MutationResult:
    """What the webhook answers for ``pod`` created in ``namespace``.

    ``sa_annotations`` are the annotations of the pod's ServiceAccount
    (``spec.serviceAccountName``) as cached, or ``None`` when the cache does not know it.
    ``rng`` draws the Pod Identity jitter; without one the jitter takes its floor
    (79200 s), as upstream's tests do with their zero random source.

    Raises :class:`PodDecodeError` when ``pod`` is not a Pod Go could decode; never
    modifies ``pod``.
    """
    checked = check_pod(pod)
    sa: str = (checked.get("spec") or {}).get("serviceAccountName") or ""
    pod_annotations: Mapping[str, str] = (checked.get("metadata") or {}).get("annotations") or {}
    cfg, reason = resolve_config(settings, namespace, sa, pod_annotations, sa_annotations, rng)
    if cfg is None:
        why = {
            REASON_SA_NOT_FOUND: f"service account {namespace}/{sa} is not in the cache",
            REASON_NO_ROLE_ARN: f"service account {namespace}/{sa} has no {settings.annotation(C.ROLE_ARN_SUFFIX)} annotation",
        }[reason]
        return MutationResult(
            patch=[], mutated=False, reason=reason, notes=(why + ": pod admitted unchanged",)
        )
    patch, env_added, notes = build_patch(checked, cfg, settings)
    return MutationResult(
        patch=patch,
        mutated=True,
        reason=reason,
        env_added=env_added,
        notes=tuple(notes),
        config=cfg,
    )
