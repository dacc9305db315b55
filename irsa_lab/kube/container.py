"""Running a command as a pod's container would: its env, its mounts, mapped to the host.

There is no container runtime in the embedded lab (nor on the ``k8s`` backend, whose
node is the kubelet stand-in). :func:`container_env` reads the pod spec and works out
what the container would see: the env vars in spec order (with ``$(VAR)`` references
expanded as the kubelet does) and each ``volumeMount`` mapped to the host folder the
kubelet stand-in materialised. Every liberty is written down in ``notes`` so the lab
can show it.

:func:`run` is the one place a pod's command is started (``irsa-lab exec`` and
``lab.exec`` reach it through :func:`irsa_lab.in_pod.exec_in_pod`). It makes the pod's
paths resolve by one of two mechanisms (docs/in-pod.md), chosen by
:func:`exec_mechanism`:

- **mount namespace** (Linux where unprivileged user namespaces are allowed): the
  command runs in a new user+mount namespace, uid and gid mapped to the caller, where
  each volume is bind-mounted read-only at its ``mountPath``, as the kubelet does.
  Missing mount points are made on a tmpfs laid over the deepest existing parent,
  which keeps that parent's entries visible (each is bind-mounted back). The env and
  the arguments keep the pod's own paths.
- **path rewriting** (macOS, Ubuntu 24.04's default AppArmor restriction, or
  ``IRSA_LAB_EXEC_MOUNTS=0``): paths into mounts are rewritten to the host folders,
  in the environment and in the arguments (:func:`rewrite_paths`). A path the command
  builds itself (``cd /var/run; cat secrets/...``) does not resolve.

The process starts from a minimal environment: never the caller's own AWS credentials
or ``~/.aws`` files, so the SDK in the child finds exactly what the pod would find.

Given a facts file, :func:`run` also watches the token files it exposes (the paths
``AWS_WEB_IDENTITY_TOKEN_FILE`` and ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` name in
the child): the child gets a ``sitecustomize`` on ``PYTHONPATH`` that installs
:func:`irsa_lab.trace.install_fact_hook`, so a Python program (the aws CLI, boto3)
that opens one of them appends a "read token" fact at that moment, naming the code
that opened it. Nothing is written for a command that never opens the file. The
``sitecustomize`` lives in the private HOME and shadows any other one for that child.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ..constants import ENV_CONTAINER_AUTHORIZATION_TOKEN_FILE, ENV_WEB_IDENTITY_TOKEN_FILE
from ..trace import CONTEXT_ENV, FACTS_ENV, WATCH_ENV

__all__ = [
    "DEFAULT_CONTAINER_ANNOTATION",
    "MOUNTS_ENV",
    "MOUNT_NAMESPACE",
    "REWRITE",
    "ExecPlan",
    "Mechanism",
    "PodProcess",
    "container_env",
    "exec_mechanism",
    "field_ref",
    "minimal_env",
    "pick_container",
    "rewrite_paths",
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
    """What a container would see, and where its volumes are on this machine.

    ``env`` is in spec order, with the pod's own values; ``mounts`` maps container
    paths to host paths; ``rewritten`` lists ``(name, container value, host value)``
    for values :func:`rewrite_paths` moved onto the host (``name`` is an env var or
    ``argv[i]``); ``notes`` explains every difference from a real container.
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
    """Work out env and mounts of ``container`` in ``pod``; ``host_paths`` maps volume names to host folders.

    The env keeps the pod's paths; :func:`run` makes them resolve (or rewrites them).
    """
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

    return ExecPlan(c.get("name", ""), env, mounts, [], notes)


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


# --- path rewriting: the fallback --------------------------------------------------------

# A path starts where no path character precedes it and a mount path ends at "/" or at
# a character that cannot continue a file name (space, quote, "=", ":", end of text).
_PATH_CHAR = r"[\w.\-/~]"


def _path_pattern(mounts: Sequence[str]) -> re.Pattern[str]:
    # Longest first, so a nested mount wins over its parent.
    names = "|".join(re.escape(m) for m in sorted(mounts, key=len, reverse=True))
    return re.compile(rf"(?<!{_PATH_CHAR})({names})(?=/|[^\w.\-~]|$)")


def rewrite_paths(plan: ExecPlan, argv: Sequence[str]) -> tuple[ExecPlan, list[str]]:
    """The fallback mechanism: pod paths in the env and in ``argv`` moved onto the host.

    Each occurrence of a mount path (as a whole path or inside a value such as
    ``--file=/var/run/...``) becomes the host folder the kubelet writes. Returns the
    plan with the rewritten env, ``rewritten`` and one note per change, and the new argv.
    """
    mounts = {m.rstrip("/"): str(h) for m, h in plan.mounts.items() if m.rstrip("/")}
    if not mounts:
        return plan, list(argv)
    pattern = _path_pattern(list(mounts))

    def sub(text: str) -> str:
        return pattern.sub(lambda m: mounts[m.group(1)], text)

    rewritten = list(plan.rewritten)
    notes = list(plan.notes)
    env = dict(plan.env)
    for name, value in plan.env.items():
        new = sub(value)
        if new != value:
            env[name] = new
            rewritten.append((name, value, new))
            notes.append(
                f"{name} pointed into a mount ({value}); it now names the host folder the kubelet writes: {new}"
            )
    args = list(argv)
    for i, arg in enumerate(argv):
        new = sub(arg)
        if new != arg:
            args[i] = new
            rewritten.append((f"argv[{i}]", arg, new))
            notes.append(
                f"argument {i} named a path in the pod ({arg}); it now names the host folder: {new}"
            )
    return replace(plan, env=env, rewritten=rewritten, notes=notes), args


# --- the mount namespace -------------------------------------------------------------------

MOUNTS_ENV = "IRSA_LAB_EXEC_MOUNTS"  # "0" forces path rewriting (docs/in-pod.md)
MOUNT_NAMESPACE = "mount-namespace"
REWRITE = "rewrite"
_OFF = frozenset({"0", "false", "no", "off"})

# Run as `python -I -S -c HELPER SPEC STATUS_FD ARGV...` with the child's env: enter a new
# user+mount namespace (uid and gid mapped to the caller's own), bind each volume
# read-only at its mountPath, then exec ARGV. Self-contained (stdlib only, no site, no
# PYTHONPATH) so the pod's env cannot change it. It reports on STATUS_FD: "ready", or
# "setup\t<why>" (nothing ran: the caller falls back to rewriting), or "exec\t<errno>",
# and "hidden\t<path>" for an entry of a shadowed folder it could not show again.
_HELPER = r"""
import ctypes, json, os, sys

spec = json.loads(sys.argv[1])
status = int(sys.argv[2])
argv = sys.argv[3:]
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 1, 32, 4096, 8192, 1 << 14, 1 << 18
KEEP = 2 | 4 | 8 | 1024 | 2048  # nosuid nodev noexec noatime nodiratime: same bits in statvfs
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = (ctypes.c_char_p,) * 3 + (ctypes.c_ulong, ctypes.c_char_p)


def say(text):
    os.write(status, (text + "\n").encode())


def mount(src, dst, fstype, flags, data=None):
    enc = lambda v: None if v is None else v.encode()
    if libc.mount(enc(src), enc(dst), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {dst}: {os.strerror(err)}")


def bind(src, dst, readonly):
    mount(src, dst, None, MS_BIND | MS_REC)
    if readonly:
        # A user namespace may not clear a flag it inherited: keep the existing ones.
        flag = os.statvfs(dst).f_flag
        keep = (flag & KEEP) | ((1 << 21) if flag & 4096 else 0)  # relatime
        mount(None, dst, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)


made = set()  # folders on our own tmpfs, where mount points may be created


def shadow(folder):
    # A tmpfs over `folder` that shows what was there (each entry bound back) and
    # takes new mount points, without writing to the real folder.
    if folder == "/":
        raise OSError(0, "a mount point directly under / is not supported")
    stage = spec["stage"]
    os.makedirs(stage, exist_ok=True)
    mode = os.stat(folder).st_mode & 0o7777
    mount("tmpfs", stage, "tmpfs", 0, f"mode={mode:o},size=1m")
    for entry in os.scandir(folder):
        dst = os.path.join(stage, entry.name)
        if entry.is_symlink():
            os.symlink(os.readlink(entry.path), dst)
            continue
        if entry.is_dir():
            os.mkdir(dst)
        else:
            os.close(os.open(dst, os.O_CREAT | os.O_WRONLY, 0o600))
        try:
            bind(entry.path, dst, False)
        except OSError:
            (os.rmdir if entry.is_dir() else os.unlink)(dst)
            say(f"hidden\t{entry.path}")
    mount(stage, folder, None, MS_MOVE)
    made.add(folder)


def mount_point(target, is_dir):
    if os.path.isdir(target) == is_dir and os.path.exists(target):
        return
    parts = target.strip("/").split("/")
    i = len(parts)
    while i > 0 and not os.path.exists("/" + "/".join(parts[:i])):
        i -= 1
    base = os.path.realpath("/" + "/".join(parts[:i]))
    if i == len(parts):
        raise OSError(0, f"{target} exists and is not a {'folder' if is_dir else 'file'}")
    if base not in made:
        shadow(base)
    for j, name in enumerate(parts[i:], start=i + 1):
        path = os.path.join(base, name)
        if j < len(parts) or is_dir:
            os.mkdir(path)
            made.add(path)
        else:
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        base = path


try:
    uid, gid = os.getuid(), os.getgid()
    if libc.unshare(0x10000000 | 0x00020000) != 0:  # CLONE_NEWUSER | CLONE_NEWNS
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    for m in spec["mounts"]:
        mount_point(m["target"], m["dir"])
        bind(m["source"], m["target"], True)
except Exception as exc:
    why = str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        why = exc.strerror + (f": {exc.filename}" if exc.filename else "")
    say(f"setup\t{why}")
    sys.exit(125)
say("ready")
if not argv:
    sys.exit(0)
os.set_inheritable(status, False)
try:
    os.execvp(argv[0], argv)
except OSError as exc:
    say(f"exec\t{exc.errno}\t{exc.strerror}")
    sys.exit(127)
"""


@dataclass(frozen=True)
class Mechanism:
    """How the pod's paths resolve for one exec: :data:`MOUNT_NAMESPACE` or :data:`REWRITE`."""

    name: str
    reason: str

    @property
    def mounts(self) -> bool:
        return self.name == MOUNT_NAMESPACE

    def note(self) -> str:
        """The one line ``irsa-lab exec`` prints about it."""
        if self.mounts:
            return (
                "mechanism: mount namespace: the pod's volumes are bind-mounted read-only at "
                "their mountPath in a private user+mount namespace, so the pod's own paths "
                "resolve (docs/in-pod.md)"
            )
        return (
            f"mechanism: path rewriting ({self.reason}): pod paths in the arguments and the "
            "environment are rewritten to the kubelet's host folders; a path the command "
            "builds itself does not resolve (docs/in-pod.md)"
        )


@dataclass
class _Status:
    """What the helper reported on its status pipe."""

    ready: bool = False
    setup_error: str | None = None
    exec_error: tuple[int, str] | None = None
    hidden: list[str] = field(default_factory=list)


def _read_status(fd: int) -> _Status:
    chunks = []
    while chunk := os.read(fd, 4096):
        chunks.append(chunk)
    status = _Status()
    for line in b"".join(chunks).decode(errors="replace").splitlines():
        kind, _, rest = line.partition("\t")
        if kind == "ready":
            status.ready = True
        elif kind == "setup":
            status.setup_error = rest
        elif kind == "hidden":
            status.hidden.append(rest)
        elif kind == "exec":
            code, _, text = rest.partition("\t")
            status.exec_error = (int(code), text)
    return status


def _helper(
    spec: Mapping[str, Any],
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None,
    cwd: str | os.PathLike[str] | None,
    timeout: float | None,
    capture: bool,
) -> tuple[subprocess.CompletedProcess[str], _Status]:
    """Run ``argv`` through :data:`_HELPER`; the process and what it reported."""
    read, write = os.pipe()
    try:
        cmd = [sys.executable, "-I", "-S", "-c", _HELPER, json.dumps(spec), str(write), *argv]
        done = subprocess.run(
            cmd,
            env=env,
            cwd=cwd,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
            pass_fds=(write,),
        )
        os.close(write)
        write = -1
        return done, _read_status(read)
    finally:
        if write >= 0:
            os.close(write)
        os.close(read)


@functools.lru_cache(maxsize=1)
def _probe() -> str | None:
    """Why a mount namespace cannot be set up here, or None when it can (tried once)."""
    with tempfile.TemporaryDirectory(prefix="irsa-lab-probe-") as tmp:
        # The same steps as a pod's mount: a tmpfs over an existing folder (root), a
        # missing mount point made on it, a read-only bind of the volume there.
        for name in ("root", "volume", "stage"):
            Path(tmp, name).mkdir()
        target = Path(tmp, "root", "var", "run", "secrets")
        spec = {
            "stage": str(Path(tmp, "stage")),
            "mounts": [{"target": str(target), "source": str(Path(tmp, "volume")), "dir": True}],
        }
        try:
            done, status = _helper(spec, [], env=None, cwd=tmp, timeout=30, capture=True)
        except (OSError, subprocess.SubprocessError) as exc:
            return str(exc)
    if status.ready and done.returncode == 0:
        return None
    return status.setup_error or (done.stderr.strip().splitlines() or ["the helper failed"])[-1]


def exec_mechanism(environ: Mapping[str, str] | None = None) -> Mechanism:
    """The mechanism :func:`run` uses here: a mount namespace where the kernel allows
    unprivileged user namespaces, else path rewriting (detected at run time, once)."""
    env = os.environ if environ is None else environ
    forced = env.get(MOUNTS_ENV, "").strip()
    if forced.lower() in _OFF:
        return Mechanism(REWRITE, f"{MOUNTS_ENV}={forced} asks for it")
    if not sys.platform.startswith("linux"):
        return Mechanism(REWRITE, f"{sys.platform} has no Linux mount namespaces")
    why = _probe()
    if why is not None:
        return Mechanism(REWRITE, f"user namespaces are refused here: {why}")
    return Mechanism(MOUNT_NAMESPACE, "unprivileged user namespaces are allowed here")


def _mount_spec(plan: ExecPlan, stage: Path) -> tuple[dict[str, Any], list[str]]:
    mounts: list[dict[str, Any]] = []
    notes: list[str] = []
    # Parents before children, as the kubelet orders nested mounts.
    for target, source in sorted(plan.mounts.items(), key=lambda kv: kv[0].count("/")):
        if not source.exists():
            notes.append(f"{target}: the kubelet has not written {source} yet; not mounted")
            continue
        mounts.append({"target": target, "source": str(source), "dir": source.is_dir()})
    return {"stage": str(stage), "mounts": mounts}, notes


def _resolved_notes(plan: ExecPlan) -> list[str]:
    """Where each env value that names a pod path is on the host, in the mount namespace."""
    notes = []
    by_length = sorted(plan.mounts, key=len, reverse=True)
    for name, value in plan.env.items():
        mount = next((m for m in by_length if _under(value, m)), None)
        if mount is not None:
            notes.append(
                f"{name}={value}: the pod's own path; {mount} is the kubelet's host folder "
                f"{plan.mounts[mount]}, mounted read-only"
            )
    return notes


# --- the one exec path ------------------------------------------------------------------


class PodProcess(subprocess.CompletedProcess[str]):
    """A finished pod command, with the :class:`Mechanism` used and every note about it."""

    def __init__(
        self, done: subprocess.CompletedProcess[str], mechanism: Mechanism, notes: list[str]
    ) -> None:
        super().__init__(done.args, done.returncode, done.stdout, done.stderr)
        self.mechanism = mechanism
        self.notes = notes


def watched_token_files(plan: ExecPlan) -> dict[str, str]:
    """Path the child opens -> container path, for the token files it is pointed at.

    A token file env var that names a path inside a mount (the mount namespace keeps
    it) is watched as it is; one that was rewritten is watched at its host path.
    """
    watch = {
        plan.env[name]: plan.env[name]
        for name in TOKEN_FILE_ENV
        if name in plan.env and any(_under(plan.env[name], m) for m in plan.mounts)
    }
    watch.update(
        {host: container for name, container, host in plan.rewritten if name in TOKEN_FILE_ENV}
    )
    return watch


def _fact_env(
    home: Path, facts: Path, watch: Mapping[str, str], context: Mapping[str, str]
) -> dict[str, str]:
    site = home / SITE_DIR_NAME
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return {
        "PYTHONPATH": str(site),
        FACTS_ENV: str(facts),
        WATCH_ENV: json.dumps(dict(watch)),
        CONTEXT_ENV: json.dumps(dict(context)),
    }


def _child_env(
    plan: ExecPlan,
    home: Path,
    extra_env: Mapping[str, str],
    base_env: Mapping[str, str] | None,
    facts: Path | None,
    context: Mapping[str, str] | None,
) -> dict[str, str]:
    env = minimal_env(home, base_env)
    env.update(plan.env)
    env.update(extra_env)
    watch = watched_token_files(plan)
    if facts is not None and watch:
        hook = _fact_env(home, facts, watch, context or {})
        if env.get("PYTHONPATH"):
            hook["PYTHONPATH"] += os.pathsep + env["PYTHONPATH"]
        env.update(hook)
    return env


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
    mechanism: Mechanism | None = None,
    notify: Callable[[str], None] | None = None,
) -> PodProcess:
    """Run ``argv`` with the pod's env and paths; output captured as text unless ``capture`` is False.

    The environment is :func:`minimal_env`, then the pod's env, then ``extra_env``
    (the stack's AWS endpoint settings). HOME is a fresh folder removed afterwards.
    ``mechanism`` (default :func:`exec_mechanism`) says how the pod's paths resolve; a
    mount namespace that cannot be set up for this pod falls back to rewriting before
    anything ran. Each note (the mechanism first, then the plan's) goes to ``notify`` as
    it is known and into the result's ``notes``. With ``facts``, opens of the token
    files (:func:`watched_token_files`) are recorded there by the child itself, each
    with ``context`` (what the caller knows of the pod).
    """
    mech = mechanism or exec_mechanism()
    notes: list[str] = []

    def note(text: str) -> None:
        notes.append(text)
        if notify is not None:
            notify(text)

    note(mech.note())
    for text in plan.notes:
        note(text)
    home = Path(tempfile.mkdtemp(prefix="irsa-lab-home-"))
    try:
        workdir = cwd if cwd is not None else home
        if mech.mounts and plan.mounts:
            spec, skipped = _mount_spec(plan, home / ".irsa-lab-mnt")
            for text in [*skipped, *_resolved_notes(plan)]:
                note(text)
            env = _child_env(plan, home, extra_env, base_env, facts, context)
            done, status = _helper(
                spec, argv, env=env, cwd=workdir, timeout=timeout, capture=capture
            )
            if status.exec_error is not None:
                code, text = status.exec_error
                raise OSError(code, text, argv[0])
            for path in status.hidden:
                note(f"{path} is hidden from the command (a tmpfs for mount points covers it)")
            if status.ready:
                return PodProcess(
                    subprocess.CompletedProcess(
                        list(argv), done.returncode, done.stdout, done.stderr
                    ),
                    mech,
                    notes,
                )
            why = status.setup_error or "the helper stopped before the command started"
            mech = Mechanism(REWRITE, f"the mount namespace could not be set up: {why}")
            note(mech.note())
        moved, args = rewrite_paths(plan, argv)
        for text in moved.notes[len(plan.notes) :]:
            note(text)
        env = _child_env(moved, home, extra_env, base_env, facts, context)
        done = subprocess.run(
            args,
            env=env,
            cwd=workdir,
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )
        return PodProcess(done, mech, notes)
    finally:
        shutil.rmtree(home, ignore_errors=True)
