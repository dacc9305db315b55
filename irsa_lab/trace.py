"""One shared record of what every component received and answered.

Stage 4 draws its sequence diagram from this, so components record facts, not
guesses: who called, which call, the outcome, and how long it took. Each event is
recorded by a component that took part in the step, and names it as ``recorder``
when it says so: the caller (the kubelet for its TokenRequest, STS's key fetcher for
its fetches) or the server, which names the caller only as far as it can tell who
that is (the OIDC host says ``unknown`` rather than guess).

Facts from other processes
--------------------------
Some steps happen outside the lab's process: the AWS SDK reading the pod's token
runs in the child that ``irsa-lab exec`` (or ``lab.exec``) started. The exec wrapper
gives that child, through ``PYTHONPATH``, a ``sitecustomize`` that calls
:func:`install_fact_hook`: a Python audit hook that sees every ``open()`` of the
process and, when the file opened is the token file the wrapper exposed, appends
one JSON line to the state directory's facts file (:func:`facts_path`) at that very
moment, with the real opener (the module and function that called ``open``, e.g.
``botocore.utils.FileWebIdentityTokenLoader.__call__``) and the wall-clock time. A
command that never opens the file (``true``, ``cat`` of another file) adds nothing;
a program that is not Python (``cat`` of the token) is not observed, so nothing is
recorded for it either: the trace holds fewer facts, never a guessed one.

A :class:`Trace` that :meth:`Trace.watch`\\ es that file merges new lines whenever it
is read. Every event carries ``wall``, the real time it was recorded at (``at`` is the
lab's injected clock, stopped in a deterministic lab), and events are kept in
``wall`` order, so a fact from the child lands between the steps that came before
and after it, whatever its ``seq``. A fact's ``at`` is the lab clock when it was
merged.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clock import Clock, SystemClock

__all__ = [
    "CONTEXT_ENV",
    "FACTS_ENV",
    "FACTS_FILE",
    "SDK_PACKAGES",
    "WATCH_ENV",
    "Trace",
    "TraceEvent",
    "facts_path",
    "install_fact_hook",
    "write_fact",
]

FACTS_FILE = "trace-facts.jsonl"
# Set by the exec wrapper in the child's env: where to append facts, which files to
# watch (JSON: host path -> the path the container sees), and what the wrapper knows
# of the pod (JSON: pod, namespace, uid, container), copied into every fact.
FACTS_ENV = "IRSA_LAB_TRACE_FACTS"
WATCH_ENV = "IRSA_LAB_TRACE_WATCH"
CONTEXT_ENV = "IRSA_LAB_TRACE_CONTEXT"
# An opener in one of these top-level packages is the AWS SDK; any other is "pod".
SDK_PACKAGES = frozenset({"botocore", "boto3", "awscli", "aiobotocore", "s3transfer"})
# Frames between the code that opened a file and the audit hook that are not the opener.
_PLUMBING = frozenset({__name__, "io", "_io", "_pyio", "codecs", "pathlib", "builtins"})


def facts_path(state_dir: Path | str) -> Path:
    """The facts file of a lab's state directory."""
    return Path(state_dir) / FACTS_FILE


@dataclass(frozen=True)
class TraceEvent:
    """One step: ``source`` asked ``target`` for ``call`` and got ``outcome``.

    ``outcome`` is ``"ok"`` or the error code the target answered with (for example
    ``"AccessDenied"``). ``detail`` holds small facts worth showing (role, audience,
    the failed condition); never a secret. ``recorder`` is the component that
    recorded the event, when it said (``""`` otherwise); ``wall`` is the real time it
    was recorded at, which orders events across processes.
    """

    seq: int
    at: float
    source: str
    target: str
    call: str
    outcome: str
    duration_ms: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)
    recorder: str = ""
    wall: float = 0.0

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


@dataclass
class _Watched:
    path: Path
    offset: int


class Trace:
    """A thread-safe, bounded list of :class:`TraceEvent`, in the order they happened.

    ``clock`` stamps ``at`` (the lab's time); ``wall_clock`` stamps ``wall`` and must
    be the real time, comparable with other processes' ``time.time()``.
    """

    def __init__(
        self,
        clock: Clock | None = None,
        limit: int = 10_000,
        *,
        wall_clock: Clock | None = None,
    ) -> None:
        self._clock = clock or SystemClock()
        self._wall = wall_clock or SystemClock()
        self._events: list[TraceEvent] = []
        self._lock = threading.Lock()
        self._seq = 0
        self._limit = limit
        self._watched: dict[Path, _Watched] = {}

    def record(
        self,
        source: str,
        target: str,
        call: str,
        outcome: str = "ok",
        *,
        duration_ms: float = 0.0,
        recorder: str = "",
        **detail: Any,
    ) -> TraceEvent:
        with self._lock:
            return self._add(
                source,
                target,
                call,
                outcome,
                duration_ms,
                dict(detail),
                recorder,
                self._wall.now(),
            )

    def watch(self, path: Path | str) -> None:
        """Merge the facts other processes append to ``path`` from now on (idempotent).

        Lines already in the file belong to earlier runs and are skipped.
        """
        p = Path(path)
        with self._lock:
            if p in self._watched:
                return
            try:
                size = p.stat().st_size
            except FileNotFoundError:
                size = 0
            self._watched[p] = _Watched(p, size)

    def mark(self) -> int:
        """The sequence number of the last event; pass it to :meth:`since`."""
        with self._lock:
            self._merge()
            return self._seq

    def since(self, mark: int) -> list[TraceEvent]:
        with self._lock:
            self._merge()
            return [e for e in self._events if e.seq > mark]

    def events(self) -> list[TraceEvent]:
        with self._lock:
            self._merge()
            return list(self._events)

    def clear(self) -> None:
        with self._lock:
            self._merge()
            self._events.clear()

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self.events())

    def __len__(self) -> int:
        with self._lock:
            self._merge()
            return len(self._events)

    # -- internals (lock held) ----------------------------------------------------------
    def _add(
        self,
        source: str,
        target: str,
        call: str,
        outcome: str,
        duration_ms: float,
        detail: dict[str, Any],
        recorder: str,
        wall: float,
    ) -> TraceEvent:
        self._seq += 1
        ev = TraceEvent(
            self._seq,
            self._clock.now(),
            source,
            target,
            call,
            outcome,
            round(duration_ms, 3),
            detail,
            recorder,
            wall,
        )
        # Keep wall order: a fact merged late goes back to where it happened.
        i = len(self._events)
        while i > 0 and self._events[i - 1].wall > wall:
            i -= 1
        self._events.insert(i, ev)
        if len(self._events) > self._limit:
            del self._events[: len(self._events) - self._limit]
        return ev

    def _merge(self) -> None:
        for w in self._watched.values():
            try:
                with open(w.path, "rb") as fh:
                    if os.fstat(fh.fileno()).st_size < w.offset:
                        w.offset = 0  # the file was replaced
                    fh.seek(w.offset)
                    data = fh.read()
            except FileNotFoundError:
                continue
            # Only whole lines: a writer may be half-way through one.
            complete = data[: data.rfind(b"\n") + 1]
            w.offset += len(complete)
            for line in complete.splitlines():
                fact = _parse_fact(line)
                if fact is not None:
                    self._add(*fact)


def _parse_fact(
    line: bytes,
) -> tuple[str, str, str, str, float, dict[str, Any], str, float] | None:
    try:
        f = json.loads(line)
        out = (
            str(f["source"]),
            str(f["target"]),
            str(f["call"]),
            str(f.get("outcome", "ok")),
            float(f.get("duration_ms", 0.0)),
            dict(f.get("detail") or {}),
            str(f.get("recorder", "")),
            float(f["wall"]),
        )
    except (ValueError, KeyError, TypeError):
        return None  # not a fact this version writes: skipped, never guessed at
    return out


def write_fact(path: Path | str, fact: Mapping[str, Any]) -> None:
    """Append one fact (``source``, ``target``, ``call``, ``outcome``, ``wall``,
    ``recorder``, ``detail``) to a facts file, as one line in one ``write``."""
    line = (json.dumps(dict(fact), separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# --- the child's side: the audit hook -------------------------------------------------


def _where(frame: Any) -> str:
    if frame is None:
        return ""
    return f"{frame.f_globals.get('__name__', '')}.{frame.f_code.co_qualname}"


def _opener(frame: Any) -> tuple[str, str]:
    """``module.function`` of the first frame that is not file-opening plumbing (the
    opener), and of the frame that called it (why it opened the file)."""
    while frame is not None and frame.f_globals.get("__name__", "") in _PLUMBING:
        frame = frame.f_back
    return _where(frame), _where(None if frame is None else frame.f_back)


def install_fact_hook(environ: Mapping[str, str] | None = None) -> bool:
    """In a child started by the exec wrapper: record each open of a watched file.

    Reads :data:`FACTS_ENV`, :data:`WATCH_ENV` and :data:`CONTEXT_ENV`; does nothing
    (and returns False) without them. The fact is ``<sdk|pod> -> token-file: read
    token``, recorded by ``exec-hook``, with the path the container sees, the opener
    and its caller (the aws CLI v2 reads the token twice: for its credential cache key,
    then for the call), the process name, the ``..data`` payload folder it resolved to
    (which names the kubelet write that put the token there) and the outcome: ``ok``,
    or the error the open is about to raise (the audit event comes just before the
    open itself). A failure inside the hook never disturbs the process.
    """
    env = os.environ if environ is None else environ
    facts = env.get(FACTS_ENV)
    watch_text = env.get(WATCH_ENV)
    if not facts or not watch_text:
        return False
    watch = {os.path.abspath(h): c for h, c in json.loads(watch_text).items()}
    names = {os.path.basename(h) for h in watch}
    context = json.loads(env.get(CONTEXT_ENV) or "{}")
    busy = threading.local()

    def matched(path: str) -> str | None:
        absolute = os.path.abspath(path)
        if absolute in watch:
            return watch[absolute]
        real = os.path.realpath(absolute)
        return next((c for h, c in watch.items() if os.path.realpath(h) == real), None)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or getattr(busy, "on", False):
            return
        busy.on = True
        try:
            path, _mode, flags = args
            if isinstance(path, int) or path is None:
                return
            p = os.fsdecode(os.fspath(path))
            if os.path.basename(p) not in names:
                return
            container = matched(p)
            if container is None or (flags or 0) & os.O_ACCMODE == os.O_WRONLY:
                return
            try:
                real = os.path.realpath(p, strict=True)
                outcome = "ok" if os.access(p, os.R_OK) else "PermissionError"
            except OSError as exc:
                real, outcome = "", type(exc).__name__
            opener, called_from = _opener(sys._getframe(1))
            package = opener.partition(".")[0]
            write_fact(
                facts,
                {
                    "source": "sdk" if package in SDK_PACKAGES else "pod",
                    "target": "token-file",
                    "call": "read token",
                    "outcome": outcome,
                    "recorder": "exec-hook",
                    "wall": SystemClock().now(),
                    "detail": {
                        **context,
                        "path": container,
                        "opener": opener,
                        "called_from": called_from,
                        "process": os.path.basename(sys.argv[0]) if sys.argv else "",
                        "pid": os.getpid(),
                        "payload": os.path.basename(os.path.dirname(real)) if real else "",
                    },
                },
            )
        except Exception:  # noqa: S110 - observing must never break the observed program
            pass
        finally:
            busy.on = False

    sys.addaudithook(hook)
    return True
