"""Start-up does only the work it needs: structural checks, not timings (docs/benchmarks.md
has the timings). The check that the CLI and the stack load no client library or widget
toolkit is in tests/test_public_api.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

IRSA_LAB = [sys.executable, "-m", "irsa_lab.cli"]


def loaded_after(code: str, modules: tuple[str, ...]) -> list[str]:
    probe = f"import sys; {code}; print(' '.join(m for m in {modules!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return out.stdout.split()


def test_the_stack_loads_the_protobuf_runtime_only_when_a_client_sends_protobuf() -> None:
    # kubectl's protobuf bodies are decoded and answered by irsa_lab.kube.protobuf,
    # imported on the first such request.
    assert (
        loaded_after("import irsa_lab.stack", ("google.protobuf", "irsa_lab.kube.protobuf")) == []
    )
    assert (
        loaded_after(
            "import irsa_lab.kube.wire as w, irsa_lab.kube.protobuf_responses as r",
            ("google.protobuf",),
        )
        == []
    )


def test_the_detached_lab_is_a_fork_of_the_command_not_a_second_interpreter(
    tmp_path: Path,
) -> None:
    up = subprocess.run(
        [*IRSA_LAB, "up", "--detach", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert up.returncode == 0, up.stderr
    pid = int((tmp_path / "lab.pid").read_text())
    try:
        # A fork keeps the command line it was forked from (with --detach); a second
        # interpreter would have been started as `irsa_lab.cli up` without it.
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"--detach" in argv
        assert "embedded stack ready" in (tmp_path / "lab.log").read_text()
    finally:
        subprocess.run(
            [*IRSA_LAB, "down", "--state-dir", str(tmp_path)], capture_output=True, timeout=60
        )
    assert not (tmp_path / "lab.pid").exists()


def test_the_stack_loads_no_yaml_parser_and_no_aiohttp() -> None:
    # PyYAML is loaded for a YAML request body only; the kubeconfig is written by
    # kube.kubeconfig.to_yaml. The servers are irsa_lab.web's; aiohttp, the client,
    # is loaded by irsa_lab.client_http once the lab has started.
    assert loaded_after("import irsa_lab.stack, irsa_lab.cli", ("yaml", "aiohttp")) == []


def test_the_started_lab_loads_aiohttp_in_the_background_for_its_informer(
    tmp_path: Path,
) -> None:
    probe = (
        "import sys; from pathlib import Path; from irsa_lab.stack import EmbeddedLab; "
        f"lab = EmbeddedLab(state_dir=Path({str(tmp_path)!r}), seed=1).start(); "
        "import time; t = time.monotonic() + 30\n"
        "while not lab.sa_cache.ready and time.monotonic() < t: time.sleep(0.01)\n"
        "print(lab.sa_cache.ready, lab.sa_cache.lists, 'aiohttp' in sys.modules); lab.stop()"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "1", "True"]


def test_a_new_labs_signing_key_is_made_on_a_thread_while_the_stack_imports(
    tmp_path: Path,
) -> None:
    probe = (
        "import sys, threading; from pathlib import Path; from irsa_lab import cli; "
        f"t = cli._begin_signing_key(Path({str(tmp_path)!r}), None); "
        "started = 'irsa_lab.stack' not in sys.modules and t.is_alive(); "
        "from irsa_lab.pki import SigningKey; import irsa_lab.stack; "
        f"k = SigningKey.for_file(Path({str(tmp_path)!r}).resolve() / 'sa-signer.key'); "
        "print(started, k.private_key.key_size, cli._begin_signing_key(Path('.'), 7))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "2048", "None"]
    assert (tmp_path / "sa-signer.key").stat().st_mode & 0o777 == 0o600
