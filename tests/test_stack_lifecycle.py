"""Starting and stopping the embedded stack again and again leaves nothing behind; the
webhook's ServiceAccount lookup in the running stack."""

from __future__ import annotations

import gc
import http.client
import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from irsa_lab import client_http
from irsa_lab import constants as C
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock
from irsa_lab.webhook.settings import LAB_LOOKUP_GRACE_PERIOD_S

CYCLES = 200


def socket_fds() -> int:
    """How many of this process's file descriptors are sockets."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:  # the fd of the listing itself, closed by now
            continue
    return count


def thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


def one_cycle(state_dir: Path) -> None:
    stack = EmbeddedLab(state_dir=state_dir, seed=DEFAULT_SEED, clock=lab_clock(True)).start()
    stack.stop()


def test_stop_removes_endpoints_json_and_a_second_stop_does_nothing(tmp_path: Path) -> None:
    stack = EmbeddedLab(state_dir=tmp_path, seed=DEFAULT_SEED, clock=lab_clock(True)).start()
    assert (tmp_path / "endpoints.json").exists()
    stack.stop()
    assert not (tmp_path / "endpoints.json").exists()
    assert stack.loop.served() == {} and not stack.loop.running
    stack.stop()


@pytest.mark.slow
def test_two_hundred_start_stop_cycles_leave_no_thread_and_no_socket(tmp_path: Path) -> None:
    one_cycle(tmp_path)  # first start imports and caches what a stack needs
    # ... and starts the one background import of aiohttp (irsa_lab.client_http), whose
    # thread ends once it is done: wait for it, or it is counted as leaked when this test
    # runs before any other test has imported aiohttp.
    client_http.preload().result(timeout=30)
    for thread in threading.enumerate():
        if thread.name == "irsa-lab-preload":
            thread.join(timeout=30)
    gc.collect()
    threads_before, sockets_before = thread_names(), socket_fds()
    started = time.perf_counter()
    for _ in range(CYCLES):
        one_cycle(tmp_path)
    took = time.perf_counter() - started
    gc.collect()
    assert thread_names() == threads_before
    assert socket_fds() == sockets_before
    # Generous bound: about 0.1 s a cycle here (the API server ends open watches at stop).
    assert took < CYCLES * 2.0


# --- the webhook's ServiceAccount lookup in the running stack -------------------------------

PATIENCE_S = 30.0  # generous bound on waits; also the longest webhook timeout allowed


class Api:
    """Raw HTTPS to the stack's API server, as the admin, on one keep-alive connection."""

    def __init__(self, stack: EmbeddedLab) -> None:
        url = urlsplit(stack.endpoints.apiserver)
        ctx = ssl.create_default_context(cafile=stack.endpoints.ca_bundle)
        self.conn = http.client.HTTPSConnection(
            url.hostname or "", url.port, context=ctx, timeout=PATIENCE_S * 2
        )
        self.token = stack.api_token

    def call(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}
        data = json.dumps(body).encode() if body is not None else None
        self.conn.request(method, path, data, headers)
        resp = self.conn.getresponse()
        out = json.loads(resp.read())
        assert resp.status in (200, 201), out
        return out

    def annotate(self, sa: str, role: str | None) -> None:
        """``kubectl annotate`` (``--overwrite``, or ``role-arn-`` to remove it)."""
        patch = {"metadata": {"annotations": {C.ROLE_ARN_ANNOTATION: role}}}
        self.call(
            "PATCH",
            f"/api/v1/namespaces/default/serviceaccounts/{sa}",
            patch,
            "application/merge-patch+json",
        )

    def create_pod(self, name: str, sa: str) -> dict[str, Any]:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "app", "image": "i"}]},
        }
        return self.call("POST", "/api/v1/namespaces/default/pods", pod)


def role_of(pod: dict[str, Any]) -> str | None:
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env") or []}
    return env.get(C.ENV_ROLE_ARN)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedLab]:
    lab = EmbeddedLab(state_dir=tmp_path, seed=DEFAULT_SEED, clock=lab_clock(True)).start()
    try:
        yield lab
    finally:
        lab.stop()


def test_the_webhook_waits_for_serviceaccount_changes_and_the_api_server_does_not(
    stack: EmbeddedLab,
) -> None:
    # The API server has no hook to wait on anything before admission.
    assert not hasattr(stack.apiserver, "before_admission")
    settings = stack.webhook_settings
    assert settings.service_account_lookup_grace_period == LAB_LOOKUP_GRACE_PERIOD_S
    assert settings.service_account_lookup_consistent


def test_pods_created_right_after_each_annotate_see_the_annotation(stack: EmbeddedLab) -> None:
    api = Api(stack)
    api.call("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "sa"}})
    try:
        for i in range(20):
            role = C.ROLE_ARN if i % 2 == 0 else None
            api.annotate("sa", role)
            assert role_of(api.create_pod(f"p{i}", "sa")) == role, f"pod {i}"
    finally:
        api.conn.close()


def test_a_pod_created_right_after_annotate_is_mutated_even_when_the_watch_is_late(
    stack: EmbeddedLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Plenty of time for this test's steps, whatever the machine's load: a long grace
    # period, and the longest webhook timeout the API server accepts.
    stack.stop_webhook()
    stack.webhook_settings = replace(
        stack.webhook_settings, service_account_lookup_grace_period=PATIENCE_S
    )
    stack.start_webhook()
    api = Api(stack)
    api.call(
        "PATCH",
        f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{C.WEBHOOK_CONFIG_NAME}",
        [{"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": int(PATIENCE_S)}],
        "application/json-patch+json",
    )
    api.call("POST", "/api/v1/namespaces/default/serviceaccounts", {"metadata": {"name": "sa"}})
    watcher, cache = stack.sa_cache, stack.sa_cache.cache
    assert cache.wait(lambda: cache.get("default", "sa") == {}, PATIENCE_S)

    # From now on the webhook's watch runs late: it holds every event it receives.
    held: list[Any] = []
    apply = watcher._apply
    monkeypatch.setattr(watcher, "_apply", held.append)
    api.annotate("sa", C.ROLE_ARN)

    answers: list[dict[str, Any]] = []

    def create() -> None:
        other = Api(stack)
        try:
            answers.append(other.create_pod("p", "sa"))
        finally:
            other.conn.close()

    creator = threading.Thread(target=create)
    creator.start()
    assert cache.wait(lambda: cache.waiting >= 1, PATIENCE_S), "the lookup never waited"
    assert answers == []  # held until the webhook's cache has the annotation

    async def catch_up() -> None:
        monkeypatch.setattr(watcher, "_apply", apply)
        for event in held:
            apply(event)

    stack.loop.call(catch_up())
    creator.join(PATIENCE_S * 2)
    api.conn.close()
    assert role_of(answers[0]) == C.ROLE_ARN
    # The webhook said nothing unusual: it found the account's current version in time.
    review = [e for e in stack.trace.events() if "mutated" in e.detail][-1]
    assert review.target == "webhook" and review.detail["mutated"]
    assert "lookup" not in review.detail
