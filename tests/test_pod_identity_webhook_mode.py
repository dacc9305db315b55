"""The webhook's Pod Identity mode, fed from the EKS associations through the watched file.

The lab writes ``<state>/pod-identity/identities.json`` (docs/reference/pod-identity.md
§5.2) on every association change; the embedded webhook reads it as upstream does (§5.3).
A pod whose ServiceAccount has an association gets the Pod Identity settings (§3.1, §5.4),
and its container, run with ``irsa-lab exec``, finds the token the kubelet wrote.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from irsa_lab import constants as C
from irsa_lab.aws.eks import trust as T
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
ROLE = f"arn:aws:iam::{C.ACCOUNT_ID}:role/{ROLE_NAME}"
TOKEN_FILE = (
    f"{C.CONTAINER_CREDENTIALS_MOUNT_PATH.rstrip('/')}/{C.CONTAINER_CREDENTIALS_TOKEN_PATH}"
)


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
    the_lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    for sa in ("pi-app", "pi-both"):
        the_lab.core.create_namespaced_service_account(C.NAMESPACE, {"metadata": {"name": sa}})
    the_lab.core.patch_namespaced_service_account(
        "pi-both", C.NAMESPACE, {"metadata": {"annotations": {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN}}}
    )
    the_lab.aws_client("iam").create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(T.pod_identity_trust_policy(tag_session=True)),
    )
    return the_lab


def _pod(name: str, sa: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "app"}]},
    }


def _env(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0].get("env", [])}


def _claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_the_lab_webhook_watches_the_file_in_the_state_directory(stack: EmbeddedLab) -> None:
    cc = stack.webhook_settings.container_credentials
    assert cc is not None
    assert cc.watch_config == str(stack.state_dir / "pod-identity" / "identities.json")
    assert cc.full_uri == stack.aws.urls["pod-identity-agent"]
    assert json.loads(Path(cc.watch_config).read_text()) == {"identities": []}


def test_a_pod_of_an_associated_service_account_gets_the_pod_identity_settings(
    lab: Lab, stack: EmbeddedLab
) -> None:
    assoc = stack.aws.associations.create(C.NAMESPACE, "pi-app", ROLE)
    try:
        stack.wait_for_pod_identity_config()
        pod = lab.create_pod(_pod("pi-app-pod", "pi-app"))
        assert pod["metadata"]["labels"] == {"eks.amazonaws.com/pod-identity": "enabled"}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert "aws-iam-token" not in volumes
        source = volumes[C.CONTAINER_CREDENTIALS_VOLUME_NAME]["projected"]["sources"][0]
        assert source["serviceAccountToken"]["audience"] == "pods.eks.amazonaws.com"
        env = _env(pod)
        assert env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == stack.aws.urls["pod-identity-agent"]
        assert env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] == TOKEN_FILE
        assert "AWS_ROLE_ARN" not in env

        # The kubelet wrote the token: the bare JWT, no trailing newline (§3.2, §4.1).
        folder = volume_dir(
            stack.state_dir / "kubelet", pod["metadata"]["uid"], C.CONTAINER_CREDENTIALS_VOLUME_NAME
        )
        raw = (folder / C.CONTAINER_CREDENTIALS_TOKEN_PATH).read_bytes()
        assert raw.count(b".") == 2 and not raw.endswith(b"\n")

        # The container's variable names a readable file holding that token.
        done = lab.exec(
            "pi-app-pod",
            [
                "python3",
                "-c",
                "import os,sys; p=os.environ['AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'];"
                " sys.stdout.write(open(p).read())",
            ],
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.encode() == raw
        claims = _claims(done.stdout)
        assert claims["aud"] == ["pods.eks.amazonaws.com"]
        assert claims["sub"] == f"system:serviceaccount:{C.NAMESPACE}:pi-app"
        assert claims["kubernetes.io"]["pod"]["name"] == "pi-app-pod"

        # And botocore in the container trades it at the agent for the role (§4).
        who = lab.exec("pi-app-pod", ["aws", "sts", "get-caller-identity", "--output", "json"])
        assert who.returncode == 0, who.stderr
        arn = json.loads(who.stdout)["Arn"]
        assert arn.startswith(f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/{ROLE_NAME}/eks-")
    finally:
        stack.aws.associations.delete(assoc.association_id)


def test_pod_identity_wins_over_a_role_annotation_until_the_association_is_deleted(
    lab: Lab, stack: EmbeddedLab
) -> None:
    assoc = stack.aws.associations.create(C.NAMESPACE, "pi-both", ROLE)
    stack.wait_for_pod_identity_config()
    env = _env(lab.create_pod(_pod("pi-both-1", "pi-both")))
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" in env
    assert "AWS_ROLE_ARN" not in env and "AWS_WEB_IDENTITY_TOKEN_FILE" not in env

    stack.aws.associations.delete(assoc.association_id)
    stack.wait_for_pod_identity_config()
    assert json.loads(stack.pod_identity_config.path.read_text()) == {"identities": []}
    pod = lab.create_pod(_pod("pi-both-2", "pi-both"))
    env = _env(pod)
    assert env["AWS_ROLE_ARN"] == C.ROLE_ARN
    assert "AWS_CONTAINER_CREDENTIALS_FULL_URI" not in env
    assert "labels" not in pod["metadata"] or not pod["metadata"]["labels"]


def test_a_file_written_by_hand_is_read_on_the_next_pod(lab: Lab, stack: EmbeddedLab) -> None:
    path = stack.pod_identity_config.path
    try:
        write_config(path, [(C.NAMESPACE, "pi-app")])
        env = _env(lab.create_pod(_pod("pi-hand-1", "pi-app")))
        assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" in env
        # A half-written file keeps the identities in force (§5.2).
        path.write_text('{"identities": [{"namesp')
        env = _env(lab.create_pod(_pod("pi-hand-2", "pi-app")))
        assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" in env
    finally:
        stack.pod_identity_config.write()
    env = _env(lab.create_pod(_pod("pi-hand-3", "pi-app")))
    assert "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" not in env


def test_settings_without_a_watched_file_keep_their_fixed_identities() -> None:
    from irsa_lab.webhook.server import watched_settings

    fixed = WebhookSettings.lab(
        container_credentials=ContainerCredentialsSettings(identities=frozenset({("a", "b")}))
    )
    assert watched_settings(fixed)() is fixed
