"""Helpers for the API server stand-in tests: a running server, a kubeconfig, a test webhook.

Test modules wrap :func:`running_kube_lab` and :func:`serve_webhook` in their own
two-line fixtures (pytest fixtures imported by name would shadow test arguments).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config

from irsa_lab import web
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.httpd import ServerLoop
from irsa_lab.ids import Ids
from irsa_lab.kube.apiserver import ApiServer
from irsa_lab.kube.kubeconfig import write_kubeconfig
from irsa_lab.kube.tokens import TokenIssuer
from irsa_lab.pki import LabCA, SigningKey
from irsa_lab.session import close_api_client
from irsa_lab.trace import Trace

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"


@dataclass
class KubeLab:
    """A running API stand-in with everything a test needs to reach it."""

    loop: ServerLoop
    ca: LabCA
    api: ApiServer
    url: str
    kubeconfig: Path
    clock: ManualClock
    trace: Trace

    clients: list[client.ApiClient] = field(default_factory=list)

    def api_client(self) -> client.ApiClient:
        """A ``kubernetes`` client configured from the written kubeconfig (closed at teardown)."""
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        api = client.ApiClient(cfg)
        self.clients.append(api)
        return api

    def close_clients(self) -> None:
        """Close every client's connection pool, so no socket outlives the test."""
        for api in self.clients:
            close_api_client(api)
        self.clients.clear()

    def core(self) -> client.CoreV1Api:
        """``CoreV1Api`` on :meth:`api_client`."""
        return client.CoreV1Api(self.api_client())


@functools.cache
def signing_key() -> SigningKey:
    """One RSA key per test session (generating one takes tens of milliseconds)."""
    return SigningKey.generate()


@contextlib.contextmanager
def running_kube_lab(tmp_path: Path) -> Iterator[KubeLab]:
    """A fresh API stand-in over HTTPS on 127.0.0.1, seeded and on a manual clock."""
    clock = ManualClock(LAB_EPOCH)
    ids = Ids(7)
    trace = Trace(clock)
    ca = LabCA.create()
    issuer = TokenIssuer(ISSUER, signing_key(), clock=clock, ids=ids)
    loop = ServerLoop("kube-test").start()
    services: dict[tuple[str, str], str] = {}
    api = ApiServer(
        issuer=issuer,
        clock=clock,
        ids=ids,
        trace=trace,
        ca=ca,
        service_resolver=lambda s: services[(s["namespace"], s["name"])],
    )
    api.services = services  # type: ignore[attr-defined]  # tests register webhook services here
    served = api.serve(loop)
    kc = write_kubeconfig(tmp_path / "kubeconfig", served.url, ca.cert_pem, api.token)
    lab = KubeLab(loop, ca, api, served.url, kc, clock, trace)
    try:
        yield lab
    finally:
        lab.close_clients()
        # Let the server see the clients' FINs: a TLS transport still open when the loop
        # closes is reported as an unclosed-transport ResourceWarning.
        loop.call(asyncio.sleep(0.05))
        loop.stop()


@dataclass
class TestWebhook:
    """A mutating webhook for tests: records what it receives, answers as told.

    ``respond(review) -> dict`` builds the AdmissionReview answer; the default
    allows and adds the label ``mutated=yes`` with a JSON patch. ``delay`` seconds
    are slept before answering.
    """

    __test__ = False  # not a test class despite its name

    url: str = ""
    ca_bundle: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    delay: float = 0.0
    respond: Callable[[dict[str, Any]], Any] | None = None

    @staticmethod
    def patch_response(review: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
        """An allowing answer carrying ``ops`` as a base64 JSON patch."""
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {
                "uid": review["request"]["uid"],
                "allowed": True,
                "patchType": "JSONPatch",
                "patch": base64.b64encode(json.dumps(ops).encode()).decode(),
            },
        }

    def default_response(self, review: dict[str, Any]) -> dict[str, Any]:
        """Label the pod ``mutated=yes`` (creating ``labels`` when the pod has none)."""
        labels = review["request"]["object"]["metadata"].get("labels")
        op = (
            {"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}
            if labels
            else {"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}
        )
        return self.patch_response(review, [op])

    def app(self) -> web.Application:
        """The aiohttp app serving ``POST /mutate``."""

        async def mutate(request: web.Request) -> web.StreamResponse:
            review = await request.json()
            self.received.append(review)
            self.headers.append(dict(request.headers))
            self.queries.append(request.query_string)
            if self.delay:
                await asyncio.sleep(self.delay)
            answer = (self.respond or self.default_response)(review)
            if isinstance(answer, web.StreamResponse):
                return answer
            return web.json_response(answer)

        app = web.Application()
        app.router.add_post("/mutate", mutate)
        return app

    def configuration(
        self,
        name: str = "test-webhook",
        *,
        hook_name: str = "mutate.test.lab",
        failure_policy: str = "Fail",
        timeout: int = 10,
        **extra: Any,
    ) -> dict[str, Any]:
        """A MutatingWebhookConfiguration body pointing at this webhook by URL."""
        hook: dict[str, Any] = {
            "name": hook_name,
            "clientConfig": {"url": self.url + "/mutate", "caBundle": self.ca_bundle},
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                }
            ],
            "failurePolicy": failure_policy,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": timeout,
        }
        hook.update(extra)
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": name},
            "webhooks": [hook],
        }


def serve_webhook(kube_lab: KubeLab) -> TestWebhook:
    """A :class:`TestWebhook` served over TLS with a lab-CA certificate."""
    hook = TestWebhook()
    served = kube_lab.loop.serve(
        "test-webhook", hook.app(), tls=kube_lab.ca.issue().server_context()
    )
    hook.url = served.url
    hook.ca_bundle = base64.b64encode(kube_lab.ca.cert_pem).decode()
    return hook


def pod_body(
    name: str | None = "p1",
    *,
    generate_name: str | None = None,
    sa: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A minimal pod as the Python client would send it."""
    meta: dict[str, Any] = {}
    if name:
        meta["name"] = name
    if generate_name:
        meta["generateName"] = generate_name
    if labels:
        meta["labels"] = labels
    spec: dict[str, Any] = {
        "containers": [{"name": "app", "image": "amazon/aws-cli", "command": ["sleep", "3600"]}]
    }
    if sa:
        spec["serviceAccountName"] = sa
    return {"metadata": meta, "spec": spec}
