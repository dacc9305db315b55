"""The processes a ``k8s`` lab started, recorded so that ``irsa-lab down`` can always stop them,
and the tail of a started program's log, for the error that says why it stopped.

Kept apart from :mod:`irsa_lab.backends.k8s` so that ``irsa-lab down`` imports nothing
heavy.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path

__all__ = ["PIDS_FILE", "kill_leftovers", "log_tail"]

PIDS_FILE = "pids.json"


def kill_leftovers(state_dir: Path) -> list[int]:
    """Stop processes a ``k8s`` lab started and did not stop (its process was killed).

    Reads ``<state>/k8s/pids.json``; only pids whose command line still names the
    program are signalled. Returns the pids stopped.
    """
    path = state_dir / "k8s" / PIDS_FILE
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    stopped = []
    for name, pid in recorded.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if name.encode() in cmdline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
                stopped.append(int(pid))
    path.unlink(missing_ok=True)
    shutil.rmtree(state_dir / "k8s" / "etcd", ignore_errors=True)
    return stopped


def log_tail(log: Path, lines: int) -> str:
    """The last ``lines`` lines of the log file ``log`` (``""`` when it cannot be read)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
