"""The AdmissionReview both ends share: what the API server builds, the webhook answers, and
the API server accepts back, without a socket (the HTTP ends: test_admission, test_webhook_server)."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any

import pytest

from irsa_lab import constants as C
from irsa_lab.kube.admission_response import CallError, apply_patch, check_response, decode_patch
from irsa_lab.kube.admission_review import (
    KNOWN_REVIEW_VERSIONS,
    PATCH_TYPE_JSON,
    REVIEW_KIND,
    NotBase64,
    UserInfo,
    allowed_response,
    api_version,
    decode_patch_json,
    denied_response,
    encode_patch,
    pod_create_request,
    pod_create_review,
    review_answer,
)
from irsa_lab.webhook.server import review
from irsa_lab.webhook.service_account_cache import ServiceAccountCache
from irsa_lab.webhook.settings import WebhookSettings

USER: UserInfo = {"username": "kubernetes-admin", "groups": ["system:masters"]}
OPS = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]


def a_pod(**meta: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "mypod", "uid": "from-before", **meta},
        "spec": {"serviceAccountName": "sa", "containers": [{"name": "app", "image": "x"}]},
    }


def test_a_pod_create_review_shows_the_pod_as_the_server_holds_it_before_storing() -> None:
    pod = a_pod(namespace="elsewhere")
    before = copy.deepcopy(pod)
    doc = pod_create_review("u1", pod, "default", USER)
    assert pod == before, "the caller's pod is not modified"
    assert doc["apiVersion"] == "admission.k8s.io/v1" and doc["kind"] == "AdmissionReview"
    req = doc["request"]
    assert req["uid"] == "u1" and req["name"] == "mypod" and req["namespace"] == "default"
    assert req["operation"] == "CREATE" and req["userInfo"] == USER
    assert req["kind"] == req["requestKind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert req["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert req["oldObject"] is None and req["dryRun"] is False
    obj = req["object"]
    assert list(obj)[:2] == ["apiVersion", "kind"] and obj["kind"] == "Pod"
    assert obj["metadata"]["namespace"] == "default", "the request's namespace wins"
    assert "uid" not in obj["metadata"] and obj["metadata"]["creationTimestamp"] is None


def test_a_pod_created_with_generate_name_has_no_name_in_the_request() -> None:
    pod = {"metadata": {"generateName": "mypod-"}, "spec": {"containers": []}}
    doc = pod_create_review("u1", pod, "default", USER, version="v1beta1")
    assert "name" not in doc["request"]
    assert doc["apiVersion"] == api_version("v1beta1") == "admission.k8s.io/v1beta1"


def test_a_raw_request_carries_any_object_as_given() -> None:
    req = pod_create_request("u1", ["not", "a", "pod"], "default", USER, name="")
    assert req["object"] == ["not", "a", "pod"] and req["name"] == ""
    assert "name" not in pod_create_request("u1", {}, "default", USER)


def test_an_allowed_answer_with_a_patch_passes_the_api_servers_checks() -> None:
    response = allowed_response("u1", OPS)
    assert response["patchType"] == PATCH_TYPE_JSON == "JSONPatch"
    body = review_answer({"apiVersion": api_version(), "kind": REVIEW_KIND}, response)
    checked = check_response(json.loads(json.dumps(body)), "u1", "v1")
    assert checked["allowed"] is True
    assert decode_patch(checked["patch"]) == OPS


def test_an_allowed_answer_without_a_patch_has_neither_patch_nor_type() -> None:
    for patch in (None, []):
        assert allowed_response("u2", patch) == {"uid": "u2", "allowed": True}


def test_the_patch_is_compact_json_in_base64() -> None:
    assert (
        encode_patch(OPS)
        == "W3sib3AiOiJhZGQiLCJwYXRoIjoiL21ldGFkYXRhL2xhYmVscyIsInZhbHVlIjp7Im11dGF0ZWQiOiJ5ZXMifX1d"
    )


def test_the_patch_reads_back_and_each_way_to_be_unreadable_is_its_own_error() -> None:
    assert decode_patch_json(encode_patch(OPS)) == OPS
    for not_base64 in ("%%%", "é"):
        with pytest.raises(NotBase64):
            decode_patch_json(not_base64)
        with pytest.raises(CallError, match="illegal base64 data"):
            decode_patch(not_base64)
    not_json = base64.b64encode(b"{not json").decode()
    with pytest.raises(ValueError) as caught:
        decode_patch_json(not_json)
    assert not isinstance(caught.value, NotBase64)
    with pytest.raises(CallError, match="undecodable patch"):
        decode_patch(not_json)
    with pytest.raises(CallError, match="jsonpatch.Patch"):
        decode_patch(base64.b64encode(b'{"op": "add"}').decode())


def test_a_denial_carries_only_a_message_as_the_pod_identity_webhook_writes_it() -> None:
    response = denied_response("u3", "bad content")
    assert response == {
        "uid": "u3",
        "allowed": False,
        "status": {"metadata": {}, "message": "bad content"},
    }
    body = review_answer({"apiVersion": api_version(), "kind": REVIEW_KIND}, response)
    assert check_response(body, "u3", "v1")["allowed"] is False


def test_the_answer_echoes_only_what_the_request_had() -> None:
    response = allowed_response("u4")
    assert review_answer({}, response) == {"response": response}
    assert list(review_answer({"kind": "AdmissionReview"}, response)) == ["kind", "response"]


@pytest.mark.parametrize("version", KNOWN_REVIEW_VERSIONS)
def test_the_webhook_answers_the_review_the_api_server_builds_with_a_patch_that_applies(
    version: str,
) -> None:
    cache = ServiceAccountCache()
    cache.put("default", "sa", {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN})
    sent = pod_create_review("u5", a_pod(), "default", USER, version)
    outcome = review(json.dumps(sent).encode(), lookup=cache, settings=WebhookSettings())
    answer = outcome.review
    assert answer["apiVersion"] == api_version(version) and answer["kind"] == REVIEW_KIND
    response = check_response(json.loads(json.dumps(answer)), "u5", version)
    patched = apply_patch(sent["request"]["object"], decode_patch(response["patch"]))
    env = {e["name"]: e["value"] for e in patched["spec"]["containers"][0]["env"]}
    assert env[C.ENV_ROLE_ARN] == C.ROLE_ARN


def test_the_webhook_denies_what_is_not_a_pod_in_a_review_the_api_server_would_refuse() -> None:
    sent = {
        "apiVersion": api_version(),
        "kind": REVIEW_KIND,
        "request": pod_create_request("u6", "a string", "default", USER),
    }
    outcome = review(
        json.dumps(sent).encode(), lookup=ServiceAccountCache(), settings=WebhookSettings()
    )
    response = check_response(outcome.review, "u6", "v1")
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        "json: cannot unmarshal string into Go value of type v1.Pod"
    )
