"""When a link of the chain breaks, the lab fails the way EKS does, loses nothing and never hangs.

Each test runs the whole embedded stack and breaks one thing on purpose: the webhook
killed during a load run, a webhook slower than its timeout, the OIDC host gone, the
signing key rotated, the clock moved, the state directory removed, a port taken.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore
import botocore.auth
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from kubernetes.client.rest import ApiException

from irsa_lab import constants as C
from irsa_lab import web
from irsa_lab.clock import ManualClock
from irsa_lab.httpd import bind_socket
from irsa_lab.jose import decode_unverified
from irsa_lab.pki import SigningKey
from irsa_lab.session import Lab, close_api_client
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock

# --- helpers --------------------------------------------------------------------------------


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    stack = EmbeddedLab(state_dir=tmp_path / "state", seed=DEFAULT_SEED, clock=lab_clock(True))
    stack.start()
    the_lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    try:
        yield the_lab
    finally:
        the_lab.close()


def stack_of(lab: Lab) -> EmbeddedLab:
    assert lab.embedded is not None
    return lab.embedded


def pod_body(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": C.NAMESPACE},
        "spec": {
            "serviceAccountName": C.SERVICE_ACCOUNT,
            "containers": [{"name": "app", "image": "amazon/aws-cli"}],
        },
    }


def mutation_of(pod: dict[str, Any]) -> str:
    """'full' when the pod carries all the webhook adds, 'none' when nothing, else 'half'."""
    container = pod["spec"]["containers"][0]
    env = {e["name"] for e in container.get("env") or []}
    has_env = C.ENV_ROLE_ARN in env and C.ENV_WEB_IDENTITY_TOKEN_FILE in env
    has_volume = any(v["name"] == C.TOKEN_VOLUME_NAME for v in pod["spec"].get("volumes") or [])
    has_mount = any(m["name"] == C.TOKEN_VOLUME_NAME for m in container.get("volumeMounts") or [])
    parts = (has_env, has_volume, has_mount)
    return "full" if all(parts) else "none" if not any(parts) else "half"


def stored_pods(lab: Lab) -> dict[str, dict[str, Any]]:
    items, _ = stack_of(lab).apiserver.store.list("pods", C.NAMESPACE)
    return {p["metadata"]["name"]: p for p in items}


def create_under_load(
    lab: Lab, count: int, threads: int, halfway: Any
) -> dict[str, tuple[int, str]]:
    """Create ``count`` pods from ``threads`` clients; ``halfway()`` runs once a third are in.

    Returns pod name -> (HTTP status, message) as each client saw it.
    """
    from kubernetes import client, config

    results: dict[str, tuple[int, str]] = {}
    lock = threading.Lock()
    names = iter(range(count))
    fired = threading.Event()
    apis: list[Any] = []

    def worker() -> None:
        api = config.new_client_from_config(config_file=lab.endpoints["kubeconfig"])
        with lock:
            apis.append(api)
        core = client.CoreV1Api(api)
        while True:
            with lock:
                i = next(names, None)
                done = len(results)
            if i is None:
                return
            if done >= count // 3 and not fired.is_set():
                with lock:
                    if not fired.is_set():
                        fired.set()
                        halfway()
            name = f"load-{i}"
            try:
                core.create_namespaced_pod(C.NAMESPACE, pod_body(name), _preload_content=False)
                outcome = (201, "")
            except ApiException as exc:
                outcome = (exc.status, json.loads(exc.body)["message"])
            with lock:
                results[name] = outcome

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(120)
    for api in apis:
        close_api_client(api)
    assert fired.is_set()
    return results


def sts_client(lab: Lab) -> Any:
    return boto3.session.Session(region_name=C.REGION).client(
        "sts",
        endpoint_url=lab.endpoints["sts"],
        verify=lab.endpoints["ca_bundle"],
        config=Config(signature_version=botocore.UNSIGNED),
    )


def fresh_token(lab: Lab, seconds: int = 86400) -> str:
    return (
        stack_of(lab)
        .issuer.issue(
            namespace=C.NAMESPACE,
            service_account=(C.SERVICE_ACCOUNT, "faults-sa-uid"),
            audiences=[C.DEFAULT_AUDIENCE],
            expiration_seconds=seconds,
        )
        .token
    )


def assume(lab: Lab, token: str) -> dict[str, Any]:
    sts = sts_client(lab)
    try:
        return dict(
            sts.assume_role_with_web_identity(
                RoleArn=C.ROLE_ARN, RoleSessionName="faults", WebIdentityToken=token
            )
        )
    finally:
        sts.close()


# --- the webhook dies mid-load --------------------------------------------------------------


def test_webhook_killed_mid_load_with_ignore_stores_every_pod_whole_or_unmutated(
    lab: Lab,
) -> None:
    stack = stack_of(lab)
    policy = lab.get_webhook_configuration()["webhooks"][0]["failurePolicy"]
    assert policy == "Ignore"  # what the upstream deployment sets
    results = create_under_load(lab, 300, 16, stack.stop_webhook)
    assert {status for status, _ in results.values()} == {201}
    pods = stored_pods(lab)
    assert set(pods) == set(results)  # none lost
    kinds = [mutation_of(p) for p in pods.values()]
    assert "half" not in kinds
    assert kinds.count("full") >= 100 and kinds.count("none") >= 1
    ignored = [r for r in stack.apiserver.admission_log if r.outcome == "ignored"]
    assert ignored and "connection refused" in (ignored[-1].error or "")
    # Back up: the next pod is mutated again.
    stack.start_webhook()
    assert mutation_of(lab.create_pod(pod_body("after"))) == "full"


def test_webhook_killed_mid_load_with_fail_refuses_with_the_api_servers_message(
    lab: Lab,
) -> None:
    stack = stack_of(lab)
    config = lab.get_webhook_configuration()
    config["webhooks"][0]["failurePolicy"] = "Fail"
    lab.admissionregistration.replace_mutating_webhook_configuration(C.WEBHOOK_CONFIG_NAME, config)
    assert lab.get_webhook_configuration()["webhooks"][0]["failurePolicy"] == "Fail"
    webhook_url = stack.webhook_url
    results = create_under_load(lab, 300, 16, stack.stop_webhook)
    created = {n for n, (status, _) in results.items() if status == 201}
    refused = {n: msg for n, (status, msg) in results.items() if status != 201}
    assert len(created) >= 100 and refused
    assert {results[n][0] for n in refused} == {500}
    for message in refused.values():
        assert message.startswith(
            f'Internal error occurred: failed calling webhook "{C.WEBHOOK_NAME}": '
            f'failed to call webhook: Post "{webhook_url}'
        ), message
    pods = stored_pods(lab)
    assert set(pods) == created  # every 201 is stored, no refused pod is
    assert {mutation_of(p) for p in pods.values()} == {"full"}


# --- a webhook slower than its timeout ------------------------------------------------------


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_a_slow_second_webhook_times_out_after_its_timeout_and_follows_its_policy(
    lab: Lab, policy: str
) -> None:
    stack = stack_of(lab)
    calls: list[float] = []

    async def slow(request: web.Request) -> web.Response:
        calls.append(time.monotonic())
        await request.read()
        await __import__("asyncio").sleep(3)
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/slow", slow)
    served = stack.loop.serve("slow-webhook", app, tls=stack.ca.issue().server_context())
    lab.admissionregistration.create_mutating_webhook_configuration(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "slow-webhook"},
            "webhooks": [
                {
                    "name": "slow.test.lab",
                    "admissionReviewVersions": ["v1"],
                    "clientConfig": {
                        "url": served.url + "/slow",
                        "caBundle": base64.b64encode(stack.ca.cert_pem).decode(),
                    },
                    "failurePolicy": policy,
                    "sideEffects": "None",
                    "timeoutSeconds": 1,
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ],
                }
            ],
        }
    )
    started = time.monotonic()
    if policy == "Ignore":
        pod = lab.create_pod(pod_body("slow"))
        assert mutation_of(pod) == "full"  # the pod identity webhook still did its part
    else:
        with pytest.raises(ApiException) as exc:
            lab.create_pod(pod_body("slow"))
        assert exc.value.status == 500
        message = json.loads(exc.value.body)["message"]
        assert message == (
            'Internal error occurred: failed calling webhook "slow.test.lab": failed to call '
            f'webhook: Post "{served.url}/slow?timeout=1s": context deadline exceeded'
        )
        assert "slow" not in stored_pods(lab)
    took = time.monotonic() - started
    assert len(calls) == 1 and 1.0 <= took < 2.5


# --- the issuer cannot be reached -----------------------------------------------------------


def test_an_unreachable_issuer_is_idp_communication_error_retried_by_boto3(lab: Lab) -> None:
    stack = stack_of(lab)
    token = fresh_token(lab)
    stack.aws.fetcher.invalidate()  # the brief names it `.fetcher`; it lives on the AWS side
    stack.loop.unserve("oidc")
    mark = stack.trace.mark()
    with pytest.raises(ClientError) as exc:
        assume(lab, token)
    err = exc.value.response["Error"]
    assert err["Code"] == "IDPCommunicationError"
    assert "Couldn't retrieve verification key from your identity provider" in err["Message"]
    events = stack.trace.since(mark)
    requests = [e for e in events if (e.source, e.target) == ("sdk", "sts")]
    replies = [
        e for e in events if (e.source, e.call) == ("sts", "AssumeRoleWithWebIdentity reply")
    ]
    # botocore retries IDPCommunicationError for STS, as it does against AWS: 3 requests.
    assert exc.value.response["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(requests) == 3
    assert [e.outcome for e in replies] == ["IDPCommunicationError"] * 3
    fetches = [e for e in events if e.target == "oidc" and e.call == "GET openid-configuration"]
    assert len(fetches) == 3  # nothing cached: each retry tries the issuer again


# --- signing-key rotation -------------------------------------------------------------------


def test_after_key_rotation_tokens_carry_the_new_kid_and_sts_fetches_the_new_jwks(
    lab: Lab,
) -> None:
    stack = stack_of(lab)
    before = fresh_token(lab)
    assert assume(lab, before)["Credentials"]["AccessKeyId"]  # keys now cached by STS
    old_kid = decode_unverified(before)[0]["kid"]
    stack.issuer.rotate(SigningKey.generate())
    after = fresh_token(lab)
    new_kid = decode_unverified(after)[0]["kid"]
    assert new_kid != old_kid
    assert {k["kid"] for k in lab.jwks()["keys"]} == {old_kid, new_kid}
    mark = stack.trace.mark()
    assert assume(lab, after)["AssumedRoleUser"]["Arn"].endswith("/faults")
    fetched = [e for e in stack.trace.since(mark) if e.target == "oidc" and e.call == "GET keys"]
    assert fetched and new_kid in fetched[-1].detail["kids"]
    assert assume(lab, before)["Credentials"]["AccessKeyId"]  # the old key is still published


# --- clock skew -----------------------------------------------------------------------------


def lab_clock_of(lab: Lab) -> ManualClock:
    clock = stack_of(lab).clock
    assert isinstance(clock, ManualClock)
    return clock


def test_a_token_from_the_future_is_not_yet_valid_for_sts(lab: Lab) -> None:
    token = fresh_token(lab)
    lab_clock_of(lab).advance(-3600)
    with pytest.raises(ClientError) as exc:
        assume(lab, token)
    err = exc.value.response["Error"]
    assert err["Code"] == "InvalidIdentityToken"
    assert err["Message"].startswith("Token not yet valid: current date/time ")


def test_an_expired_token_is_expired_token_exception(lab: Lab) -> None:
    token = fresh_token(lab, seconds=3600)
    lab_clock_of(lab).advance(3600 + 301)
    with pytest.raises(ClientError) as exc:
        assume(lab, token)
    err = exc.value.response["Error"]
    assert err["Code"] == "ExpiredTokenException"
    assert err["Message"].startswith("Token expired: current date/time ")


def test_a_token_has_no_expiry_skew_allowance(lab: Lab) -> None:
    # Real STS refused a token 198 s past exp (awslabs/aws-orbit-workbench#707): no leeway.
    token = fresh_token(lab, seconds=3600)
    lab_clock_of(lab).advance(3600 - 1)
    assert assume(lab, token)["Credentials"]["AccessKeyId"]
    lab_clock_of(lab).advance(1 + 299)
    with pytest.raises(ClientError) as exc:
        assume(lab, token)
    assert exc.value.response["Error"]["Code"] == "ExpiredTokenException"


@pytest.mark.parametrize("minutes", [-20, 20])
def test_a_sigv4_request_signed_more_than_15_minutes_off_is_signature_expired(
    lab: Lab, monkeypatch: pytest.MonkeyPatch, minutes: int
) -> None:
    real = botocore.auth.get_current_datetime

    def skewed(remove_tzinfo: bool = True) -> datetime.datetime:
        return real(remove_tzinfo) + datetime.timedelta(minutes=minutes)

    monkeypatch.setattr(botocore.auth, "get_current_datetime", skewed)
    iam = lab.aws_client("iam")
    try:
        with pytest.raises(ClientError) as exc:
            iam.list_roles()
    finally:
        iam.close()
    err = exc.value.response["Error"]
    assert err["Code"] == "SignatureDoesNotMatch"
    assert err["Message"].startswith("Signature expired:" if minutes < 0 else "Signature not yet")


# --- the state directory removed while running ----------------------------------------------


def test_removing_the_state_directory_leaves_the_stack_serving_and_env_says_no_lab(
    tmp_path: Path,
) -> None:
    import shutil

    state = tmp_path / "state"
    cli = [sys.executable, "-m", "irsa_lab.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [*cli, "up", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while not (state / "endpoints.json").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        time.sleep(0.2)  # endpoints.json is renamed into place whole; lab.pid follows
        endpoints = json.loads((state / "endpoints.json").read_text())
        ca_pem = Path(endpoints["ca_bundle"]).read_text()
        shutil.rmtree(state)

        ctx = ssl.create_default_context(cadata=ca_pem)
        for url in (endpoints["apiserver"] + "/version", endpoints["oidc"] + "/keys"):
            with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # noqa: S310
                assert resp.status == 200
        ca_file = tmp_path / "ca.crt"
        ca_file.write_text(ca_pem)
        sts = boto3.session.Session(
            region_name=C.REGION,
            aws_access_key_id=endpoints["admin_access_key_id"],
            aws_secret_access_key=endpoints["admin_secret_access_key"],
        ).client("sts", endpoint_url=endpoints["sts"], verify=str(ca_file))
        try:
            assert sts.get_caller_identity()["Account"] == C.ACCOUNT_ID
        finally:
            sts.close()

        shown = subprocess.run(
            [*cli, "env", "--state-dir", str(state)], capture_output=True, text=True, env=env
        )
        assert shown.returncode != 0 and shown.stdout == ""
        assert f"no running lab in {state}" in shown.stderr
        assert "Traceback" not in shown.stderr
        assert proc.poll() is None  # still running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


# --- ports ----------------------------------------------------------------------------------


def test_binding_a_port_that_is_taken_raises_address_in_use() -> None:
    taken = bind_socket(0)
    port = taken.getsockname()[1]
    try:
        with pytest.raises(OSError, match="Address already in use") as exc:
            bind_socket(port)
        assert exc.value.errno == 98  # EADDRINUSE
    finally:
        taken.close()


def test_two_stacks_run_side_by_side_on_free_ports(tmp_path: Path) -> None:
    first = EmbeddedLab(state_dir=tmp_path / "a", seed=DEFAULT_SEED, clock=lab_clock(True))
    second = EmbeddedLab(state_dir=tmp_path / "b", seed=DEFAULT_SEED, clock=lab_clock(True))
    with first, second:
        ports_a = {s.port for s in first.loop.served().values()}
        ports_b = {s.port for s in second.loop.served().values()}
        # oidc, sts, iam, s3, ec2, imds (node), imds (pod), eks, eks-auth, the Pod Identity
        # agent, apiserver, webhook, admin
        assert len(ports_a) == len(ports_b) == 13 and not ports_a & ports_b
        for stack in (first, second):
            ctx = ssl.create_default_context(cafile=stack.endpoints.ca_bundle)
            url = stack.endpoints.apiserver + "/version"
            with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:  # noqa: S310
                assert resp.status == 200
