"""Fixtures for the token issuer, the OIDC host, the kubelet and podexec tests.

Import the ``*_fixture`` functions into a test module; they register under the short
names (``clock``, ``ids``, ``issuer``, ``oidc_host``, ``kubelet``...).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from irsa_lab.clock import LAB_EPOCH, ManualClock, rfc3339
from irsa_lab.constants import (
    DEFAULT_AUDIENCE,
    NAMESPACE,
    NODE_NAME,
    POD_NAME,
    ROLE_ARN,
    SA_MOUNT_PATH,
    SERVICE_ACCOUNT,
    TOKEN_FILE,
    TOKEN_MOUNT_PATH,
    TOKEN_VOLUME_NAME,
)
from irsa_lab.httpd import ServerLoop
from irsa_lab.ids import Ids
from irsa_lab.kube.kubelet import Kubelet
from irsa_lab.kube.oidc import make_app
from irsa_lab.kube.tokens import TokenIssuer, eks_issuer
from irsa_lab.pki import LabCA, SigningKey
from irsa_lab.trace import Trace

SEED = 7
SA_UID = "11111111-2222-4333-8444-555555555555"
POD_UID = "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
NODE_UID = "99999999-8888-4777-8666-555555555555"
CA_PEM = b"-----BEGIN CERTIFICATE-----\nlab CA\n-----END CERTIFICATE-----\n"


def make_issuer(seed: int = SEED, start: float = LAB_EPOCH) -> tuple[TokenIssuer, ManualClock]:
    """A fresh issuer on the demo key with a seeded id source and a frozen clock."""
    clock = ManualClock(start)
    ids = Ids(seed)
    return TokenIssuer(eks_issuer(ids), SigningKey.demo(), clock=clock, ids=ids), clock


@pytest.fixture(name="demo_key", scope="session")
def demo_key_fixture() -> SigningKey:
    return SigningKey.demo()


@pytest.fixture(name="clock")
def clock_fixture() -> ManualClock:
    return ManualClock(LAB_EPOCH)


@pytest.fixture(name="ids")
def ids_fixture() -> Ids:
    return Ids(SEED)


@pytest.fixture(name="issuer")
def issuer_fixture(clock: ManualClock, ids: Ids, demo_key: SigningKey) -> TokenIssuer:
    return TokenIssuer(eks_issuer(ids), demo_key, clock=clock, ids=ids)


@pytest.fixture(name="lab_ca", scope="session")
def lab_ca_fixture() -> LabCA:
    return LabCA.create()


@dataclass
class OidcHost:
    """The OIDC host served over HTTPS on loopback, with a way to GET from it."""

    base: str
    ca: LabCA
    trace: Trace

    def get(self, url: str, accept: str | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(url)  # noqa: S310 - https to loopback only
        if accept:
            req.add_header("Accept", accept)
        ctx: ssl.SSLContext = self.ca.client_context()
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:  # noqa: S310
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, dict(err.headers), err.read()


@pytest.fixture(name="oidc_host")
def oidc_host_fixture(issuer: TokenIssuer, lab_ca: LabCA, clock: ManualClock) -> Iterator[OidcHost]:
    loop = ServerLoop("test-oidc").start()
    trace = Trace(clock)
    try:
        served = loop.serve(
            "oidc", make_app(issuer, trace=trace), tls=lab_ca.issue().server_context()
        )
        yield OidcHost(served.url, lab_ca, trace)
    finally:
        loop.stop()


@dataclass
class FakeApiServer:
    """Just enough of TokenRequest (§1.1 step 9) for the kubelet: sign and echo ``spec``."""

    issuer: TokenIssuer
    clock: ManualClock
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    statuses: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    fail_with: Exception | None = None
    echo_expiration: bool = True

    def token_request(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((namespace, name, json.loads(json.dumps(body))))
        if self.fail_with is not None:
            raise self.fail_with
        spec = dict(body.get("spec") or {})
        spec.setdefault("expirationSeconds", 3600)
        ref = spec.get("boundObjectRef")
        issued = self.issuer.issue(
            namespace=namespace,
            service_account=(name, SA_UID),
            audiences=spec.get("audiences") or [],
            expiration_seconds=spec["expirationSeconds"],
            pod=(ref["name"], ref["uid"]) if ref else None,
            node=(NODE_NAME, NODE_UID) if ref else None,
        )
        now = self.clock.now()
        echoed = dict(spec)
        if not self.echo_expiration:
            del echoed["expirationSeconds"]
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "uid": SA_UID},
            "spec": echoed,
            "status": {
                "token": issued.token,
                "expirationTimestamp": rfc3339(now + spec["expirationSeconds"]),
            },
        }

    def set_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        self.statuses.append((namespace, name, status))


@pytest.fixture(name="fake_api")
def fake_api_fixture(issuer: TokenIssuer, clock: ManualClock) -> FakeApiServer:
    return FakeApiServer(issuer, clock)


@pytest.fixture(name="kubelet")
def kubelet_fixture(
    tmp_path: Path, fake_api: FakeApiServer, clock: ManualClock, ids: Ids
) -> Kubelet:
    return Kubelet(
        root=tmp_path / "kubelet",
        request_token=fake_api.token_request,
        ca_pem=CA_PEM,
        clock=clock,
        ids=ids,
        trace=Trace(clock),
        set_status=fake_api.set_status,
    )


def irsa_pod(
    *,
    token_expiration: int = 86400,
    security_context: dict[str, Any] | None = None,
    uid: str = POD_UID,
) -> dict[str, Any]:
    """The article's pod after admission: kube-api-access volume plus the webhook's patch."""
    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": POD_NAME, "namespace": NAMESPACE, "uid": uid},
        "spec": {
            "serviceAccountName": SERVICE_ACCOUNT,
            "nodeName": NODE_NAME,
            "containers": [
                {
                    "name": "aws-cli",
                    "image": "amazon/aws-cli",
                    "env": [
                        {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
                        {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"},
                        {"name": "AWS_REGION", "value": "eu-west-1"},
                        {"name": "AWS_ROLE_ARN", "value": ROLE_ARN},
                        {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE},
                    ],
                    "volumeMounts": [
                        {
                            "name": "kube-api-access-x7k2p",
                            "mountPath": SA_MOUNT_PATH,
                            "readOnly": True,
                        },
                        {
                            "name": TOKEN_VOLUME_NAME,
                            "mountPath": TOKEN_MOUNT_PATH,
                            "readOnly": True,
                        },
                    ],
                }
            ],
            "volumes": [
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                    },
                },
                {
                    "name": TOKEN_VOLUME_NAME,
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "audience": DEFAULT_AUDIENCE,
                                    "expirationSeconds": token_expiration,
                                    "path": "token",
                                }
                            }
                        ],
                    },
                },
            ],
        },
    }
    if security_context is not None:
        pod["spec"]["securityContext"] = security_context
    return pod
