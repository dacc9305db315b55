"""Running a command as a pod's container would: its env, its mounts, mapped to the host.

There is no container runtime in the embedded lab. :func:`container_env` reads the
pod spec and works out what the container would see: the env vars in spec order
(with ``$(VAR)`` references expanded as the kubelet does) and each ``volumeMount``
mapped to the host folder the kubelet stand-in materialised. Env values that point
into a mount (``AWS_WEB_IDENTITY_TOKEN_FILE``) are rewritten to the host path, and
every such liberty is written down in ``notes`` so the lab can show it.

:func:`run` starts the process from a minimal environment: never the caller's own
AWS credentials or ``~/.aws`` files, so the SDK in the child finds exactly what the
pod would find. It is the one place a pod's command is started: ``irsa-lab exec`` and
``lab.exec`` reach it through :func:`irsa_lab.in_pod.exec_in_pod`.

Given a facts file, :func:`run` also watches the token files it exposes (the host
paths that ``AWS_WEB_IDENTITY_TOKEN_FILE`` and ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE``
were rewritten to): the child gets a ``sitecustomize`` on ``PYTHONPATH`` that installs
:func:`irsa_lab.trace.install_fact_hook`, so a Python program (the aws CLI, boto3)
that opens one of them appends a "read token" fact at that moment, naming the code
that opened it. Nothing is written for a command that never opens the file. The
``sitecustomize`` lives in the private HOME and shadows any other one for that child.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..constants import ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE, ENV_WEB_IDENTITY_TOKEN_FILE
from ..trace import CONTEXT_ENV, FACTS_ENV, WATCH_ENV

__all__ = [
    "DEFAULT_CONTAINER_ANNOTATION",
    "ExecPlan",
    "container_env",
    "field_ref",
    "minimal_env",
    "pick_container",
    "run",
    "watched_token_files",
]

# kubectl exec picks this container when -c is not given, else the first one.
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"

# Env names whose files, once rewritten to the host, the exec wrapper watches.
TOKEN_FILE_ENV = (ENV_WEB_IDENTITY_TOKEN_FILE, ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE)
SITE_DIR_NAME = ".irsa-lab-site"
# Imported by the child's Python at start-up; a Python without a usable irsa_lab
# records nothing and runs as it would have.
SITECUSTOMIZE = """\
# Written by irsa-lab exec: record when this process opens the pod's token file.
try:
    from irsa_lab.trace import install_fact_hook

    install_fact_hook()
except Exception:
    pass
"""

# Env names that would hand the child the caller's identity instead of the pod's.
_CREDENTIAL_ENV = re.compile(r"^AWS_")


@dataclass(frozen=True)
class ExecPlan:
    """What a container would see, mapped onto this machine.

    ``env`` is in spec order; ``mounts`` maps container paths to host paths;
    ``rewritten`` lists ``(name, container value, host value)`` for env values moved
    onto the host; ``notes`` explains every difference from a real container.
    """

    container: str
    env: dict[str, str]
    mounts: dict[str, Path]
    rewritten: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def pick_container(pod: dict[str, Any], container: str | None) -> dict[str, Any]:
    """The container spec named ``container``, or the default one as kubectl picks it."""
    containers = pod.get("spec", {}).get("containers") or []
    if not containers:
        raise ValueError("the pod has no containers")
    if container is None:
        container = (pod.get("metadata", {}).get("annotations") or {}).get(
            DEFAULT_CONTAINER_ANNOTATION
        )
        if container is None:
            return dict(containers[0])
    for c in containers:
        if c.get("name") == container:
            return dict(c)
    name = pod.get("metadata", {}).get("name", "")
    raise ValueError(f"container {container} is not valid for pod {name}")


def _quoted_map(values: Mapping[str, str]) -> str:
    # The downward API writes labels and annotations as sorted key="value" lines.
    return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))


_KEYED = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def field_ref(pod: dict[str, Any], path: str) -> str | None:
    """The value of a downward-API ``fieldRef.fieldPath`` for ``pod``, None when unsupported."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        "spec.nodeName": spec.get("nodeName"),
        "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        value = simple[path]
        return "" if value is None else str(value)
    if path in ("metadata.labels", "metadata.annotations"):
        return _quoted_map(meta.get(path.split(".")[1]) or {})
    m = _KEYED.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    return None


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def _expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes env expansion: ``$(NAME)`` of an earlier var, ``$$`` for ``$``.

    A reference to an unknown name stays as written, as the kubelet leaves it.
    """

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _REF.sub(sub, value)


def _under(path: str, mount: str) -> bool:
    mount = mount.rstrip("/") or "/"
    return path == mount or path.startswith(mount.rstrip("/") + "/")


def container_env(
    pod: dict[str, Any], container: str | None, *, host_paths: Mapping[str, Path]
) -> ExecPlan:
    """Work out env and mounts of ``container`` in ``pod``; ``host_paths`` maps volume names to host folders."""
    c = pick_container(pod, container)
    notes: list[str] = []
    env: dict[str, str] = {}
    if c.get("envFrom"):
        notes.append("envFrom is not supported by the lab: those variables are not set")
    for item in c.get("env") or []:
        name = item["name"]
        if "value" in item or "valueFrom" not in item:
            env[name] = _expand(str(item.get("value") or ""), env)
            continue
        source = item["valueFrom"]
        ref = source.get("fieldRef")
        value = field_ref(pod, ref["fieldPath"]) if ref else None
        if value is None:
            kind = next(iter(source), "valueFrom")
            notes.append(f"{name}: valueFrom.{kind} is not supported by the lab; left unset")
            continue
        env[name] = value

    mounts: dict[str, Path] = {}
    volumes = {v.get("name"): v for v in pod.get("spec", {}).get("volumes") or []}
    for vm in c.get("volumeMounts") or []:
        vname = vm["name"]
        mount_path = vm["mountPath"]
        host = host_paths.get(vname)
        if host is None:
            kind = next((k for k in volumes.get(vname, {}) if k != "name"), "unknown")
            notes.append(
                f"volume {vname} ({kind}) has no host folder in the lab: {mount_path} is not available"
            )
            continue
        sub = vm.get("subPath")
        mounts[mount_path] = Path(host, *PurePosixPath(sub).parts) if sub else Path(host)

    rewritten: list[tuple[str, str, str]] = []
    # Longest mount first, so a nested mount wins over its parent.
    by_length = sorted(mounts, key=len, reverse=True)
    for name, value in list(env.items()):
        for mount_path in by_length:
            if _under(value, mount_path):
                rest = value[len(mount_path.rstrip("/")) :].lstrip("/")
                new = str(mounts[mount_path] / rest) if rest else str(mounts[mount_path])
                env[name] = new
                rewritten.append((name, value, new))
                notes.append(
                    f"{name} pointed into the mount {mount_path}; it now names the host folder the kubelet writes: {new}"
                )
                break
    return ExecPlan(c.get("name", ""), env, mounts, rewritten, notes)


def minimal_env(home: Path, base_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a child starts from: PATH, HOME (private), LANG, TZ, and no AWS_*.

    ``base_env`` replaces the caller's environment as the source of PATH and LANG
    (and may add more names); AWS_* names are dropped from it either way.
    """
    source = os.environ if base_env is None else base_env
    if base_env is None:
        env = {
            "PATH": source.get("PATH", os.defpath),
            "LANG": source.get("LANG", "C.UTF-8"),
        }
    else:
        env = {k: v for k, v in base_env.items() if not _CREDENTIAL_ENV.match(k)}
        env.setdefault("PATH", os.defpath)
        env.setdefault("LANG", "C.UTF-8")
    env.setdefault("TZ", "UTC")
    # A private HOME: no ~/.aws/config or ~/.aws/credentials of the caller leaks in.
    env["HOME"] = str(home)
    return env


def watched_token_files(plan: ExecPlan) -> dict[str, str]:
    """Host path -> container path of the token files the child is pointed at."""
    return {host: container for name, container, host in plan.rewritten if name in TOKEN_FILE_ENV}


def _fact_env(
    home: Path, facts: Path, watch: Mapping[str, str], context: Mapping[str, str]
) -> dict[str, str]:
    site = home / SITE_DIR_NAME
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {
        "PYTHONPATH": str(site),
        FACTS_ENV: str(facts),
        WATCH_ENV: json.dumps(dict(watch)),
        CONTEXT_ENV: json.dumps(dict(context)),
    }


def run(
    plan: ExecPlan,
    argv: Sequence[str],
    *,
    extra_env: Mapping[str, str],
    base_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    capture: bool = True,
    facts: Path | None = None,
    context: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with the pod's env; output captured as text unless ``capture`` is False.

    The environment is :func:`minimal_env`, then the pod's env, then ``extra_env``
    (the stack's AWS endpoint settings). HOME is a fresh folder removed afterwards.
    With ``facts``, opens of the token files (:func:`watched_token_files`) are recorded
    there by the child itself, each with ``context`` (what the caller knows of the pod).
    """
    home = Path(tempfile.mkdtemp(prefix="irsa-lab-home-"))
    try:
        env = minimal_env(home, base_env)
        env.update(plan.env)
        env.update(extra_env)
        watch = watched_token_files(plan)
        if facts is not None and watch:
            hook = _fact_env(home, facts, watch, context or {})
            if env.get("PYTHONPATH"):
                hook["PYTHONPATH"] += os.pathsep + env["PYTHONPATH"]
            env.update(hook)
        return subprocess.run(
            list(argv),
            env=env,
            cwd=cwd if cwd is not None else home,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
