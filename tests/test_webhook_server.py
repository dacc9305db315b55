"""The webhook over HTTPS (trusting the lab CA); its cache and watcher: test_webhook_cache.py."""

from __future__ import annotations

import base64
import http.client
import json
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhook_fixtures import RunningWebhook, running_webhook

from irsa_lab import constants as C
from irsa_lab.pki import LabCA
from irsa_lab.webhook.service_account_cache import ServiceAccountCache
from irsa_lab.webhook.settings import WebhookSettings

UID = "918ef1dc-928f-4525-99ef-988389f263c3"
S3_READER = "arn:aws:iam::111122223333:role/s3-reader"
BAD_CONTENT = {
    "response": {"uid": "", "allowed": False, "status": {"metadata": {}, "message": "bad content"}}
}


class Client:
    """One keep-alive HTTPS connection that trusts the lab CA only."""

    def __init__(self, url: str, ctx: ssl.SSLContext) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPSConnection(
            parts.hostname or "", parts.port, context=ctx, timeout=10
        )

    def post(
        self, body: bytes, content_type: str | None = "application/json", path: str = "/mutate"
    ) -> tuple[int, str, bytes]:
        headers = {} if content_type is None else {"Content-Type": content_type}
        self.conn.request("POST", path, body=body, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.getheader("Content-Type") or "", resp.read()

    def review(self, doc: Any) -> dict[str, Any]:
        status, _, body = self.post(json.dumps(doc).encode())
        assert status == 200
        return json.loads(body)


@pytest.fixture(scope="module")
def hook() -> Iterator[RunningWebhook]:
    cache = ServiceAccountCache()
    cache.put(
        "default",
        "default",
        {
            C.ROLE_ARN_ANNOTATION: S3_READER,
            C.TOKEN_EXPIRATION_ANNOTATION: "3600",
            "kubernetes.io/not-ours": "dropped",
        },
    )
    cache.put("default", "plain", {})
    with running_webhook(cache=cache, settings=WebhookSettings()) as running:
        yield running


@pytest.fixture
def client(hook: RunningWebhook) -> Iterator[Client]:
    c = Client(hook.url, hook.ca.client_context())
    yield c
    c.conn.close()


def review_doc(sa: str = "default", **top: Any) -> dict[str, Any]:
    return {
        **top,
        "request": {
            "uid": UID,
            "namespace": "default",
            "operation": "CREATE",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "balajilovesoreos"},
                "spec": {
                    "serviceAccountName": sa,
                    "containers": [{"name": "balajilovesoreos", "image": "amazonlinux"}],
                },
            },
        },
    }


def test_a_well_formed_v1_review_gets_a_base64_json_patch_with_uid_and_type_echoed(
    client: Client,
) -> None:
    doc = review_doc(apiVersion="admission.k8s.io/v1", kind="AdmissionReview")
    out = client.review(doc)
    assert out["apiVersion"] == "admission.k8s.io/v1" and out["kind"] == "AdmissionReview"
    resp = out["response"]
    assert resp["uid"] == UID and resp["allowed"] is True and resp["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(resp["patch"]))
    assert [op["path"] for op in patch] == ["/spec/volumes", "/spec/containers"]
    assert patch[0]["value"][0]["projected"]["sources"][0]["serviceAccountToken"] == {
        "audience": "sts.amazonaws.com",
        "expirationSeconds": 3600,
        "path": "token",
    }
    mutated = jsonpatch.apply_patch(doc["request"]["object"], patch)
    env = mutated["spec"]["containers"][0]["env"]
    assert [e["name"] for e in env] == ["AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"]


def test_the_response_echoes_v1beta1_and_omits_a_missing_type(client: Client) -> None:
    out = client.review(review_doc(apiVersion="admission.k8s.io/v1beta1", kind="AdmissionReview"))
    assert out["apiVersion"] == "admission.k8s.io/v1beta1"
    assert set(client.review(review_doc())) == {"response"}


@pytest.mark.parametrize("body", [b"", b"{}", b"null", b'{"request": null}'])
def test_an_empty_body_or_a_review_without_request_is_denied_as_bad_content(
    client: Client, body: bytes
) -> None:
    status, ctype, raw = client.post(body)
    assert (status, ctype) == (200, "application/json")
    assert json.loads(raw) == BAD_CONTENT


def test_truncated_json_is_denied_with_the_decoders_message(client: Client) -> None:
    status, _, raw = client.post(b'{"request": {"uid": "x"')
    assert status == 200
    assert json.loads(raw)["response"] == {
        "uid": "",
        "allowed": False,
        "status": {
            "metadata": {},
            "message": "couldn't get version/kind; json parse error: unexpected end of JSON input",
        },
    }


def test_an_object_that_is_not_a_pod_is_denied_with_the_request_uid(client: Client) -> None:
    doc = review_doc()
    doc["request"]["object"] = "not a pod"
    resp = client.review(doc)["response"]
    assert resp == {
        "uid": UID,
        "allowed": False,
        "status": {
            "metadata": {},
            "message": "json: cannot unmarshal string into Go value of type v1.Pod",
        },
    }


@pytest.mark.parametrize("ctype", ["application/xml", "application/json; charset=utf-8", "", None])
def test_a_content_type_other_than_exactly_application_json_is_415(
    client: Client, ctype: str | None
) -> None:
    status, _, raw = client.post(b"{}", content_type=ctype)
    assert status == 415
    assert raw == b"Invalid Content-Type, expected `application/json`\n"


@pytest.mark.parametrize("sa", ["plain", "unknown", ""])
def test_a_pod_whose_service_account_has_no_role_is_allowed_without_a_patch(
    client: Client, sa: str
) -> None:
    assert client.review(review_doc(sa))["response"] == {"uid": UID, "allowed": True}


def test_healthz_says_ok(client: Client, hook: RunningWebhook) -> None:
    client.conn.request("GET", "/healthz")
    resp = client.conn.getresponse()
    assert (resp.status, resp.read()) == (200, b"ok")


def test_each_review_is_traced_from_the_apiserver_to_the_webhook(
    client: Client, hook: RunningWebhook
) -> None:
    mark = hook.trace.mark()
    client.review(review_doc())
    (event,) = hook.trace.since(mark)
    assert (event.source, event.target, event.outcome) == ("apiserver", "webhook", "ok")
    assert event.detail["reason"] == "sts_web_identity" and event.detail["uid"] == UID


def test_a_client_that_does_not_trust_the_lab_ca_is_refused(hook: RunningWebhook) -> None:
    other = Client(hook.url, LabCA.create().client_context())
    with pytest.raises(ssl.SSLError):
        other.post(b"{}")


# --- fuzzing the endpoint ----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
pod_keys = st.sampled_from(
    [
        "metadata",
        "spec",
        "annotations",
        "labels",
        "containers",
        "initContainers",
        "volumes",
        "env",
        "name",
        "volumeMounts",
        "serviceAccountName",
        "nodeSelector",
        "value",
    ]
)
pod_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(0, 5)
    | st.sampled_from(["default", "app", "windows", ""]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(pod_keys, inner, max_size=4),
    max_leaves=20,
)
reviews = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1"])
        | json_values,
        "kind": st.just("AdmissionReview") | json_values,
        "request": json_values
        | st.fixed_dictionaries(
            {"uid": st.text(max_size=8)},
            optional={
                "namespace": st.sampled_from(["default", "other"]) | json_values,
                "object": pod_like | json_values,
            },
        ),
    },
)
bodies = (
    reviews.map(lambda d: json.dumps(d).encode())
    | st.binary(max_size=40)
    | json_values.map(lambda d: json.dumps(d).encode()[:-1])
)


def check_answer(status: int, raw: bytes) -> None:
    assert status < 500
    assert status in (200, 415)
    if status == 415:
        return
    out = json.loads(raw)
    resp = out["response"]
    assert isinstance(resp["uid"], str) and isinstance(resp["allowed"], bool)
    if not resp["allowed"]:
        assert resp["status"]["message"]
        assert "patch" not in resp
    if "patch" in resp:
        assert resp["patchType"] == "JSONPatch"
        assert isinstance(json.loads(base64.b64decode(resp["patch"])), list)
    assert set(out) <= {"apiVersion", "kind", "response"}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies)
def test_random_review_shaped_bodies_never_get_a_5xx_and_always_a_well_formed_answer(
    client: Client, body: bytes
) -> None:
    status, _, raw = client.post(body)
    check_answer(status, raw)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(obj=pod_like)
def test_random_pods_in_a_review_never_get_a_5xx(client: Client, obj: Any) -> None:
    doc = review_doc()
    doc["request"]["object"] = obj
    status, _, raw = client.post(json.dumps(doc).encode())
    check_answer(status, raw)
    resp = json.loads(raw)["response"]
    assert resp["uid"] == UID
    if "patch" in resp:
        jsonpatch.apply_patch(obj, json.loads(base64.b64decode(resp["patch"])))
