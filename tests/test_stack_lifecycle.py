"""Starting and stopping the embedded stack again and again leaves nothing behind."""

from __future__ import annotations

import gc
import os
import threading
import time
from pathlib import Path

import pytest

from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock

CYCLES = 200


def socket_fds() -> int:
    """How many of this process's file descriptors are sockets."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:  # the fd of the listing itself, closed by now
            continue
    return count


def thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


def one_cycle(state_dir: Path) -> None:
    stack = EmbeddedLab(state_dir=state_dir, seed=DEFAULT_SEED, clock=lab_clock(True)).start()
    stack.stop()


def test_stop_removes_endpoints_json_and_a_second_stop_does_nothing(tmp_path: Path) -> None:
    stack = EmbeddedLab(state_dir=tmp_path, seed=DEFAULT_SEED, clock=lab_clock(True)).start()
    assert (tmp_path / "endpoints.json").exists()
    stack.stop()
    assert not (tmp_path / "endpoints.json").exists()
    assert stack.loop.served() == {} and not stack.loop.running
    stack.stop()


@pytest.mark.slow
def test_two_hundred_start_stop_cycles_leave_no_thread_and_no_socket(tmp_path: Path) -> None:
    one_cycle(tmp_path)  # first start imports and caches what a stack needs
    gc.collect()
    threads_before, sockets_before = thread_names(), socket_fds()
    started = time.perf_counter()
    for _ in range(CYCLES):
        one_cycle(tmp_path)
    took = time.perf_counter() - started
    gc.collect()
    assert thread_names() == threads_before
    assert socket_fds() == sockets_before
    # Generous bound: about 0.56 s a cycle here, of which 0.5 s is the API server waiting
    # for the webhook's open watch to end at stop.
    assert took < CYCLES * 2.0
