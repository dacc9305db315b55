"""The kind lab's control (``irsa_lab.kind.control``), without Docker: a real AWS side
(the one ``irsa-lab kind up`` starts) served through the admin endpoint, with kubectl
recorded instead of run. What kind itself does with the commands is the e2e test's."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jwt
import pytest

from irsa_lab import constants as C
from irsa_lab.admin import RemoteControl, serve_admin
from irsa_lab.control import Unavailable
from irsa_lab.kind.control import KindControl
from irsa_lab.kind.keys import public_pem, write_keys
from irsa_lab.pki import LabCA, SigningKey
from irsa_lab.stack import start_aws_for_issuer

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"


class FakeKubectl:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.ready = "1"

    def __call__(self, args: Sequence[str], timeout: float) -> str:
        self.calls.append(list(args))
        if "scale" in args:
            self.ready = "0" if "--replicas=0" in args else "1"
        return self.ready if "jsonpath={.status.readyReplicas}" in args else ""


@pytest.fixture
def kind(tmp_path: Path) -> Iterator[tuple[Any, FakeKubectl, RemoteControl, Any]]:
    ca = LabCA.create()
    handle = start_aws_for_issuer(
        state_dir=tmp_path,
        issuer=ISSUER,
        discovery_url="https://127.0.0.1:1/.well-known/openid-configuration",
        ca_pem_for_discovery=ca.cert_pem,
    )
    keys = write_keys(tmp_path / "keys", SigningKey.demo())
    kubectl = FakeKubectl()
    control = KindControl(handle.side, kubectl=kubectl, signing_key_file=keys.signing_key_file)
    url = serve_admin(handle.loop, control, tmp_path, tls=handle.side.tls)
    remote = RemoteControl({**handle.endpoints, "admin": url, "backend": "kind"}, tmp_path)
    try:
        yield control, kubectl, remote, keys
    finally:
        handle.stop()


def test_stopping_the_webhook_scales_its_deployment_to_zero_and_waits_for_its_pods(
    kind: tuple[Any, FakeKubectl, RemoteControl, Any],
) -> None:
    _, kubectl, remote, _ = kind
    assert remote.webhook_running()
    remote.stop_webhook()
    scale = next(c for c in kubectl.calls if "scale" in c)
    wait = next(c for c in kubectl.calls if "wait" in c)
    assert "--replicas=0" in scale and "deployment/pod-identity-webhook" in scale
    assert kubectl.calls.index(scale) < kubectl.calls.index(wait)
    assert "--for=delete" in wait and "app=pod-identity-webhook" in wait
    assert not remote.webhook_running()
    kubectl.calls.clear()
    remote.start_webhook()
    assert any("--replicas=1" in c for c in kubectl.calls)
    assert any("rollout" in c for c in kubectl.calls)
    assert remote.webhook_running()


def test_the_node_options_reach_the_aws_side_that_kind_up_started(
    kind: tuple[Any, FakeKubectl, RemoteControl, Any],
) -> None:
    control, _, remote, _ = kind
    got = remote.modify_metadata_options(http_tokens="required", hop_limit=1)
    assert got == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}
    assert control.stack.aws.imds_settings.http_tokens == "required"


def test_what_a_real_kubelet_and_api_server_keep_is_unavailable_with_the_reason(
    kind: tuple[Any, FakeKubectl, RemoteControl, Any],
) -> None:
    _, _, remote, _ = kind
    with pytest.raises(Unavailable, match="real kubelet"):
        remote.token_status("some-uid")
    with pytest.raises(Unavailable, match="wall clock"):
        remote.advance_clock(60)
    with pytest.raises(Unavailable, match="audit log"):
        remote.admission_mark()


def test_a_token_under_another_issuer_is_signed_with_the_clusters_key_file(
    kind: tuple[Any, FakeKubectl, RemoteControl, Any],
) -> None:
    _, _, remote, keys = kind
    token = remote.sign_token(
        issuer="https://other.example",
        namespace=C.NAMESPACE,
        service_account=C.SERVICE_ACCOUNT,
        audiences=[C.DEFAULT_AUDIENCE],
        expiration_seconds=3600,
    )
    claims = jwt.decode(
        token,
        public_pem(keys.key),
        algorithms=["RS256"],
        audience=C.DEFAULT_AUDIENCE,
        issuer="https://other.example",
    )
    assert claims["sub"] == f"system:serviceaccount:{C.NAMESPACE}:{C.SERVICE_ACCOUNT}"
    assert jwt.get_unverified_header(token)["kid"] == keys.kid
