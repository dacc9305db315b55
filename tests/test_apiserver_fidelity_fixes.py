"""The API server stand-in's fixes found by the API server differential suite.

Each test pins one answer of the real kube-apiserver v1.36.1 that
``irsa_lab.fidelity.apiserver`` showed the stand-in gave differently; they run
without the real programs.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_fixtures import KubeLab, TestWebhook, pod_body, running_kube_lab, serve_webhook
from kubernetes import client, watch

from irsa_lab.constants import NODE_NAME
from irsa_lab.jose import decode_unverified
from irsa_lab.kube.pod_rules import pod_warnings
from irsa_lab.kube.status import invalid, value_invalid
from irsa_lab.kube.wire import API_CACHE_CONTROL

TOKEN = "/api/v1/namespaces/default/serviceaccounts/default/token"
WEBHOOKS = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


@pytest.fixture
def kube_lab(tmp_path: Path) -> Iterator[KubeLab]:
    with running_kube_lab(tmp_path) as lab:
        yield lab


def _raw(
    lab: KubeLab,
    method: str,
    path: str,
    body: Any = None,
    *,
    content_type: str = "application/json",
) -> tuple[int, Any, bytes]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(lab.url + path, data=data, method=method)  # noqa: S310
    req.add_header("Authorization", f"Bearer {lab.api.token}")
    if data is not None:
        req.add_header("Content-Type", content_type)
    ctx = ssl.create_default_context(cadata=lab.ca.cert_pem.decode())
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read()


# --- the wire form ------------------------------------------------------------------------


def test_status_bodies_are_compact_json_and_not_cacheable(kube_lab: KubeLab) -> None:
    code, headers, raw = _raw(kube_lab, "GET", "/api/v1/namespaces/default/pods/missing")
    assert code == 404
    assert raw.startswith(b'{"kind":"Status","apiVersion":"v1","metadata":{},')
    assert raw == json.dumps(json.loads(raw), separators=(",", ":")).encode()
    assert headers["Cache-Control"] == API_CACHE_CONTROL == "no-cache, private"


def test_api_answers_are_not_cacheable_but_the_discovery_documents_are(kube_lab: KubeLab) -> None:
    _, headers, _ = _raw(kube_lab, "GET", "/api/v1/namespaces/default/serviceaccounts/default")
    assert headers["Cache-Control"] == "no-cache, private"
    _, headers, _ = _raw(kube_lab, "POST", TOKEN, {"spec": {}})
    assert headers["Cache-Control"] == "no-cache, private"
    for path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):
        _, headers, _ = _raw(kube_lab, "GET", path)
        assert headers["Cache-Control"] == "public, max-age=3600"


def test_an_invalid_object_without_a_name_has_no_name_in_its_details() -> None:
    err = invalid("TokenRequest", "", [value_invalid("spec.expirationSeconds", 10, "x")], "g")
    assert err.message.startswith('TokenRequest.g "" is invalid: ')
    assert "name" not in err.status()["details"]
    assert invalid("Pod", "p", []).status()["details"]["name"] == "p"


# --- TokenRequest ---------------------------------------------------------------------------


def test_a_too_short_token_request_has_no_name_in_its_status_details(kube_lab: KubeLab) -> None:
    code, _, raw = _raw(kube_lab, "POST", TOKEN, {"spec": {"expirationSeconds": 599}})
    status = json.loads(raw)
    assert code == 422
    assert status["details"] == {
        "group": "authentication.k8s.io",
        "kind": "TokenRequest",
        "causes": [
            {
                "reason": "FieldValueInvalid",
                "message": "Invalid value: 599: may not specify a duration less than 10 minutes",
                "field": "spec.expirationSeconds",
            }
        ],
    }


def test_a_token_request_with_another_name_is_invalid_under_the_service_accounts_name(
    kube_lab: KubeLab,
) -> None:
    code, _, raw = _raw(kube_lab, "POST", TOKEN, {"metadata": {"name": "x"}, "spec": {}})
    status = json.loads(raw)
    assert code == 422
    assert status["message"] == (
        'TokenRequest.authentication.k8s.io "default" is invalid: metadata.name: '
        'Invalid value: "x": must match the service account name if specified'
    )
    assert status["details"]["name"] == "default"


def test_an_unbound_token_request_is_echoed_with_a_null_bound_object_ref(kube_lab: KubeLab) -> None:
    code, _, raw = _raw(kube_lab, "POST", TOKEN, {"spec": {"audiences": ["sts.amazonaws.com"]}})
    assert code == 201
    assert json.loads(raw)["spec"] == {
        "audiences": ["sts.amazonaws.com"],
        "expirationSeconds": 3600,
        "boundObjectRef": None,
    }
    # The Python client reads the null as "no reference".
    tr = client.CoreV1Api(kube_lab.api_client()).create_namespaced_service_account_token(
        "default",
        "default",
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=["a"])),
    )
    assert tr.spec.bound_object_ref is None


def test_a_stale_bound_pod_uid_is_a_conflict_on_the_pod_kind(kube_lab: KubeLab) -> None:
    kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p1", "uid": "stale"}
    code, _, raw = _raw(kube_lab, "POST", TOKEN, {"spec": {"boundObjectRef": ref}})
    status = json.loads(raw)
    assert code == 409 and status["reason"] == "Conflict"
    assert status["message"].startswith(
        'Operation cannot be fulfilled on Pod "p1": the UID in the bound object reference (stale)'
    )
    assert status["details"] == {"name": "p1", "kind": "Pod"}


# --- generation ----------------------------------------------------------------------------


def test_pods_and_webhook_configurations_are_created_at_generation_one(kube_lab: KubeLab) -> None:
    _, _, raw = _raw(kube_lab, "POST", "/api/v1/namespaces/default/pods", pod_body("p1"))
    assert json.loads(raw)["metadata"]["generation"] == 1
    hook = TestWebhook(url="https://127.0.0.1:9", ca_bundle="")
    _, _, raw = _raw(kube_lab, "POST", WEBHOOKS, hook.configuration("cfg"))
    assert json.loads(raw)["metadata"]["generation"] == 1
    # Namespaces and ServiceAccounts have none, as on a real server.
    _, _, raw = _raw(kube_lab, "GET", "/api/v1/namespaces/default/serviceaccounts/default")
    assert "generation" not in json.loads(raw)["metadata"]


def test_a_webhook_configuration_generation_counts_webhook_changes_only(kube_lab: KubeLab) -> None:
    hook = TestWebhook(url="https://127.0.0.1:9", ca_bundle="")
    _raw(kube_lab, "POST", WEBHOOKS, hook.configuration("cfg"))
    merge = "application/merge-patch+json"
    _, _, raw = _raw(
        kube_lab,
        "PATCH",
        f"{WEBHOOKS}/cfg",
        {"metadata": {"labels": {"a": "b"}}},
        content_type=merge,
    )
    assert json.loads(raw)["metadata"]["generation"] == 1
    ops = [{"op": "replace", "path": "/webhooks/0/timeoutSeconds", "value": 5}]
    _, _, raw = _raw(
        kube_lab, "PATCH", f"{WEBHOOKS}/cfg", ops, content_type="application/json-patch+json"
    )
    assert json.loads(raw)["metadata"]["generation"] == 2
    # A client cannot set it.
    body = json.loads(raw)
    body["metadata"]["generation"] = 40
    _, _, raw = _raw(kube_lab, "PUT", f"{WEBHOOKS}/cfg", body)
    assert json.loads(raw)["metadata"]["generation"] == 2


# --- warnings ------------------------------------------------------------------------------


def test_deprecated_node_labels_and_seccomp_annotations_give_the_real_warnings() -> None:
    pod = {
        "metadata": {
            "annotations": {
                "seccomp.security.alpha.kubernetes.io/pod": "runtime/default",
                "container.seccomp.security.alpha.kubernetes.io/app": "runtime/default",
                "container.seccomp.security.alpha.kubernetes.io/gone": "runtime/default",
            }
        },
        "spec": {
            "nodeSelector": {"kubernetes.io/os": "linux", "beta.kubernetes.io/os": "linux"},
            "containers": [{"name": "app"}],
        },
    }
    advice = 'non-functional in v1.27+; use the "seccompProfile" field instead'
    assert pod_warnings(pod) == [
        'spec.nodeSelector[beta.kubernetes.io/os]: deprecated since v1.14; use "kubernetes.io/os" '
        "instead",
        f"metadata.annotations[seccomp.security.alpha.kubernetes.io/pod]: {advice}",
        f"metadata.annotations[container.seccomp.security.alpha.kubernetes.io/app]: {advice}",
    ]
    assert pod_warnings({"spec": {"nodeSelector": {"kubernetes.io/arch": "arm64"}}}) == []


def test_pod_warnings_follow_the_webhooks_in_the_warning_header(kube_lab: KubeLab) -> None:
    hook = serve_webhook(kube_lab)

    def warn(review: dict[str, Any]) -> dict[str, Any]:
        answer = hook.patch_response(review, [])
        answer["response"]["warnings"] = ["from the webhook"]
        return answer

    hook.respond = warn
    kube_lab.api.create_webhook_configuration(hook.configuration())
    body = pod_body("w1")
    body["spec"]["nodeSelector"] = {"failure-domain.beta.kubernetes.io/zone": "a"}
    code, headers, _ = _raw(kube_lab, "POST", "/api/v1/namespaces/default/pods?dryRun=All", body)
    assert code == 201
    assert headers["Warning"] == (
        '299 - "from the webhook", 299 - "spec.nodeSelector[failure-domain.beta.kubernetes.io/'
        'zone]: deprecated since v1.17; use \\"topology.kubernetes.io/zone\\" instead"'
    )


def test_a_node_selector_value_that_is_not_a_string_is_a_decode_error(kube_lab: KubeLab) -> None:
    body = pod_body("p1")
    body["spec"]["nodeSelector"] = {"kubernetes.io/os": 1}
    code, _, raw = _raw(kube_lab, "POST", "/api/v1/namespaces/default/pods", body)
    assert code == 400 and "cannot be handled as a Pod" in json.loads(raw)["message"]


# --- scheduling -----------------------------------------------------------------------------


def test_with_a_kubelet_new_pods_are_bound_to_its_node_in_a_second_write(kube_lab: KubeLab) -> None:
    synced: list[dict[str, Any]] = []
    kube_lab.api.on_pod_created.append(synced.append)
    core = kube_lab.core()
    start = core.list_namespaced_pod("default").metadata.resource_version
    created = core.create_namespaced_pod("default", pod_body("p1"))
    # The create answer is the pod before the binding, as on a cluster.
    assert created.spec.node_name is None
    assert core.read_namespaced_pod("p1", "default").spec.node_name == NODE_NAME
    assert synced[0]["spec"]["nodeName"] == NODE_NAME  # the kubelet sees it bound
    events = [
        (e["type"], e["object"].spec.node_name)
        for e in watch.Watch().stream(
            core.list_namespaced_pod, "default", resource_version=start, timeout_seconds=1
        )
    ]
    assert events == [("ADDED", None), ("MODIFIED", NODE_NAME)]


def test_a_token_bound_to_a_scheduled_pod_names_the_node_without_a_uid(kube_lab: KubeLab) -> None:
    kube_lab.api.on_pod_created.append(lambda pod: None)
    pod = kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p1", "uid": pod.metadata.uid}
    answer = kube_lab.api.token_request("default", "default", {"spec": {"boundObjectRef": ref}})
    _, claims = decode_unverified(answer["status"]["token"])
    # No Node objects in the lab: only the name, as a real server embeds it when the
    # Node is missing.
    assert claims["kubernetes.io"]["node"] == {"name": NODE_NAME}
    assert claims["kubernetes.io"]["pod"] == {"name": "p1", "uid": pod.metadata.uid}


def test_without_a_kubelet_pods_stay_unscheduled_and_dry_runs_are_never_bound(
    kube_lab: KubeLab,
) -> None:
    core = kube_lab.core()
    core.create_namespaced_pod("default", pod_body("p1"))
    assert core.read_namespaced_pod("p1", "default").spec.node_name is None
    kube_lab.api.on_pod_created.append(lambda pod: None)
    dry = core.create_namespaced_pod("default", pod_body("p2"), dry_run="All")
    assert dry.spec.node_name is None
