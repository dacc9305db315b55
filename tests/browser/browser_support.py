"""What the browser suite shares: where Chromium is, how it is started, where the
lessons and the screenshots live. A plain module (not the conftest) so that test
modules can import it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

# The checkout whose lessons are tested; IRSA_LAB_LESSONS_ROOT points the suite at
# another one (e.g. a work-in-progress copy).
REPO = Path(os.environ.get("IRSA_LAB_LESSONS_ROOT") or Path(__file__).resolve().parents[2])
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
MISSING_REASON = (
    "needs /usr/bin/chromium (apt-get install -y chromium) and playwright (pip install playwright)"
)
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# What the copy of the repository needs for the notebooks to run from it.
LESSON_FOLDERS = ("notebooks", "labs", "examples")

# JupyterLab user settings for the test server: every cell stays in the DOM (no
# virtual scrolling), and no news or update check reaches out to the network.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists() or importlib.util.find_spec("playwright") is None:
        return MISSING_REASON
    return None


def shutdown_kernels(base_url: str) -> None:
    """Stop every kernel of the test server, so the next test starts a fresh one (the
    lessons create pods, and a second run in an old kernel would find them there)."""
    with urllib.request.urlopen(f"{base_url}/api/kernels", timeout=10) as resp:  # noqa: S310
        kernels = json.load(resp)
    for kernel in kernels:
        url = f"{base_url}/api/kernels/{kernel['id']}"
        req = urllib.request.Request(url, method="DELETE")  # noqa: S310 (loopback only)
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=30).close()  # noqa: S310 (loopback only)
