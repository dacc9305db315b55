"""Under load the stack loses nothing: every pod stored and mutated, every STS answer right.

Pods go over raw HTTPS with keep-alive from 16 threads (the kubernetes client's own
overhead would triple the run time; tests/test_admission.py and bench/run.py cover it).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore
import pytest
from botocore.config import Config

from irsa_lab import constants as C
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[EmbeddedLab]:
    lab = EmbeddedLab(state_dir=tmp_path, seed=DEFAULT_SEED, clock=lab_clock(True)).start()
    try:
        yield lab
    finally:
        lab.stop()


def pod_body(name: str) -> bytes:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "serviceAccountName": C.SERVICE_ACCOUNT,
                "containers": [{"name": "app", "image": "amazon/aws-cli"}],
            },
        }
    ).encode()


def is_mutated(pod: dict[str, Any]) -> bool:
    container = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env") or []}
    mounts = {m["mountPath"] for m in container.get("volumeMounts") or []}
    volumes = {v["name"] for v in pod["spec"].get("volumes") or []}
    return (
        env.get(C.ENV_ROLE_ARN) == C.ROLE_ARN
        and env.get(C.ENV_WEB_IDENTITY_TOKEN_FILE) == C.TOKEN_FILE
        and C.TOKEN_MOUNT_PATH in mounts
        and C.TOKEN_VOLUME_NAME in volumes
    )


def create_pods(stack: EmbeddedLab, count: int, clients: int) -> dict[str, dict[str, Any]]:
    """Create ``count`` pods from ``clients`` threads, each on one keep-alive HTTPS connection."""
    url = urlsplit(stack.endpoints.apiserver)
    ctx = ssl.create_default_context(cafile=stack.endpoints.ca_bundle)
    headers = {"Authorization": f"Bearer {stack.api_token}", "Content-Type": "application/json"}
    answers: dict[str, dict[str, Any]] = {}
    failures: list[str] = []
    lock = threading.Lock()
    names = iter(range(count))

    def client() -> None:
        conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=60)
        try:
            while True:
                with lock:
                    i = next(names, None)
                if i is None:
                    return
                name = f"load-{i}"
                conn.request("POST", "/api/v1/namespaces/default/pods", pod_body(name), headers)
                resp = conn.getresponse()
                body = resp.read()
                with lock:
                    if resp.status == 201:
                        answers[name] = json.loads(body)
                    else:
                        failures.append(f"{name}: {resp.status} {body[:200]!r}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert failures == []
    return answers


def check_pods(stack: EmbeddedLab, answers: dict[str, dict[str, Any]], count: int) -> None:
    stored = {p["metadata"]["name"]: p for p in stack.apiserver.store.list("pods", "default")[0]}
    assert len(answers) == count
    assert set(stored) == set(answers)  # none lost, none extra
    assert len({p["metadata"]["uid"] for p in stored.values()}) == count
    assert all(is_mutated(p) for p in answers.values())
    assert all(is_mutated(p) for p in stored.values())


def test_five_hundred_pods_from_sixteen_clients_are_all_stored_and_mutated(
    stack: EmbeddedLab,
) -> None:
    check_pods(stack, create_pods(stack, 500, 16), 500)


@pytest.mark.slow
def test_ten_thousand_pods_from_sixteen_clients_are_all_stored_and_mutated(
    stack: EmbeddedLab,
) -> None:
    started = time.perf_counter()
    answers = create_pods(stack, 10_000, 16)
    took = time.perf_counter() - started
    check_pods(stack, answers, 10_000)
    # 55 to 155 s on a shared 2-core machine; the bound only catches a hang or a collapse.
    assert took < 600


# --- STS --------------------------------------------------------------------------------------


def assume_many(stack: EmbeddedLab, calls: int, threads: int) -> list[dict[str, Any]]:
    """``calls`` AssumeRoleWithWebIdentity calls from ``threads`` boto3 clients at once."""
    token = stack.issuer.issue(
        namespace=C.NAMESPACE,
        service_account=(C.SERVICE_ACCOUNT, "load-sa-uid"),
        audiences=[C.DEFAULT_AUDIENCE],
        expiration_seconds=86400,
    ).token
    local = threading.local()
    made: list[Any] = []
    lock = threading.Lock()
    ready = threading.Barrier(threads)

    def sts() -> Any:
        if not hasattr(local, "client"):
            local.client = boto3.session.Session(region_name=C.REGION).client(
                "sts",
                endpoint_url=stack.endpoints.sts,
                verify=stack.endpoints.ca_bundle,
                config=Config(signature_version=botocore.UNSIGNED, max_pool_connections=2),
            )
            with lock:
                made.append(local.client)
        return local.client

    def warm(_: int) -> None:
        sts()
        ready.wait(60)  # every thread holds its client: the calls below start together

    def call(i: int) -> dict[str, Any]:
        return dict(
            sts().assume_role_with_web_identity(
                RoleArn=C.ROLE_ARN, RoleSessionName=f"load-{i}", WebIdentityToken=token
            )
        )

    try:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(warm, range(threads)))
            return list(pool.map(call, range(calls)))
    finally:
        for client in made:
            client.close()


def check_answers(stack: EmbeddedLab, answers: list[dict[str, Any]], calls: int) -> None:
    assert len(answers) == calls
    sub = f"system:serviceaccount:{C.NAMESPACE}:{C.SERVICE_ACCOUNT}"
    for i, out in enumerate(answers):
        assert out["AssumedRoleUser"]["Arn"] == (
            f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/{C.ROLE_NAME}/load-{i}"
        )
        assert out["SubjectFromWebIdentityToken"] == sub
        assert out["Audience"] == C.DEFAULT_AUDIENCE
    keys = {out["Credentials"]["AccessKeyId"] for out in answers}
    assert len(keys) == calls  # each call its own credentials
    assert keys <= set(stack.account.credentials)  # and each registered for SigV4


def test_five_hundred_concurrent_sts_calls_all_get_their_own_right_credentials(
    stack: EmbeddedLab,
) -> None:
    check_answers(stack, assume_many(stack, 500, 64), 500)


@pytest.mark.slow
def test_five_thousand_sts_calls_from_64_threads_are_all_correct(stack: EmbeddedLab) -> None:
    check_answers(stack, assume_many(stack, 5000, 64), 5000)
