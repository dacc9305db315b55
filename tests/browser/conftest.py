"""Fixtures for the browser suite: Debian's Chromium driven by Playwright, and a
JupyterLab serving a throw-away copy of the lessons (docs/reference/teaching.md §4.2).

Nothing here downloads a browser: ``playwright install`` cannot work on these
machines, so Chromium is always the one apt installs at /usr/bin/chromium. Without
it, or without the ``playwright`` package, every test marked ``browser`` is skipped
with a reason that says how to get them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LAB_SETTINGS,
    LESSON_FOLDERS,
    REPO,
    SCREENSHOTS,
    browser_missing,
)


@pytest.fixture(scope="session")
def browser_available() -> None:
    """Skips the test, saying what to install, when Chromium or playwright is missing."""
    reason = browser_missing()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def browser(browser_available: None) -> Iterator[Any]:
    """Chromium for one test module. Module scope on purpose: while playwright's sync
    API is active it marks an asyncio loop as running in the main thread, and every
    later test that calls ``asyncio.run`` (nbclient, the stack's clients) would fail."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """docs/screenshots: each run overwrites the pictures of the key views."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def lab_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary copy of the lessons, so running cells never touches the checkout."""
    root = tmp_path_factory.mktemp("lab-copy")
    for name in LESSON_FOLDERS:
        if (REPO / name).is_dir():
            shutil.copytree(
                REPO / name,
                root / name,
                ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"),
            )
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 (loopback only)
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def jupyter_lab(
    lab_copy: Path, tmp_path_factory: pytest.TempPathFactory, browser_available: None
) -> Iterator[str]:
    """A JupyterLab on a free loopback port with no token, rooted in :func:`lab_copy`;
    yields its base URL and stops it (and its kernels) after the module."""
    home = tmp_path_factory.mktemp("jupyter-home")
    settings = home / "lab-settings"
    for rel, value in LAB_SETTINGS.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    env = dict(os.environ)
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
            "JUPYTER_CONFIG_DIR": str(home / "config"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
            "JUPYTERLAB_SETTINGS_DIR": str(settings),
            "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
            "IPYTHONDIR": str(home / "ipython"),
            "IRSA_LAB_BACKEND": "embedded",
        }
    )
    port = _free_port()
    log = (home / "jupyter.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={lab_copy}",
            "--IdentityProvider.token=",
            "--ServerApp.password=",
            "--ServerApp.open_browser=False",
            "--ServerApp.disable_check_xsrf=True",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
            # CI runs as root; JupyterLab refuses that unless told.
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        cwd=lab_copy,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while not _answers(f"{base}/api/status"):
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                tail = (home / "jupyter.log").read_text()[-3000:]
                pytest.fail(f"JupyterLab did not start on {base}:\n{tail}")
            time.sleep(0.25)
        yield base
    finally:
        # The server was started in its own session: signal that group only, so the
        # kernels it started go with it.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
