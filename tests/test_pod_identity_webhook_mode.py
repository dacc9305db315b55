"""The webhook's Pod Identity mode, fed from the EKS associations through the watched file.

The lab writes ``<state>/pod-identity/identities.json`` (docs/reference/pod-identity.md
§5.2) on every association change; the embedded webhook reads it as upstream does (§5.3).
A pod whose ServiceAccount has an association gets the Pod Identity settings (§3.1, §5.4),
and its container, run with ``irsa-lab exec``, finds the token the kubelet wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pod_identity_fixtures as PI
import pytest

from irsa_lab import constants as C
from irsa_lab.kube.kubelet import volume_dir
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock
from irsa_lab.webhook.container_credentials import (
    ConfigFileSync,
    IdentitiesFile,
    write_config,
)
from irsa_lab.webhook.settings import ContainerCredentialsSettings, WebhookSettings

ROLE_NAME = "pod-identity-reader"


# -- the file ------------------------------------------------------------------------------
class FakeAssociations:
    def __init__(self) -> None:
        self.pairs: list[tuple[str, str]] = []
        self.on_change: list[Any] = []

    def identities(self) -> list[tuple[str, str]]:
        return list(self.pairs)

    def set(self, *pairs: tuple[str, str]) -> None:
        self.pairs = list(pairs)
        for callback in self.on_change:
            callback()


def test_the_file_follows_the_associations_sorted_in_the_upstream_format(tmp_path: Path) -> None:
    assoc = FakeAssociations()
    path = tmp_path / "pod-identity" / "identities.json"
    sync = ConfigFileSync(assoc, path).start()
    assert json.loads(path.read_text()) == {"identities": []}
    assoc.set(("team-b", "reader"), ("default", "app"))
    assert json.loads(path.read_text()) == {
        "identities": [
            {"namespace": "default", "serviceAccount": "app"},
            {"namespace": "team-b", "serviceAccount": "reader"},
        ]
    }
    assert sync.generation == 2
    # Replaced atomically: no temporary file is left beside it.
    assert sorted(p.name for p in path.parent.iterdir()) == ["identities.json"]
    sync.stop()
    assoc.set()
    assert len(json.loads(path.read_text())["identities"]) == 2


def test_the_reader_keeps_the_previous_identities_when_the_file_does_not_parse(
    tmp_path: Path,
) -> None:
    path = tmp_path / "identities.json"
    watched = IdentitiesFile(path)
    assert watched.current() == frozenset()  # missing: none
    write_config(path, [("default", "app")])
    assert watched.current() == {("default", "app")}
    path.write_text('{"identities": [')
    assert watched.current() == {("default", "app")}
    assert watched.error.startswith("error Unmarshalling container credentials config file")
    # Go's encoding/json: unknown fields ignored, keys matched regardless of case.
    path.write_text('{"IDENTITIES": [{"Namespace": "x", "serviceaccount": "y", "role": "r"}]}')
    assert watched.current() == {("x", "y")}
    assert watched.error == ""
    path.write_text("")
    assert watched.current() == frozenset()  # empty: none


# -- the lab -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLab]:
    state = tmp_path_factory.mktemp("pod-identity-mode")
    with EmbeddedLab(state_dir=state, seed=DEFAULT_SEED, clock=lab_clock(True)) as lab:
        yield lab


@pytest.fixture(scope="module")
def lab(stack: EmbeddedLab) -> Lab:
    return PI.prepare(
        Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack),
        ROLE_NAME,
    )


def test_the_lab_webhook_watches_the_file_in_the_state_directory(stack: EmbeddedLab) -> None:
    cc = stack.webhook_settings.container_credentials
    assert cc is not None
    assert cc.watch_config == str(stack.state_dir / "pod-identity" / "identities.json")
    assert cc.full_uri == stack.aws.urls["pod-identity-agent"]
    assert json.loads(Path(cc.watch_config).read_text()) == {"identities": []}


def test_a_pod_of_an_associated_service_account_gets_the_pod_identity_settings(
    lab: Lab, stack: EmbeddedLab
) -> None:
    assoc = stack.aws.associations.create(C.NAMESPACE, "pi-app", PI.role_arn(ROLE_NAME))
    try:
        stack.wait_for_pod_identity_config()
        token = PI.check_pod_identity_pod(lab, stack, "pi-app-pod", ROLE_NAME)
        # The kubelet wrote that token: the bare JWT, no trailing newline (§3.2, §4.1).
        uid = lab.core.read_namespaced_pod("pi-app-pod", C.NAMESPACE).metadata.uid
        folder = volume_dir(stack.state_dir / "kubelet", uid, C.CONTAINER_CREDENTIALS_VOLUME_NAME)
        raw = (folder / C.CONTAINER_CREDENTIALS_TOKEN_PATH).read_bytes()
        assert raw.count(b".") == 2 and not raw.endswith(b"\n")
        assert token.encode() == raw
    finally:
        stack.aws.associations.delete(assoc.association_id)


def test_pod_identity_wins_over_a_role_annotation_until_the_association_is_deleted(
    lab: Lab, stack: EmbeddedLab
) -> None:
    second = PI.check_pod_identity_wins_until_deleted(lab, stack, ROLE_NAME)
    assert json.loads(stack.pod_identity_config.path.read_text()) == {"identities": []}
    assert "labels" not in second["metadata"] or not second["metadata"]["labels"]


def test_a_file_written_by_hand_is_read_on_the_next_pod(lab: Lab, stack: EmbeddedLab) -> None:
    path = stack.pod_identity_config.path
    try:
        write_config(path, [(C.NAMESPACE, "pi-app")])
        env = PI.container_env(lab.create_pod(PI.pod("pi-hand-1", "pi-app")))
        assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" in env
        # A half-written file keeps the identities in force (§5.2).
        path.write_text('{"identities": [{"namesp')
        env = PI.container_env(lab.create_pod(PI.pod("pi-hand-2", "pi-app")))
        assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" in env
    finally:
        stack.pod_identity_config.write()
    env = PI.container_env(lab.create_pod(PI.pod("pi-hand-3", "pi-app")))
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" not in env


def test_settings_without_a_watched_file_keep_their_fixed_identities() -> None:
    from irsa_lab.webhook.server import watched_settings

    fixed = WebhookSettings.lab(
        container_credentials=ContainerCredentialsSettings(identities=frozenset({("a", "b")}))
    )
    assert watched_settings(fixed)() is fixed
