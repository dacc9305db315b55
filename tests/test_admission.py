"""Mutating admission webhooks as the real API server calls them (docs/reference/kubernetes.md §3)."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_fixtures import KubeLab, TestWebhook, pod_body, running_kube_lab, serve_webhook
from kubernetes import client
from kubernetes.client.rest import ApiException

from irsa_lab import web
from irsa_lab.kube.admission_response import CallError, check_response
from irsa_lab.kube.webhook_configuration import (
    default_webhook_configuration,
    rule_matches,
    selector_matches,
)
from irsa_lab.kube.wire import warning_value
from irsa_lab.pki import LabCA


@pytest.fixture
def kube_lab(tmp_path: Path) -> Iterator[KubeLab]:
    with running_kube_lab(tmp_path) as lab:
        yield lab


@pytest.fixture
def webhook(kube_lab: KubeLab) -> TestWebhook:
    return serve_webhook(kube_lab)


def _create_config(lab: KubeLab, body: dict[str, Any]) -> Any:
    return client.AdmissionregistrationV1Api(
        lab.api_client()
    ).create_mutating_webhook_configuration(body)


def _status(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


# --- configuration ---------------------------------------------------------------------------


def test_webhook_configuration_gets_the_v1_defaults_shown_by_get(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    body = webhook.configuration()
    hook = body["webhooks"][0]
    for key in ("failurePolicy", "timeoutSeconds"):
        del hook[key]
    hook["clientConfig"] = {
        "service": {"namespace": "default", "name": "pod-identity-webhook", "path": "/mutate"}
    }
    _create_config(kube_lab, body)
    api = client.AdmissionregistrationV1Api(kube_lab.api_client())
    got = api.read_mutating_webhook_configuration("test-webhook").webhooks[0]
    assert got.failure_policy == "Fail" and got.match_policy == "Equivalent"
    assert got.timeout_seconds == 10 and got.reinvocation_policy == "Never"
    assert got.namespace_selector.to_dict() == client.V1LabelSelector().to_dict()
    assert got.rules[0].scope == "*" and got.client_config.service.port == 443
    assert [c.metadata.name for c in api.list_mutating_webhook_configuration().items] == [
        "test-webhook"
    ]
    api.delete_mutating_webhook_configuration("test-webhook")
    with pytest.raises(ApiException) as exc:
        api.read_mutating_webhook_configuration("test-webhook")
    assert exc.value.status == 404 and _status(exc.value)["message"] == (
        'mutatingwebhookconfigurations.admissionregistration.k8s.io "test-webhook" not found'
    )


def test_webhook_configuration_without_side_effects_or_with_a_long_timeout_is_422(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    body = webhook.configuration(timeout=31)
    del body["webhooks"][0]["sideEffects"]
    with pytest.raises(ApiException) as exc:
        _create_config(kube_lab, body)
    fields = [c["field"] for c in _status(exc.value)["details"]["causes"]]
    assert exc.value.status == 422
    assert fields == ["webhooks[0].sideEffects", "webhooks[0].timeoutSeconds"]


def test_selectors_and_rules_match_like_the_api_server() -> None:
    sel = {
        "matchLabels": {"a": "1"},
        "matchExpressions": [
            {"key": "skip", "operator": "DoesNotExist"},
            {"key": "tier", "operator": "In", "values": ["web", "api"]},
        ],
    }
    assert selector_matches(sel, {"a": "1", "tier": "web"})
    assert not selector_matches(sel, {"a": "1", "tier": "web", "skip": "true"})
    assert not selector_matches(sel, {"a": "1", "tier": "db"})
    assert selector_matches({}, {})
    rule = default_webhook_configuration(
        {
            "webhooks": [
                {
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ]
                }
            ]
        }
    )["webhooks"][0]["rules"][0]
    assert rule_matches(rule, operation="CREATE", group="", version="v1", resource="pods")
    assert not rule_matches(rule, operation="UPDATE", group="", version="v1", resource="pods")
    assert not rule_matches(rule, operation="CREATE", group="", version="v1", resource="services")


# --- the exchange ------------------------------------------------------------------------------


def test_webhook_receives_a_well_formed_review_and_its_patch_is_applied(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    _create_config(kube_lab, webhook.configuration())
    pod = kube_lab.core().create_namespaced_pod("default", pod_body(None, generate_name="web-"))
    assert pod.metadata.labels == {"mutated": "yes"}
    (review,) = webhook.received
    req = review["request"]
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    assert list(req) == [
        "uid",
        "kind",
        "resource",
        "requestKind",
        "requestResource",
        "namespace",
        "operation",
        "userInfo",
        "object",
        "oldObject",
        "dryRun",
        "options",
    ]  # no "name": generateName
    assert req["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert req["namespace"] == "default" and req["operation"] == "CREATE"
    assert req["oldObject"] is None and req["dryRun"] is False
    assert req["options"] == {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    obj = req["object"]
    assert obj["metadata"] == {
        "generateName": "web-",
        "namespace": "default",
        "creationTimestamp": None,
    }
    assert obj["spec"]["serviceAccountName"] == "default"
    assert obj["spec"]["volumes"][0]["name"].startswith("kube-api-access-")
    assert req["uid"] != pod.metadata.uid
    assert webhook.headers[0]["Content-Type"] == "application/json"
    assert webhook.queries == ["timeout=10s"]
    record = kube_lab.api.last_admission
    assert record is not None and record.outcome == "patched"
    assert record.patch == [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]
    assert record.after is not None and record.after["metadata"]["labels"] == {"mutated": "yes"}


def test_named_pod_review_carries_the_name(kube_lab: KubeLab, webhook: TestWebhook) -> None:
    _create_config(kube_lab, webhook.configuration())
    kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert webhook.received[0]["request"]["name"] == "p1"


def test_object_selector_skips_labelled_pods(kube_lab: KubeLab, webhook: TestWebhook) -> None:
    _create_config(
        kube_lab,
        webhook.configuration(
            objectSelector={
                "matchExpressions": [
                    {
                        "key": "eks.amazonaws.com/skip-pod-identity-webhook",
                        "operator": "DoesNotExist",
                    }
                ]
            }
        ),
    )
    pod = kube_lab.core().create_namespaced_pod(
        "default", pod_body("p1", labels={"eks.amazonaws.com/skip-pod-identity-webhook": "true"})
    )
    assert webhook.received == [] and "mutated" not in pod.metadata.labels
    kube_lab.core().create_namespaced_pod("default", pod_body("p2"))
    assert len(webhook.received) == 1


def test_namespace_selector_matches_the_automatic_name_label(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    _create_config(
        kube_lab,
        webhook.configuration(
            namespaceSelector={"matchLabels": {"kubernetes.io/metadata.name": "other"}}
        ),
    )
    kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert webhook.received == []


def test_webhook_down_with_ignore_lets_the_pod_through_unmutated(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    _create_config(kube_lab, webhook.configuration(failure_policy="Ignore"))
    kube_lab.loop.unserve("test-webhook")
    pod = kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert pod.metadata.labels is None
    record = kube_lab.api.last_admission
    assert record is not None and record.outcome == "ignored"
    assert "connection refused" in record.error


def test_webhook_down_with_fail_is_the_internal_error_500(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    _create_config(kube_lab, webhook.configuration())
    kube_lab.loop.unserve("test-webhook")
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    status = _status(exc.value)
    assert exc.value.status == 500 and status["reason"] == "InternalError"
    assert status["message"].startswith(
        'Internal error occurred: failed calling webhook "mutate.test.lab": failed to call '
        f'webhook: Post "{webhook.url}/mutate?timeout=10s": dial tcp 127.0.0.1:'
    )
    assert status["message"].endswith("connect: connection refused")
    assert kube_lab.api.store.list("pods", "default")[0] == []


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_webhook_slower_than_its_timeout_follows_the_failure_policy(
    kube_lab: KubeLab, webhook: TestWebhook, policy: str
) -> None:
    webhook.delay = 2.0
    _create_config(kube_lab, webhook.configuration(failure_policy=policy, timeout=1))
    core = kube_lab.core()
    if policy == "Ignore":
        assert core.create_namespaced_pod("default", pod_body("p1")).metadata.labels is None
    else:
        with pytest.raises(ApiException) as exc:
            core.create_namespaced_pod("default", pod_body("p1"))
        assert exc.value.status == 500
        assert _status(exc.value)["message"].endswith(
            f'Post "{webhook.url}/mutate?timeout=1s": context deadline exceeded'
        )
    assert webhook.queries == ["timeout=1s"]


def test_webhook_with_an_untrusted_certificate_fails_tls(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    other = base64.b64encode(LabCA.create("someone else").cert_pem).decode()
    body = webhook.configuration()
    body["webhooks"][0]["clientConfig"]["caBundle"] = other
    _create_config(kube_lab, body)
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert "x509: certificate signed by unknown authority" in _status(exc.value)["message"]
    assert webhook.received == []


@pytest.mark.parametrize("policy", ["Ignore", "Fail"])
def test_undecodable_patch_follows_the_failure_policy(
    kube_lab: KubeLab, webhook: TestWebhook, policy: str
) -> None:
    def respond(review: dict[str, Any]) -> dict[str, Any]:
        answer = webhook.patch_response(review, [])
        answer["response"]["patch"] = base64.b64encode(b"{not json").decode()
        return answer

    webhook.respond = respond
    _create_config(kube_lab, webhook.configuration(failure_policy=policy))
    if policy == "Ignore":
        pod = kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
        assert pod.metadata.labels is None
        assert "received undecodable patch" in kube_lab.api.last_admission.error  # type: ignore[union-attr]
    else:
        with pytest.raises(ApiException) as exc:
            kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
        assert exc.value.status == 500
        assert "received undecodable patch in webhook response" in _status(exc.value)["message"]


def test_patch_that_does_not_apply_is_a_500_even_under_ignore(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    webhook.respond = lambda review: webhook.patch_response(
        review, [{"op": "replace", "path": "/spec/nothing/here", "value": 1}]
    )
    _create_config(kube_lab, webhook.configuration(failure_policy="Ignore"))
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert exc.value.status == 500 and _status(exc.value)["reason"] == "InternalError"
    assert kube_lab.api.last_admission.outcome == "patch-error"  # type: ignore[union-attr]


def test_response_with_the_wrong_uid_is_a_call_error(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    webhook.respond = lambda review: {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "other", "allowed": True},
    }
    _create_config(kube_lab, webhook.configuration())
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert (
        "received invalid webhook response: expected response.uid="
        in (_status(exc.value)["message"])
    )


def test_denial_carries_the_webhooks_message_and_code(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    webhook.respond = lambda review: {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": review["request"]["uid"],
            "allowed": False,
            "status": {"message": "no role for you"},
        },
    }
    _create_config(kube_lab, webhook.configuration(failure_policy="Ignore"))
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert exc.value.status == 403
    assert _status(exc.value)["message"] == (
        'admission webhook "mutate.test.lab" denied the request: no role for you'
    )


def test_webhook_answering_500_is_a_call_error(kube_lab: KubeLab, webhook: TestWebhook) -> None:
    webhook.respond = lambda review: web.Response(status=500, text="boom")
    _create_config(kube_lab, webhook.configuration(failure_policy="Ignore"))
    assert kube_lab.core().create_namespaced_pod("default", pod_body("p1")).metadata.labels is None
    assert kube_lab.api.last_admission.outcome == "ignored"  # type: ignore[union-attr]


def test_webhook_injecting_a_short_token_projection_fails_validation(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    volume = {
        "name": "aws-iam-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": "sts.amazonaws.com",
                        "expirationSeconds": 300,
                        "path": "token",
                    }
                }
            ]
        },
    }
    webhook.respond = lambda review: webhook.patch_response(
        review, [{"op": "add", "path": "/spec/volumes/0", "value": volume}]
    )
    _create_config(kube_lab, webhook.configuration())
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert exc.value.status == 422
    assert _status(exc.value)["details"]["causes"][0]["field"] == (
        "spec.volumes[0].projected.sources[0].serviceAccountToken.expirationSeconds"
    )


def test_injected_projected_volume_gets_default_mode_420(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    volume = {
        "name": "aws-iam-token",
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": "sts.amazonaws.com",
                        "expirationSeconds": 86400,
                        "path": "token",
                    }
                }
            ]
        },
    }
    webhook.respond = lambda review: webhook.patch_response(
        review, [{"op": "add", "path": "/spec/volumes/0", "value": volume}]
    )
    _create_config(kube_lab, webhook.configuration())
    pod = kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert pod.spec.volumes[0].name == "aws-iam-token"
    assert pod.spec.volumes[0].projected.default_mode == 420


def test_if_needed_webhook_is_reinvoked_once_after_a_later_change(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    first = webhook.configuration(
        "a-first", hook_name="first.test.lab", reinvocationPolicy="IfNeeded"
    )
    second = webhook.configuration("b-second", hook_name="second.test.lab")
    # Each call adds a new label, so the second webhook changes the object.
    webhook.respond = lambda review: webhook.patch_response(
        review,
        [{"op": "add", "path": f"/metadata/labels/call-{len(webhook.received)}", "value": "x"}],
    )
    _create_config(kube_lab, first)
    _create_config(kube_lab, second)
    pod = kube_lab.core().create_namespaced_pod("default", pod_body("p1", labels={"a": "b"}))
    assert sorted(pod.metadata.labels) == ["a", "call-1", "call-2", "call-3"]
    records = [(r.webhook, r.round) for r in kube_lab.api.admission_log]
    assert records == [("first.test.lab", 0), ("second.test.lab", 0), ("first.test.lab", 1)]


def test_two_hundred_pods_from_sixteen_threads_are_all_stored_and_mutated(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    _create_config(kube_lab, webhook.configuration())
    core = kube_lab.core()
    errors: list[BaseException] = []
    names = iter(range(200))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(names, None)
            if i is None:
                return
            try:
                core.create_namespaced_pod("default", pod_body(f"load-{i}"))
            except BaseException as exc:  # noqa: BLE001 - collected for the assert
                errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pods = kube_lab.api.store.list("pods", "default")[0]
    assert len(pods) == 200 and len(webhook.received) == 200
    assert all(p["metadata"]["labels"] == {"mutated": "yes"} for p in pods)
    assert len({p["metadata"]["uid"] for p in pods}) == 200


def test_check_response_treats_mistyped_warnings_or_audit_annotations_as_a_failed_call() -> None:
    base = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}
    for bad in (
        {"warnings": True},
        {"warnings": [1]},
        {"auditAnnotations": ["x"]},
        {"auditAnnotations": {"k": 1}},
    ):
        body = {**base, "response": {"uid": "u1", "allowed": True, **bad}}
        with pytest.raises(CallError, match="cannot unmarshal"):
            check_response(body, "u1", "v1")
    ok = {
        **base,
        "response": {
            "uid": "u1",
            "allowed": True,
            "warnings": ["w"],
            "auditAnnotations": {"k": "v"},
        },
    }
    assert check_response(ok, "u1", "v1")["warnings"] == ["w"]


def test_webhook_warnings_become_one_line_warning_header_values() -> None:
    assert warning_value('say "hi"\r\nSet-Cookie: x') == '299 - "say \\"hi\\"  Set-Cookie: x"'
    assert "\n" not in warning_value("a\nb") and "\r" not in warning_value("a\rb")
