"""Shared pytest set-up: keep real AWS and kube settings of the machine out of tests."""

from __future__ import annotations

import os

import pytest

# Nothing a test starts may pick up the developer's own cloud or cluster settings.
_LEAKY = [k for k in os.environ if k.startswith("AWS_")] + ["KUBECONFIG"]


@pytest.fixture(autouse=True)
def _isolated_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for key in _LEAKY:
        monkeypatch.delenv(key, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(home / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "aws-credentials"))
    monkeypatch.setenv("IRSA_LAB_STATE_DIR", str(home / "irsa-lab-state"))
