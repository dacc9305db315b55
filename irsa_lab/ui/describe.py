"""``kubectl describe`` output for the objects the article describes, without kubectl.

The notebooks show the ServiceAccount, the MutatingWebhookConfiguration and the pod's
environment exactly as the article's screens do, on every backend (kubectl may not be
installed on Binder). Layout follows kubectl's describers: ``Key:\\tvalue`` lines through
Go's tabwriter (:func:`~irsa_lab.ui.text.go_tabwriter`), labels and annotations one per
line in sorted order, and, for kinds without a dedicated describer such as
MutatingWebhookConfiguration, the generic describer that prints every field with
"smart" labels (``timeoutSeconds`` becomes ``Timeout Seconds``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from .text import go_tabwriter

__all__ = [
    "describe_mutating_webhook_configuration",
    "describe_pod_env",
    "describe_service_account",
    "smart_label",
]

_MAX_ANNOTATION_LEN = 140
# kubectl hides this annotation in describe output.
_SKIP_ANNOTATIONS = {"kubectl.kubernetes.io/last-applied-configuration"}
_ACRONYMS = {"API", "URL", "UID", "OSB", "GUID"}


def _level(n: int) -> str:
    return "  " * n


def _go_value(value: Any) -> str:
    """``%v`` of a decoded JSON value, as Go prints it."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _labels(title: str, labels: Mapping[str, str] | None) -> list[str]:
    items = sorted((labels or {}).items())
    if not items:
        return [f"{title}:\t<none>"]
    return [(f"{title}:\t" if i == 0 else "\t") + f"{k}={v}" for i, (k, v) in enumerate(items)]


def _shorten(s: str, max_len: int) -> str:
    return s if len(s) <= max_len else s[:max_len] + "..."


def _annotations(title: str, annotations: Mapping[str, str] | None) -> list[str]:
    keys = sorted(k for k in (annotations or {}) if k not in _SKIP_ANNOTATIONS)
    if not keys:
        return [f"{title}:\t<none>"]
    lines: list[str] = []
    for i, key in enumerate(keys):
        lead = f"{title}:\t" if i == 0 else "\t"
        value = str((annotations or {})[key]).removesuffix("\n")
        if len(value) + len(key) + 2 > _MAX_ANNOTATION_LEN or "\n" in value:
            lines.append(f"{lead}{key}:")
            lines.extend(f"\t  {_shorten(s, _MAX_ANNOTATION_LEN - 2)}" for s in value.split("\n"))
        else:
            lines.append(f"{lead}{key}: {value}")
    return lines


def _events(events: Sequence[Mapping[str, str]] | None) -> list[str]:
    if not events:
        return ["Events:\t<none>"]
    lines = ["Events:", "  Type\tReason\tAge\tFrom\tMessage", "  ----\t------\t----\t----\t-------"]
    for e in events:
        lines.append(
            f"  {e.get('type', '')}\t{e.get('reason', '')}\t{e.get('age', '')}\t"
            f"{e.get('from', '')}\t{e.get('message', '')}"
        )
    return lines


def describe_service_account(
    sa: Mapping[str, Any],
    *,
    tokens: Sequence[str] = (),
    events: Sequence[Mapping[str, str]] | None = None,
) -> str:
    """``kubectl describe serviceaccount`` for a ServiceAccount object (JSON form).

    ``tokens`` are the names of token Secrets bound to it (none since Kubernetes 1.24);
    ``events`` rows carry ``type``, ``reason``, ``age``, ``from``, ``message``.
    """
    meta = sa.get("metadata") or {}
    lines = [f"Name:\t{meta.get('name', '')}", f"Namespace:\t{meta.get('namespace', '')}"]
    lines += _labels("Labels", meta.get("labels"))
    lines += _annotations("Annotations", meta.get("annotations"))
    # kubectl pads the three headers to one width and prints them in sorted order.
    sections = {
        "Image pull secrets:": [s.get("name", "") for s in sa.get("imagePullSecrets") or []],
        "Mountable secrets: ": [s.get("name", "") for s in sa.get("secrets") or []],
        "Tokens:            ": list(tokens),
    }
    for header in sorted(sections):
        names = sections[header]
        if not names:
            lines.append(f"{header}\t<none>")
        for i, name in enumerate(names):
            lines.append(f"{header if i == 0 else ' ' * 19}\t{name}")
    lines += _events(events)
    return go_tabwriter("\n".join(lines))


def _camel_split(field: str) -> list[str]:
    def cls(ch: str) -> int:
        return 1 if ch.islower() else 2 if ch.isupper() else 3 if ch.isdigit() else 4

    runs: list[str] = []
    for ch in field:
        if runs and cls(runs[-1][-1]) == cls(ch):
            runs[-1] += ch
        else:
            runs.append(ch)
    # "HTTPServer" -> "HTTP", "Server": an upper run gives its last letter to a lower run.
    for i in range(len(runs) - 1):
        if runs[i] and cls(runs[i][0]) == 2 and cls(runs[i + 1][0]) == 1:
            runs[i + 1] = runs[i][-1] + runs[i + 1]
            runs[i] = runs[i][:-1]
    return [r for r in runs if r]


def smart_label(field: str) -> str:
    """kubectl's label for a field name: ``apiVersion`` -> ``API Version``.

    Names with characters other than letters and ``-`` are kept as they are (label
    keys such as ``eks.amazonaws.com/skip``).
    """
    if any(not (ch.isalpha() or ch == "-") for ch in field):
        return field
    parts = []
    for part in _camel_split(field):
        if part == "_":
            continue
        parts.append(part.upper() if part.upper() in _ACRONYMS else part[:1].upper() + part[1:])
    return " ".join(parts)


def _unstructured(
    lines: list[str], level: int, content: Mapping[str, Any], prefix: str, skip: set[str]
) -> None:
    for name in sorted(content):
        value = content[name]
        path = f"{prefix}.{name}"
        if path in skip:
            continue
        if isinstance(value, Mapping):
            lines.append(f"{_level(level)}{smart_label(name)}:")
            _unstructured(lines, level + 1, value, path, skip)
        elif isinstance(value, list):
            lines.append(f"{_level(level)}{smart_label(name)}:")
            for child in value:
                if isinstance(child, Mapping):
                    _unstructured(lines, level + 1, child, path, skip)
                else:
                    lines.append(f"{_level(level + 1)}{_go_value(child)}")
        else:
            lines.append(f"{_level(level)}{smart_label(name)}:\t{_go_value(value)}")


def describe_generic(
    obj: Mapping[str, Any], *, events: Sequence[Mapping[str, str]] | None = None
) -> str:
    """kubectl's generic describer: header, then every field but the ones shown above."""
    meta = obj.get("metadata") or {}
    lines = [f"Name:\t{meta.get('name', '')}", f"Namespace:\t{meta.get('namespace', '')}"]
    lines += _labels("Labels", meta.get("labels"))
    lines += _annotations("Annotations", meta.get("annotations"))
    skip = {
        ".metadata.managedFields",
        ".metadata.name",
        ".metadata.namespace",
        ".metadata.labels",
        ".metadata.annotations",
    }
    _unstructured(lines, 0, obj, "", skip)
    lines += _events(events)
    return go_tabwriter("\n".join(lines))


def describe_mutating_webhook_configuration(
    cfg: Mapping[str, Any],
    *,
    events: Sequence[Mapping[str, str]] | None = None,
    short_ca_bundle: bool = False,
) -> str:
    """``kubectl describe mutatingwebhookconfiguration``: the generic layout, with
    ``Webhooks:`` and each webhook's fields nested under it.

    ``short_ca_bundle`` cuts each ``caBundle`` to 16 characters and ``...`` (kubectl
    prints it whole; it is a public certificate, but long and different every run).
    """
    if short_ca_bundle:
        cfg = copy.deepcopy(dict(cfg))
        for wh in cfg.get("webhooks") or []:
            cc = wh.get("clientConfig") or {}
            if isinstance(cc.get("caBundle"), str):
                cc["caBundle"] = _shorten(cc["caBundle"], 16)
    return describe_generic(cfg, events=events)


# kubectl's words for an env var set from a key of a Secret or a ConfigMap.
_KEY_REFS = {"secretKeyRef": "in secret", "configMapKeyRef": "of config map"}
# The kinds of a projected volume's source (the first one a source holds decides), and
# the fields kubectl prints for a ConfigMap or a Secret: its name, whether it is optional.
_PROJECTED_SOURCES = ("serviceAccountToken", "configMap", "downwardAPI", "secret")
_OBJECT_FIELDS = {
    "configMap": ("ConfigMapName", "ConfigMapOptional"),
    "secret": ("SecretName", "SecretOptionalName"),
}


def _env_lines(container: Mapping[str, Any]) -> list[str]:
    env = container.get("env") or []
    if not env:
        return [f"{_level(2)}Environment:\t<none>"]
    lines = [f"{_level(2)}Environment:"]
    for e in env:
        name = e.get("name", "")
        vf = e.get("valueFrom")
        if vf is None:
            lines.append(f"{_level(3)}{name}:\t{e.get('value', '')}")
        elif "fieldRef" in vf:
            ref = vf["fieldRef"]
            lines.append(
                f"{_level(3)}{name}:\t ({ref.get('apiVersion', 'v1')}:{ref.get('fieldPath', '')})"
            )
        elif key_ref := next((k for k in _KEY_REFS if k in vf), None):
            ref = vf[key_ref]
            lines.append(
                f"{_level(3)}{name}:\t<set to the key '{ref.get('key')}' {_KEY_REFS[key_ref]} "
                f"'{ref.get('name')}'>\tOptional: {_go_value(ref.get('optional', False))}"
            )
        else:
            lines.append(f"{_level(3)}{name}:\t<set from {', '.join(sorted(vf))}>")
    return lines


def _mount_lines(container: Mapping[str, Any]) -> list[str]:
    mounts = sorted(container.get("volumeMounts") or [], key=lambda m: str(m.get("mountPath", "")))
    if not mounts:
        return [f"{_level(2)}Mounts:\t<none>"]
    lines = [f"{_level(2)}Mounts:"]
    for m in mounts:
        flags = ["ro" if m.get("readOnly") else "rw"]
        if m.get("subPath"):
            flags.append(f'path="{m["subPath"]}"')
        lines.append(f"{_level(3)}{m.get('mountPath')} from {m.get('name')} ({','.join(flags)})")
    return lines


def _volume_lines(volume: Mapping[str, Any]) -> list[str]:
    lines = [f"{_level(1)}{volume.get('name')}:"]
    l2 = _level(2)
    if "projected" in volume:
        lines.append(
            f"{l2}Type:\tProjected (a volume that contains injected data from multiple sources)"
        )
        for src in volume["projected"].get("sources") or []:
            kind = next((k for k in _PROJECTED_SOURCES if k in src), None)
            if kind == "serviceAccountToken":
                sat = src[kind]
                lines.append(
                    f"{l2}TokenExpirationSeconds:\t{_go_value(sat.get('expirationSeconds', 3600))}"
                )
            elif kind == "downwardAPI":
                lines.append(f"{l2}DownwardAPI:\ttrue")
            elif kind in _OBJECT_FIELDS:
                name_field, optional_field = _OBJECT_FIELDS[kind]
                lines.append(f"{l2}{name_field}:\t{src[kind].get('name')}")
                lines.append(f"{l2}{optional_field}:\t{_go_value(src[kind].get('optional'))}")
    else:
        kinds = sorted(k for k in volume if k != "name")
        lines.append(f"{l2}Type:\t{kinds[0] if kinds else 'unknown'}")
    return lines


def describe_pod_env(pod: Mapping[str, Any]) -> str:
    """The part of ``kubectl describe pod`` that shows what the webhook changed:
    each container's Environment and Mounts, and the Volumes (other fields left out)."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    lines = [
        f"Name:\t{meta.get('name', '')}",
        f"Namespace:\t{meta.get('namespace', '')}",
        f"Service Account:\t{spec.get('serviceAccountName', 'default')}",
    ]
    for title, key in (("Init Containers", "initContainers"), ("Containers", "containers")):
        containers = spec.get(key) or []
        if not containers:
            continue
        lines.append(f"{title}:")
        for c in containers:
            lines.append(f"{_level(1)}{c.get('name')}:")
            lines += _env_lines(c)
            lines += _mount_lines(c)
    volumes = spec.get("volumes") or []
    if volumes:
        lines.append("Volumes:")
        for v in volumes:
            lines += _volume_lines(v)
    else:
        lines.append("Volumes:\t<none>")
    return go_tabwriter("\n".join(lines))
