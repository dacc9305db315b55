"""The trace records facts only: each step by the component that did it, with its real caller.

A token read is recorded by the process that opened the file (through the exec
wrapper's hook), at that moment, and merged into the lab's trace where it happened;
a command that never opens the file adds nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from irsa_lab import constants as C
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.kube.container import ExecPlan, run
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab
from irsa_lab.trace import Trace, facts_path, write_fact

ROOT = Path(__file__).resolve().parents[1]
MYPOD = yaml.safe_load((ROOT / "examples" / "mypod.yaml").read_text())
IRSA_LAB = [sys.executable, "-m", "irsa_lab.cli"]


class StepClock:
    """A wall clock the test moves by hand."""

    def __init__(self, start: float) -> None:
        self.t = start

    def now(self) -> float:
        return self.t


def _plan(token: Path) -> ExecPlan:
    env = {C.ENV_WEB_IDENTITY_TOKEN_FILE: str(token)}
    return ExecPlan(
        "c",
        env,
        {C.TOKEN_MOUNT_PATH: token.parent},
        rewritten=[(C.ENV_WEB_IDENTITY_TOKEN_FILE, C.TOKEN_FILE, str(token))],
    )


def _facts(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture()
def token(tmp_path: Path) -> Path:
    # The kubelet's layout: token -> ..data/token, ..data -> ..<stamp>/
    volume = tmp_path / "volume"
    payload = volume / "..2024_03_27_14_00_00.0000000001"
    payload.mkdir(parents=True)
    (payload / "token").write_text("eyJ.header.sig")
    os.symlink(payload.name, volume / "..data")
    os.symlink("..data/token", volume / "token")
    return volume / "token"


# --- the trace: merging facts from other processes ----------------------------------


def test_a_fact_from_another_process_lands_where_it_happened(tmp_path: Path) -> None:
    wall = StepClock(1000.0)
    trace = Trace(ManualClock(LAB_EPOCH), wall_clock=wall)
    facts = tmp_path / "facts.jsonl"
    trace.watch(facts)
    mark = trace.mark()
    trace.record("kubelet", "apiserver", "TokenRequest", recorder="kubelet")
    wall.t = 1002.0
    trace.record("sdk", "sts", "AssumeRoleWithWebIdentity")
    # Written by the child at 1001, read by the lab afterwards.
    write_fact(
        facts,
        {
            "source": "sdk",
            "target": "token-file",
            "call": "read token",
            "wall": 1001.0,
            "recorder": "exec-hook",
            "detail": {"opener": "botocore.utils.FileWebIdentityTokenLoader.__call__"},
        },
    )
    events = trace.since(mark)
    assert [e.call for e in events] == ["TokenRequest", "read token", "AssumeRoleWithWebIdentity"]
    read = events[1]
    assert (read.source, read.recorder, read.wall) == ("sdk", "exec-hook", 1001.0)
    assert read.seq > events[2].seq  # merged later, placed by when it happened


def test_facts_written_before_the_watch_or_half_written_are_not_merged(tmp_path: Path) -> None:
    facts = tmp_path / "facts.jsonl"
    write_fact(facts, {"source": "sdk", "target": "token-file", "call": "old", "wall": 1.0})
    trace = Trace(ManualClock(LAB_EPOCH))
    trace.watch(facts)
    with facts.open("a") as fh:
        fh.write('{"source": "sdk", "target": "token-file", "call": "half"')
    assert trace.events() == []
    with facts.open("a") as fh:
        fh.write(', "wall": 2.0}\nnot json\n{"no": "fields"}\n')
    assert [e.call for e in trace.events()] == ["half"]  # bad lines are skipped, not guessed


def test_a_fact_merged_before_a_mark_is_not_in_the_next_run(tmp_path: Path) -> None:
    facts = tmp_path / "facts.jsonl"
    trace = Trace(ManualClock(LAB_EPOCH))
    trace.watch(facts)
    write_fact(facts, {"source": "sdk", "target": "token-file", "call": "read token", "wall": 1.0})
    mark = trace.mark()
    assert trace.since(mark) == []
    assert [e.call for e in trace.events()] == ["read token"]


# --- the child's hook ---------------------------------------------------------------


def test_the_sdk_reading_the_token_is_recorded_with_its_opener_and_payload(
    tmp_path: Path, token: Path
) -> None:
    facts = tmp_path / "facts.jsonl"
    script = (
        f"from botocore.utils import FileWebIdentityTokenLoader as L; print(L({str(token)!r})())"
    )
    before = __import__("time").time()
    done = run(
        _plan(token),
        [sys.executable, "-c", script],
        extra_env={},
        facts=facts,
        context={"pod": "mypod", "uid": "u1"},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "eyJ.header.sig"
    [fact] = _facts(facts)
    assert (fact["source"], fact["target"], fact["call"], fact["outcome"]) == (
        "sdk",
        "token-file",
        "read token",
        "ok",
    )
    assert fact["recorder"] == "exec-hook"
    assert before <= float(fact["wall"]) <= __import__("time").time()  # type: ignore[arg-type]
    detail = fact["detail"]
    assert isinstance(detail, dict)
    assert detail["opener"] == "botocore.utils.FileWebIdentityTokenLoader.__call__"
    assert detail["path"] == C.TOKEN_FILE  # as the container sees it
    assert detail["payload"] == "..2024_03_27_14_00_00.0000000001"
    assert (detail["pod"], detail["uid"]) == ("mypod", "u1")


def test_a_command_that_does_not_read_the_token_records_nothing(
    tmp_path: Path, token: Path
) -> None:
    facts = tmp_path / "facts.jsonl"
    for argv in (
        ["true"],
        [sys.executable, "-c", "import botocore.utils; open('/dev/null').read()"],
        # Opened to write, not to read (a real read-only mount would refuse it anyway).
        [sys.executable, "-c", f"open({str(token)!r}, 'a')"],
    ):
        done = run(_plan(token), argv, extra_env={}, facts=facts, timeout=60)
        assert done.returncode == 0, done.stderr
    assert _facts(facts) == []


def test_another_program_reading_the_token_is_recorded_as_the_pod_not_the_sdk(
    tmp_path: Path, token: Path
) -> None:
    facts = tmp_path / "facts.jsonl"
    script = (
        "import os, pathlib; pathlib.Path(os.environ['AWS_WEB_IDENTITY_TOKEN_FILE']).read_text()"
    )
    done = run(_plan(token), [sys.executable, "-c", script], extra_env={}, facts=facts, timeout=60)
    assert done.returncode == 0, done.stderr
    [fact] = _facts(facts)
    assert fact["source"] == "pod"
    assert fact["detail"]["opener"] == "__main__.<module>"  # type: ignore[index]


def test_a_missing_token_file_is_recorded_with_the_error_the_open_raised(
    tmp_path: Path, token: Path
) -> None:
    facts = tmp_path / "facts.jsonl"
    (token.parent / "..data").unlink()
    script = (
        "import os; from botocore.utils import FileWebIdentityTokenLoader as L; "
        "L(os.environ['AWS_WEB_IDENTITY_TOKEN_FILE'])()"
    )
    done = run(_plan(token), [sys.executable, "-c", script], extra_env={}, facts=facts, timeout=60)
    assert done.returncode == 1 and "FileNotFoundError" in done.stderr
    [fact] = _facts(facts)
    assert (fact["source"], fact["outcome"]) == ("sdk", "FileNotFoundError")


def test_without_a_facts_file_the_child_gets_no_hook(tmp_path: Path, token: Path) -> None:
    script = "import os, sys; print('sitecustomize' in sys.modules, os.environ.get('PYTHONPATH'))"
    done = run(_plan(token), [sys.executable, "-c", script], extra_env={}, timeout=60)
    assert done.stdout.split() == ["False", "None"]


# --- the live chain: lab.exec and irsa-lab exec ---------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    stack = EmbeddedLab(
        state_dir=tmp_path_factory.mktemp("facts"), seed=DEFAULT_SEED, clock=ManualClock(LAB_EPOCH)
    ).start()
    handle = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    handle.create_pod(MYPOD)
    try:
        yield handle
    finally:
        handle.close()


def _trace(lab: Lab) -> Trace:
    assert lab.embedded is not None
    return lab.embedded.trace


def test_lab_exec_records_the_sdk_read_before_its_sts_call(lab: Lab) -> None:
    trace = _trace(lab)
    mark = trace.mark()
    done = lab.exec(C.POD_NAME, ["aws", "sts", "get-caller-identity"])
    assert done.returncode == 0, done.stderr
    events = trace.since(mark)
    calls = [(e.source, e.call) for e in events]
    reads = [i for i, (_, call) in enumerate(calls) if call == "read token"]
    sts = calls.index(("sdk", "AssumeRoleWithWebIdentity"))
    assert reads and max(reads) < sts
    for i in reads:
        ev = events[i]
        assert (ev.source, ev.target, ev.recorder, ev.ok) == (
            "sdk",
            "token-file",
            "exec-hook",
            True,
        )
        assert ev.detail["pod"] == C.POD_NAME and ev.detail["process"] == "aws"
        assert ev.detail["opener"].endswith("FileWebIdentityTokenLoader.__call__")


def test_lab_exec_of_a_command_that_reads_nothing_adds_no_read(lab: Lab) -> None:
    trace = _trace(lab)
    mark = trace.mark()
    assert lab.exec(C.POD_NAME, ["true"]).returncode == 0
    assert [e for e in trace.since(mark) if e.call == "read token"] == []


def test_irsa_lab_exec_records_reads_in_the_state_dir_only_when_the_sdk_reads(
    lab: Lab,
) -> None:
    # The lab serving this state directory runs in this process.
    (lab.state_dir / "lab.pid").write_text(f"{os.getpid()}\n")
    facts = facts_path(lab.state_dir)
    trace = _trace(lab)
    trace.watch(facts)
    mark = trace.mark()
    before = len(_facts(facts))
    quiet = subprocess.run(
        [*IRSA_LAB, "exec", "--state-dir", str(lab.state_dir), C.POD_NAME, "--", "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert quiet.returncode == 0, quiet.stderr
    assert len(_facts(facts)) == before
    who = subprocess.run(
        [
            *IRSA_LAB,
            "exec",
            "--state-dir",
            str(lab.state_dir),
            C.POD_NAME,
            "--",
            "aws",
            "sts",
            "get-caller-identity",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert who.returncode == 0, who.stderr
    new = _facts(facts)[before:]
    assert new and {f["call"] for f in new} == {"read token"}
    assert {f["source"] for f in new} == {"sdk"}
    # The lab's trace merges them where they happened: before STS got the call.
    calls = [e.call for e in trace.since(mark)]
    assert calls.count("read token") == len(new)
    assert max(i for i, c in enumerate(calls) if c == "read token") < calls.index(
        "AssumeRoleWithWebIdentity"
    )


def test_the_kubelet_records_its_own_token_request(lab: Lab) -> None:
    uid = lab.get_pod(C.POD_NAME)["metadata"]["uid"]
    mine = [
        e
        for e in _trace(lab).events()
        if e.recorder == "kubelet" and e.call == "TokenRequest" and e.detail.get("uid") == uid
    ]
    assert {e.detail["volume"] for e in mine} >= {C.TOKEN_VOLUME_NAME}
    irsa = next(e for e in mine if e.detail["volume"] == C.TOKEN_VOLUME_NAME)
    assert (irsa.source, irsa.target, irsa.ok) == ("kubelet", "apiserver", True)
    assert irsa.detail["audiences"] == [C.DEFAULT_AUDIENCE]
