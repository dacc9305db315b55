"""The package's public surface stays small and importable without starting anything."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
import typing

import pytest

import irsa_lab


def test_the_package_exports_only_the_version_and_the_one_call() -> None:
    assert irsa_lab.__all__ == ["__version__", "lab"]
    assert callable(irsa_lab.lab)


def test_lab_is_typed_to_return_the_lab_and_takes_what_the_session_takes() -> None:
    from irsa_lab.session import Lab
    from irsa_lab.session import lab as session_lab

    assert typing.get_type_hints(irsa_lab.lab, localns={"Lab": Lab})["return"] is Lab
    assert inspect.signature(irsa_lab.lab) == inspect.signature(session_lab)


def _public_modules() -> list[str]:
    """Every module of the package but ``__main__`` entry points and ``_private`` ones."""
    found = ["irsa_lab"]
    for info in pkgutil.walk_packages(irsa_lab.__path__, "irsa_lab."):
        last = info.name.rsplit(".", 1)[-1]
        if last == "__main__" or last.startswith("_"):
            continue
        found.append(info.name)
    return sorted(found)


@pytest.mark.parametrize("name", _public_modules())
def test_every_public_module_declares_all_and_defines_what_it_lists(name: str) -> None:
    module = importlib.import_module(name)
    declared = getattr(module, "__all__", None)
    assert declared is not None, f"{name} has no __all__"
    missing = [n for n in declared if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names it does not define: {missing}"


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
