"""The kubelet stand-in: projected volumes on disk, token renewal, pod status.

For every projected volume of a pod it asks the API server for a pod-bound token
(docs/reference/kubernetes.md §1.5), writes the sources into
``<root>/pods/<uid>/volumes/kubernetes.io~projected/<volume>/`` with the atomic
``..data`` layout the real kubelet uses (§1.6), and reports the pod Running. Then
:meth:`Kubelet.tick` renews each token once it is older than 80% of its TTL or
24 h, rewriting the volume atomically so a reader never sees half a token.

Every TokenRequest the kubelet sends is recorded by the kubelet itself, as the
caller that sent it (``recorder="kubelet"``), granted or not, with the pod's uid and
the volume it is for; each volume write names its ``..`` payload folder, so a later
read of the token (recorded by the exec wrapper's hook with the folder it resolved)
points at the write, and the TokenRequest, that put that token there.

Clock and ids are injected: with a ``ManualClock`` a test moves time and calls
``tick()``; directory names come from the clock and ``ids``, so a seeded lab lays
out the same names every run.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from ..clock import Clock, rfc3339, utc
from ..constants import (
    KUBELET_REFRESH_FRACTION,
    KUBELET_REFRESH_MAX_AGE_S,
    NODE_NAME,
    SA_TOKEN_DEFAULT_EXPIRATION_S,
)
from ..ids import Ids
from ..trace import Trace
from .container import field_ref
from .events import EventRecorder, involved_object

__all__ = [
    "DATA_DIR_NAME",
    "DEFAULT_MODE",
    "MAX_JITTER_S",
    "PROJECTED_PLUGIN_DIR",
    "FileProjection",
    "Kubelet",
    "Renewal",
    "volume_dir",
    "write_atomic",
]

PROJECTED_PLUGIN_DIR = "kubernetes.io~projected"
DATA_DIR_NAME = "..data"
DATA_TMP_NAME = "..data_tmp"
DEFAULT_MODE = 0o644  # 420, what API defaulting puts in projected.defaultMode
TOKEN_MODE_FS_USER = 0o600  # token file when the pod has an fsGroup or a shared runAsUser
TOKEN_MODE_FS_GROUP = 0o640  # ... and fsGroup ownership handling adds group read
PAYLOAD_DIR_MODE = 0o755
MAX_JITTER_S = 10.0  # the token manager's refresh jitter, 0-10 s


def volume_dir(root: Path, pod_uid: str, volume_name: str) -> Path:
    """Where a projected volume lives, as ``/var/lib/kubelet/pods/<uid>/volumes/...``."""
    return Path(root) / "pods" / pod_uid / "volumes" / PROJECTED_PLUGIN_DIR / volume_name


# --- the atomic writer (§1.6) ------------------------------------------------------


@dataclass(frozen=True)
class FileProjection:
    """One file of a volume payload: its bytes and its mode."""

    data: bytes
    mode: int = DEFAULT_MODE


def _current_payload_dir(target: Path) -> Path | None:
    link = target / DATA_DIR_NAME
    try:
        return target / os.readlink(link)
    except (FileNotFoundError, OSError):
        return None


def _unchanged(current: Path, payload: dict[str, FileProjection]) -> bool:
    on_disk = {p.relative_to(current).as_posix(): p for p in current.rglob("*") if p.is_file()}
    if set(on_disk) != set(payload):
        return False
    for rel, proj in payload.items():
        p = on_disk[rel]
        if p.read_bytes() != proj.data or (p.stat().st_mode & 0o777) != proj.mode:
            return False
    return True


def write_atomic(
    target: Path, payload: dict[str, FileProjection], *, now: float, ids: Ids
) -> Path | None:
    """Write ``payload`` into ``target`` with the kubelet's atomic ``..data`` swap.

    Returns the new timestamped payload folder, or None when nothing changed. Steps
    follow the kubelet's AtomicWriter: compare; write a new ``..YYYY_MM_DD_HH_MM_SS.<n>``
    folder; add missing user-visible symlinks into ``..data``; point ``..data_tmp`` at
    the new folder and rename it over ``..data`` (the one atomic step); drop names that
    left the payload; delete the old folder.

    A reader never sees a torn file. Like on a real node, one that resolved the old
    ``..data`` an instant before the swap can find that folder already deleted
    (ENOENT) and should simply read again.
    """
    target.mkdir(parents=True, exist_ok=True)
    old = _current_payload_dir(target)
    if old is not None and old.is_dir() and _unchanged(old, payload):
        return None

    stamp = utc(now).strftime("..%Y_%m_%d_%H_%M_%S.")
    while True:
        new = target / (stamp + ids.digits(10))
        try:
            new.mkdir()
            break
        except FileExistsError:
            continue
    os.chmod(new, PAYLOAD_DIR_MODE)
    for rel, proj in sorted(payload.items()):
        dest = new.joinpath(*PurePosixPath(rel).parts)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, proj.mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(proj.data)
        os.chmod(dest, proj.mode)

    visible = {PurePosixPath(rel).parts[0] for rel in payload}
    for name in sorted(visible):
        link = target / name
        if not link.is_symlink():
            os.symlink(f"{DATA_DIR_NAME}/{name}", link)

    tmp = target / DATA_TMP_NAME
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(new.name, tmp)
    os.replace(tmp, target / DATA_DIR_NAME)

    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in visible and entry.is_symlink():
            entry.unlink()
    if old is not None and old != new and old.exists():
        shutil.rmtree(old)
    return new


# --- the token cache ----------------------------------------------------------------


def _parse_rfc3339(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass
class _Token:
    """A cached TokenRequest answer for one serviceAccountToken source."""

    volume: str
    path: str
    audiences: list[str]
    expiration_seconds: int
    token: str = ""
    issued_at: float = (
        0.0  # expirationTimestamp - spec.expirationSeconds, as the kubelet computes it
    )
    expires_at: float = 0.0  # status.expirationTimestamp
    ttl: int | None = None  # spec.expirationSeconds echoed by the server (None: never refresh)
    renewals: int = 0

    def renew_at(self) -> float | None:
        """When the 80%/24 h rule first asks for a new token (jitter aside)."""
        if self.ttl is None:
            return None
        return min(
            self.issued_at + KUBELET_REFRESH_MAX_AGE_S,
            self.expires_at - (1 - KUBELET_REFRESH_FRACTION) * self.ttl,
        )


@dataclass
class _Pod:
    pod: dict[str, Any]
    tokens: dict[tuple[str, str], _Token] = field(default_factory=dict)
    payload_dirs: dict[str, Path] = field(default_factory=dict)
    running: bool = False
    reported: str | None = None  # the phase last sent to the API server
    start_time: str | None = None


@dataclass(frozen=True)
class Renewal:
    """One token the kubelet replaced during :meth:`Kubelet.tick`."""

    namespace: str
    pod: str
    pod_uid: str
    volume: str
    path: str
    issued_at: float
    expires_at: float
    payload_dir: Path


@dataclass(eq=False, repr=False, kw_only=True)
class Kubelet:
    """Mounts projected volumes for pods, renews their tokens, reports them Running."""

    root: Path
    request_token: Callable[[str, str, dict[str, Any]], dict[str, Any]]
    ca_pem: bytes
    clock: Clock
    ids: Ids
    trace: Trace
    set_status: Callable[[str, str, dict[str, Any]], None] | None = None
    # Where the kubelet posts its events (Pulled, Created, Started); None posts none.
    events: EventRecorder | None = None
    node_name: str = NODE_NAME
    pod_ip: str = "127.0.0.1"
    host_ip: str = "127.0.0.1"
    # The real token manager adds 0-10 s of random jitter; a seeded lab keeps the
    # thresholds exact so its timeline is the same on every run (None: that choice).
    max_jitter_s: float | None = None
    _pods: dict[str, _Pod] = field(default_factory=dict, init=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.max_jitter_s is None:
            self.max_jitter_s = 0.0 if self.ids.seeded else MAX_JITTER_S

    # -- paths ------------------------------------------------------------------
    def host_path(self, pod: dict[str, Any], volume_name: str) -> Path:
        """The host folder that stands for ``volume_name`` of ``pod``."""
        return volume_dir(self.root, pod["metadata"]["uid"], volume_name)

    def host_paths(self, pod: dict[str, Any]) -> dict[str, Path]:
        """Host folders of every projected volume of ``pod`` (for podexec)."""
        return {
            v["name"]: self.host_path(pod, v["name"])
            for v in pod.get("spec", {}).get("volumes") or []
            if "projected" in v
        }

    # -- pod lifecycle ----------------------------------------------------------
    def sync_pod(self, pod: dict[str, Any]) -> None:
        """Mount every projected volume of ``pod`` and report it Running.

        A token that cannot be obtained leaves the pod Pending (ContainerCreating),
        as a failed mount does on a real node; :meth:`tick` tries again.
        """
        with self._lock:
            uid = pod["metadata"]["uid"]
            rec = self._pods.get(uid)
            if rec is None:
                rec = self._pods[uid] = _Pod(pod)
            else:
                rec.pod = pod
            error = self._mount_all(rec)
            self._report(rec, error)

    def forget_pod(self, pod: dict[str, Any]) -> None:
        """Remove the pod's folders and drop its cached tokens (pod deleted)."""
        with self._lock:
            uid = pod["metadata"]["uid"]
            self._pods.pop(uid, None)
            shutil.rmtree(self.root / "pods" / uid, ignore_errors=True)
            self.trace.record(
                "kubelet",
                "token-file",
                "unmount",
                "ok",
                recorder="kubelet",
                pod=pod["metadata"].get("name"),
                uid=uid,
            )

    def pods(self) -> list[str]:
        """Uids of the pods this kubelet has mounted."""
        with self._lock:
            return list(self._pods)

    # -- renewal ----------------------------------------------------------------
    def tick(self) -> list[Renewal]:
        """Renew every token past its refresh point and retry pods not yet Running."""
        renewed: list[Renewal] = []
        with self._lock:
            for rec in list(self._pods.values()):
                if not rec.running:
                    self._report(rec, self._mount_all(rec))
                    continue
                stale = [t for t in rec.tokens.values() if self._needs_refresh(t)]
                if not stale:
                    continue
                fresh = [t for t in stale if self._fetch(rec, t, renewal=True) is None]
                for vol in sorted({t.volume for t in fresh}):
                    new_dir = self._write_volume(rec, vol, renewal=True)
                    renewed.extend(self._renewal(rec, t, new_dir) for t in fresh if t.volume == vol)
        return renewed

    async def run(self, interval: float = 1.0) -> None:
        """Call :meth:`tick` every ``interval`` seconds until cancelled."""
        while True:
            self.tick()
            await asyncio.sleep(interval)

    def token_status(self, pod_uid: str) -> list[dict[str, Any]]:
        """Per token of a pod: file, audiences, TTL, issued, expires, renew-at, renewals."""
        with self._lock:
            rec = self._pods.get(pod_uid)
            if rec is None:
                return []
            out = []
            for tok in rec.tokens.values():
                out.append(
                    {
                        "volume": tok.volume,
                        "path": tok.path,
                        "file": volume_dir(self.root, pod_uid, tok.volume) / tok.path,
                        "audiences": list(tok.audiences),
                        "expiration_seconds": tok.ttl,
                        "issued_at": tok.issued_at,
                        "expires_at": tok.expires_at,
                        "renew_at": tok.renew_at(),
                        "renewals": tok.renewals,
                        "payload_dir": rec.payload_dirs.get(tok.volume),
                    }
                )
            return out

    # -- internals --------------------------------------------------------------
    def _needs_refresh(self, tok: _Token) -> bool:
        # §1.5: refresh when older than 24 h, older than 80% of the TTL, or when the
        # clock went backwards; never when the server did not echo expirationSeconds.
        if tok.ttl is None:
            return False
        now = self.clock.now()
        jitter = 0.0
        max_jitter_s = self.max_jitter_s or 0.0  # set by __post_init__
        if max_jitter_s > 0:
            jitter = max_jitter_s * int(self.ids.digits(3)) / 999
        if now < tok.issued_at:
            return True
        if now > tok.issued_at + KUBELET_REFRESH_MAX_AGE_S - jitter:
            return True
        return now > tok.expires_at - (1 - KUBELET_REFRESH_FRACTION) * tok.ttl - jitter

    def _projected_volumes(self, pod: dict[str, Any]) -> list[dict[str, Any]]:
        return [v for v in pod.get("spec", {}).get("volumes") or [] if "projected" in v]

    def _token_mode(self, pod: dict[str, Any], default_mode: int) -> int:
        # §1.6: with an fsGroup, or one runAsUser shared by every container, the token
        # is written 0600 (fsGroup handling then adds group read); otherwise defaultMode.
        spec = pod.get("spec", {})
        psc = spec.get("securityContext") or {}
        if psc.get("fsGroup") is not None:
            return TOKEN_MODE_FS_GROUP
        users = set()
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            csc = c.get("securityContext") or {}
            users.add(csc.get("runAsUser", psc.get("runAsUser")))
        if len(users) == 1 and None not in users:
            return TOKEN_MODE_FS_USER
        return default_mode

    def _mount_all(self, rec: _Pod) -> str | None:
        """Fetch missing tokens and write every projected volume; the first error, if any."""
        error: str | None = None
        for vol in self._projected_volumes(rec.pod):
            name = vol["name"]
            for src in vol["projected"].get("sources") or []:
                sat = src.get("serviceAccountToken")
                if sat is None:
                    continue
                key = (name, sat["path"])
                tok = rec.tokens.get(key)
                if tok is None:
                    aud = sat.get("audience")
                    tok = _Token(
                        name,
                        sat["path"],
                        [aud] if aud else [],
                        int(sat.get("expirationSeconds") or SA_TOKEN_DEFAULT_EXPIRATION_S),
                    )
                    rec.tokens[key] = tok
                if not tok.token:
                    error = self._fetch(rec, tok, renewal=False) or error
            if all(t.token for t in rec.tokens.values() if t.volume == name):
                self._write_volume(rec, name, renewal=False)
        return error

    def _fetch(self, rec: _Pod, tok: _Token, *, renewal: bool) -> str | None:
        """Ask the API server for a token; None on success, the failure reason otherwise."""
        meta = rec.pod["metadata"]
        ns = meta["namespace"]
        sa = rec.pod.get("spec", {}).get("serviceAccountName") or "default"
        spec: dict[str, Any] = {}
        if tok.audiences:
            spec["audiences"] = list(tok.audiences)
        spec["expirationSeconds"] = tok.expiration_seconds
        spec["boundObjectRef"] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "uid": meta["uid"],
        }
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        call = "renew TokenRequest" if renewal else "TokenRequest"
        facts = {
            "pod": meta["name"],
            "uid": meta["uid"],
            "volume": tok.volume,
            "serviceaccount": sa,
            "audiences": list(tok.audiences),
            "expirationSeconds": tok.expiration_seconds,
        }
        started = time.perf_counter()
        try:
            resp = self.request_token(ns, sa, body)
        except Exception as exc:  # any failure keeps the old token (§1.5)
            reason = str(getattr(exc, "reason", "") or type(exc).__name__)
            self.trace.record(
                "kubelet",
                "apiserver",
                call,
                reason,
                duration_ms=(time.perf_counter() - started) * 1000,
                recorder="kubelet",
                message=str(exc),
                **facts,
            )
            return reason
        self.trace.record(
            "kubelet",
            "apiserver",
            call,
            "ok",
            duration_ms=(time.perf_counter() - started) * 1000,
            recorder="kubelet",
            **facts,
        )
        status = resp.get("status") or {}
        tok.token = status["token"]
        tok.expires_at = _parse_rfc3339(status["expirationTimestamp"])
        echoed = (resp.get("spec") or {}).get("expirationSeconds")
        tok.ttl = int(echoed) if echoed is not None else None
        tok.issued_at = tok.expires_at - (tok.ttl or 0)
        if renewal:
            tok.renewals += 1
        return None

    def _payload(self, rec: _Pod, vol: dict[str, Any]) -> dict[str, FileProjection]:
        projected = vol["projected"]
        default_mode = int(projected.get("defaultMode", DEFAULT_MODE))
        out: dict[str, FileProjection] = {}
        for src in projected.get("sources") or []:
            if "serviceAccountToken" in src:
                sat = src["serviceAccountToken"]
                tok = rec.tokens[(vol["name"], sat["path"])]
                out[sat["path"]] = FileProjection(
                    tok.token.encode(), self._token_mode(rec.pod, default_mode)
                )
            elif "configMap" in src:
                cm = src["configMap"]
                data = self._config_map(cm.get("name", ""))
                if data is None:
                    continue
                items = cm.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] in data:
                        out[item["path"]] = FileProjection(
                            data[item["key"]], int(item.get("mode", default_mode))
                        )
            elif "downwardAPI" in src:
                for item in src["downwardAPI"].get("items") or []:
                    ref = item.get("fieldRef")
                    value = field_ref(rec.pod, ref["fieldPath"]) if ref else None
                    if value is not None:
                        out[item["path"]] = FileProjection(
                            value.encode(), int(item.get("mode", default_mode))
                        )
        return out

    def _config_map(self, name: str) -> dict[str, bytes] | None:
        # Only the root CA config map exists in the lab: the one every namespace gets.
        if name == "kube-root-ca.crt":
            return {"ca.crt": self.ca_pem}
        return None

    def _write_volume(self, rec: _Pod, name: str, *, renewal: bool) -> Path | None:
        vol = next(v for v in self._projected_volumes(rec.pod) if v["name"] == name)
        target = volume_dir(self.root, rec.pod["metadata"]["uid"], name)
        new = write_atomic(target, self._payload(rec, vol), now=self.clock.now(), ids=self.ids)
        if new is not None:
            rec.payload_dirs[name] = new
            self.trace.record(
                "kubelet",
                "token-file",
                "rewrite" if renewal else "write",
                "ok",
                recorder="kubelet",
                pod=rec.pod["metadata"]["name"],
                uid=rec.pod["metadata"]["uid"],
                volume=name,
                payload=new.name,
            )
        return new or rec.payload_dirs.get(name)

    def _renewal(self, rec: _Pod, tok: _Token, new_dir: Path | None) -> Renewal:
        meta = rec.pod["metadata"]
        return Renewal(
            meta["namespace"],
            meta["name"],
            meta["uid"],
            tok.volume,
            tok.path,
            tok.issued_at,
            tok.expires_at,
            new_dir or volume_dir(self.root, meta["uid"], tok.volume),
        )

    def _post_started(self, pod: dict[str, Any]) -> None:
        """The events of starting each container, as the kubelet posts them. No image is
        pulled here: every image counts as present on the node."""
        if self.events is None:
            return
        for c in (pod.get("spec") or {}).get("containers") or []:
            ref = involved_object(pod, "Pod", "v1", f"spec.containers{{{c['name']}}}")
            self.events.record(
                ref,
                "Normal",
                "Pulled",
                f'Container image "{c.get("image", "")}" already present on machine and can '
                "be accessed by the pod",
            )
            self.events.record(ref, "Normal", "Created", f"Created container: {c['name']}")
            self.events.record(ref, "Normal", "Started", f"Started container {c['name']}")

    def _report(self, rec: _Pod, error: str | None) -> None:
        """Send the pod's status: Running once mounted, else Pending/ContainerCreating."""
        now = rfc3339(self.clock.now())
        ready = error is None
        rec.running = ready
        phase = "Running" if ready else "Pending"
        if self.set_status is None or rec.reported == phase:
            return
        rec.reported = phase
        rec.start_time = rec.start_time or now
        spec = rec.pod.get("spec", {})
        flag = "True" if ready else "False"

        def cond(kind: str, value: str) -> dict[str, Any]:
            return {"type": kind, "status": value, "lastProbeTime": None, "lastTransitionTime": now}

        statuses = []
        for c in spec.get("containers") or []:
            state: dict[str, Any]
            if ready:
                state = {"running": {"startedAt": now}}
            else:
                state = {"waiting": {"reason": "ContainerCreating"}}
            statuses.append(
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    # No container runtime runs here; the id says so.
                    "containerID": "irsa-lab://" + self.ids.hex(64).lower() if ready else None,
                    "ready": ready,
                    "started": ready,
                    "restartCount": 0,
                    "state": state,
                    "lastState": {},
                }
            )
        for st in statuses:
            if st["containerID"] is None:
                del st["containerID"]
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": [
                cond("PodReadyToStartContainers", flag),
                cond("Initialized", "True"),
                cond("Ready", flag),
                cond("ContainersReady", flag),
                cond("PodScheduled", "True"),
            ],
            "hostIP": self.host_ip,
            "hostIPs": [{"ip": self.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": rec.start_time,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }
        if not ready:
            # A pod gets its IP once its sandbox runs.
            del status["podIP"], status["podIPs"]
        meta = rec.pod["metadata"]
        self.set_status(meta["namespace"], meta["name"], status)
        if ready:
            self._post_started(rec.pod)
        self.trace.record(
            "kubelet",
            "apiserver",
            "update pod status",
            "ok",
            recorder="kubelet",
            pod=meta["name"],
            phase=status["phase"],
            node=self.node_name,
        )
