"""The package's public surface stays small and importable without starting anything."""

from __future__ import annotations

import subprocess
import sys

import irsa_lab


def test_the_package_exports_only_the_version_and_the_one_call() -> None:
    assert irsa_lab.__all__ == ["__version__", "lab"]
    assert callable(irsa_lab.lab)


def test_importing_the_package_starts_no_server_and_loads_no_heavy_client() -> None:
    code = (
        "import sys, threading, irsa_lab; "
        "print(threading.active_count(), 'kubernetes' in sys.modules, 'boto3' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False", "False"]


def test_the_cli_and_the_stack_load_no_client_library_or_widget_toolkit() -> None:
    # `irsa-lab up` starts faster than the clients it serves: boto3, the kubernetes
    # client, matplotlib and ipywidgets are for notebooks and tests, not for the servers.
    code = (
        "import sys, irsa_lab.cli, irsa_lab.stack; "
        "print(' '.join(m for m in ('boto3', 'botocore', 'kubernetes', 'matplotlib', "
        "'ipywidgets') if m in sys.modules) or 'none')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["none"]
