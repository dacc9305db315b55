"""The API server stand-in through the official ``kubernetes`` client (36.x, legacy generator)."""

from __future__ import annotations

import json
import ssl
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kube_fixtures import KubeLab, TestWebhook, pod_body, running_kube_lab, serve_webhook
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from irsa_lab.jose import decode_unverified
from irsa_lab.kube.status import ApiError
from irsa_lab.kube.store import labels_match, parse_label_selector


@pytest.fixture
def kube_lab(tmp_path: Path) -> Iterator[KubeLab]:
    with running_kube_lab(tmp_path) as lab:
        yield lab


@pytest.fixture
def webhook(kube_lab: KubeLab) -> TestWebhook:
    return serve_webhook(kube_lab)


def _status(exc: ApiException) -> dict[str, Any]:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    return body


def _raw(
    lab: KubeLab,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = "application/json",
    token: str | None = "lab",  # noqa: S107 - "lab" means the server's own token
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(lab.url + path, data=body, method=method)  # noqa: S310 - https only
    if content_type:
        req.add_header("Content-Type", content_type)
    if token is not None:
        req.add_header("Authorization", f"Bearer {lab.api.token if token == 'lab' else token}")
    ctx = ssl.create_default_context(cadata=lab.ca.cert_pem.decode())
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


# --- namespaces ---------------------------------------------------------------------


def test_created_namespace_has_its_label_finalizer_phase_and_default_service_account(
    kube_lab: KubeLab,
) -> None:
    core = kube_lab.core()
    ns = core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="demo")))
    assert ns.metadata.labels == {"kubernetes.io/metadata.name": "demo"}
    assert ns.spec.finalizers == ["kubernetes"] and ns.status.phase == "Active"
    assert isinstance(ns.metadata.resource_version, str) and ns.metadata.uid
    assert core.read_namespace("demo").metadata.uid == ns.metadata.uid
    assert "demo" in [n.metadata.name for n in core.list_namespace().items]
    assert core.read_namespaced_service_account("default", "demo").metadata.name == "default"


def test_deleting_a_namespace_removes_it_and_its_contents(kube_lab: KubeLab) -> None:
    core = kube_lab.core()
    core.create_namespace({"metadata": {"name": "gone"}})
    core.create_namespaced_pod("gone", pod_body("p1"))
    core.delete_namespace("gone")
    with pytest.raises(ApiException) as exc:
        core.read_namespace("gone")
    assert exc.value.status == 404
    assert kube_lab.api.store.list("pods", "gone")[0] == []
    assert kube_lab.api.store.list("serviceaccounts", "gone")[0] == []


def test_creating_an_existing_namespace_is_409_already_exists(kube_lab: KubeLab) -> None:
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespace({"metadata": {"name": "default"}})
    status = _status(exc.value)
    assert exc.value.status == 409 and status["reason"] == "AlreadyExists"
    assert status["message"] == 'namespaces "default" already exists'


def test_missing_namespace_is_404_not_found_with_the_real_message(kube_lab: KubeLab) -> None:
    with pytest.raises(ApiException) as exc:
        kube_lab.core().read_namespace("missing")
    assert exc.value.status == 404
    assert _status(exc.value) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'namespaces "missing" not found',
        "reason": "NotFound",
        "details": {"name": "missing", "kind": "namespaces"},
        "code": 404,
    }


def test_invalid_namespace_name_is_422_with_causes(kube_lab: KubeLab) -> None:
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespace({"metadata": {"name": "Not_Valid"}})
    status = _status(exc.value)
    assert exc.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"][0]["field"] == "metadata.name"
    assert status["message"].startswith('Namespace "Not_Valid" is invalid: metadata.name')


# --- service accounts ---------------------------------------------------------------------


def test_service_account_annotations_are_stored_verbatim_and_patchable(kube_lab: KubeLab) -> None:
    core = kube_lab.core()
    arn = "arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"
    core.create_namespaced_service_account(
        "default",
        client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(
                name="s3-readonly-sa", annotations={"eks.amazonaws.com/role-arn": arn}
            )
        ),
    )
    sa = core.read_namespaced_service_account("s3-readonly-sa", "default")
    assert sa.metadata.annotations == {"eks.amazonaws.com/role-arn": arn}
    patched = core.patch_namespaced_service_account(
        "s3-readonly-sa",
        "default",
        {"metadata": {"annotations": {"eks.amazonaws.com/audience": "sts.amazonaws.com"}}},
    )
    assert patched.metadata.annotations == {
        "eks.amazonaws.com/role-arn": arn,
        "eks.amazonaws.com/audience": "sts.amazonaws.com",
    }
    assert int(patched.metadata.resource_version) > int(sa.metadata.resource_version)
    sa.metadata.annotations = {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/other"}
    sa.metadata.resource_version = None
    replaced = core.replace_namespaced_service_account("s3-readonly-sa", "default", sa)
    assert replaced.metadata.annotations == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/other"
    }
    assert replaced.metadata.uid == sa.metadata.uid
    core.delete_namespaced_service_account("s3-readonly-sa", "default")
    names = [s.metadata.name for s in core.list_namespaced_service_account("default").items]
    assert names == ["default"]


def test_replace_with_a_stale_resource_version_is_409_conflict(kube_lab: KubeLab) -> None:
    core = kube_lab.core()
    sa = core.read_namespaced_service_account("default", "default")
    core.patch_namespaced_service_account(
        "default", "default", {"metadata": {"labels": {"a": "b"}}}
    )
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_service_account("default", "default", sa)
    assert exc.value.status == 409 and _status(exc.value)["reason"] == "Conflict"


def test_service_account_in_a_missing_namespace_is_404(kube_lab: KubeLab) -> None:
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_service_account("nowhere", {"metadata": {"name": "x"}})
    assert exc.value.status == 404
    assert _status(exc.value)["message"] == 'namespaces "nowhere" not found'


# --- TokenRequest -----------------------------------------------------------------------------


def test_token_request_defaults_to_api_audiences_and_one_hour(kube_lab: KubeLab) -> None:
    tr = kube_lab.core().create_namespaced_service_account_token(
        "default",
        "default",
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[])),
    )
    assert tr.spec.audiences == ["https://kubernetes.default.svc"]
    assert tr.spec.expiration_seconds == 3600
    _, claims = decode_unverified(tr.status.token)
    assert claims["sub"] == "system:serviceaccount:default:default"
    assert claims["exp"] - claims["iat"] == 3600


def test_token_request_for_sts_echoes_spec_and_sets_status(kube_lab: KubeLab) -> None:
    core = kube_lab.core()
    pod = core.create_namespaced_pod("default", pod_body("p1"))
    spec = client.V1TokenRequestSpec(
        audiences=["sts.amazonaws.com"],
        expiration_seconds=86400,
        bound_object_ref=client.V1BoundObjectReference(
            api_version="v1", kind="Pod", name="p1", uid=pod.metadata.uid
        ),
    )
    tr = core.create_namespaced_service_account_token(
        "default", "default", client.AuthenticationV1TokenRequest(spec=spec)
    )
    assert tr.spec.audiences == ["sts.amazonaws.com"] and tr.spec.expiration_seconds == 86400
    assert tr.spec.bound_object_ref.uid == pod.metadata.uid
    assert tr.status.expiration_timestamp.isoformat() == "2024-03-28T14:00:00+00:00"
    _, claims = decode_unverified(tr.status.token)
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["kubernetes.io"]["pod"] == {"name": "p1", "uid": pod.metadata.uid}


def test_token_request_over_http_answers_201(kube_lab: KubeLab) -> None:
    code, headers, body = _raw(
        kube_lab,
        "POST",
        "/api/v1/namespaces/default/serviceaccounts/default/token",
        b'{"spec": {"audiences": ["sts.amazonaws.com"]}}',
    )
    assert code == 201 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body)["kind"] == "TokenRequest"


def test_token_request_shorter_than_ten_minutes_is_422_with_the_real_message(
    kube_lab: KubeLab,
) -> None:
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_service_account_token(
            "default",
            "default",
            client.AuthenticationV1TokenRequest(
                spec=client.V1TokenRequestSpec(audiences=["x"], expiration_seconds=60)
            ),
        )
    status = _status(exc.value)
    assert exc.value.status == 422
    assert status["message"] == (
        'TokenRequest.authentication.k8s.io "" is invalid: '
        "spec.expirationSeconds: Invalid value: 60: may not specify a "
        "duration less than 10 minutes"
    )


def test_token_request_bound_to_a_missing_pod_or_wrong_uid_or_other_sa_is_refused(
    kube_lab: KubeLab,
) -> None:
    api = kube_lab.api
    ref = {"apiVersion": "v1", "kind": "Pod", "name": "p1"}
    with pytest.raises(ApiError) as exc:
        api.token_request("default", "default", {"spec": {"boundObjectRef": ref}})
    assert exc.value.code == 404 and exc.value.message == 'pods "p1" not found'
    kube_lab.core().create_namespaced_service_account("default", {"metadata": {"name": "other"}})
    kube_lab.core().create_namespaced_pod("default", pod_body("p1", sa="other"))
    with pytest.raises(ApiError) as exc:
        api.token_request("default", "default", {"spec": {"boundObjectRef": ref}})
    assert exc.value.code == 400 and exc.value.message == (
        'cannot bind token for serviceaccount "default" to pod running with different '
        "serviceaccount name."
    )
    with pytest.raises(ApiError) as exc:
        api.token_request("default", "other", {"spec": {"boundObjectRef": {**ref, "uid": "x"}}})
    assert exc.value.code == 409 and exc.value.reason == "Conflict"
    with pytest.raises(ApiError) as exc:
        api.token_request("default", "missing", {})
    assert exc.value.code == 404 and exc.value.message == 'serviceaccounts "missing" not found'


def test_token_request_with_a_mismatched_name_is_422(kube_lab: KubeLab) -> None:
    with pytest.raises(ApiError) as exc:
        kube_lab.api.token_request("default", "default", {"metadata": {"name": "x"}})
    assert exc.value.code == 422
    assert "must match the service account name if specified" in exc.value.message


# --- pods ---------------------------------------------------------------------------------------


def test_pod_create_applies_defaults_and_the_service_account_plugin(kube_lab: KubeLab) -> None:
    pod = kube_lab.core().create_namespaced_pod("default", pod_body("p1"))
    assert pod.spec.service_account_name == "default"
    assert pod.spec.restart_policy == "Always" and pod.spec.dns_policy == "ClusterFirst"
    (vol,) = pod.spec.volumes
    assert vol.name.startswith("kube-api-access-") and len(vol.name) == 21
    assert vol.projected.default_mode == 420
    assert vol.projected.sources[0].service_account_token.expiration_seconds == 3607
    (mount,) = pod.spec.containers[0].volume_mounts
    assert mount.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount" and mount.read_only
    assert pod.status.phase == "Pending" and pod.metadata.creation_timestamp is not None


def test_pod_with_a_missing_service_account_is_403_before_any_webhook(
    kube_lab: KubeLab, webhook: TestWebhook
) -> None:
    kube_lab.api.create_webhook_configuration(webhook.configuration())
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod("default", pod_body("p1", sa="nope"))
    assert exc.value.status == 403
    assert _status(exc.value)["message"] == (
        'error looking up service account default/nope: serviceaccount "nope" not found'
    )
    assert webhook.received == []


def test_pod_in_a_missing_namespace_is_404(kube_lab: KubeLab) -> None:
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod("nowhere", pod_body("p1"))
    assert exc.value.status == 404


def test_generate_name_gives_five_characters_from_the_kubernetes_alphabet(
    kube_lab: KubeLab,
) -> None:
    pod = kube_lab.core().create_namespaced_pod("default", pod_body(None, generate_name="web-"))
    suffix = pod.metadata.name.removeprefix("web-")
    assert len(suffix) == 5 and set(suffix) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_invalid_pod_is_422_with_a_cause_per_field(kube_lab: KubeLab) -> None:
    with pytest.raises(ApiException) as exc:
        kube_lab.core().create_namespaced_pod(
            "default", {"metadata": {"name": "p1"}, "spec": {"containers": []}}
        )
    status = _status(exc.value)
    assert exc.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}
    ]
    assert status["message"] == 'Pod "p1" is invalid: spec.containers: Required value'


def test_pod_get_list_with_selectors_and_delete(kube_lab: KubeLab) -> None:
    core = kube_lab.core()
    core.create_namespaced_pod("default", pod_body("a", labels={"app": "x", "tier": "web"}))
    core.create_namespaced_pod("default", pod_body("b", labels={"app": "y"}))
    pods = core.list_namespaced_pod("default")
    assert [p.metadata.name for p in pods.items] == ["a", "b"]
    assert pods.metadata.resource_version
    assert [
        p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=x").items
    ] == ["a"]
    assert [
        p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app!=x").items
    ] == ["b"]
    assert [
        p.metadata.name
        for p in core.list_namespaced_pod("default", label_selector="app in (x,y),!tier").items
    ] == ["b"]
    assert core.read_namespaced_pod("a", "default").metadata.labels["tier"] == "web"
    core.delete_namespaced_pod("a", "default", grace_period_seconds=0)
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("a", "default")
    assert exc.value.status == 404


def test_label_selector_parsing_covers_equality_sets_and_existence() -> None:
    reqs = parse_label_selector("a=1,b!=2,c in (x, y),d notin (z),e,!f")
    assert labels_match(reqs, {"a": "1", "b": "3", "c": "y", "d": "q", "e": ""})
    assert not labels_match(reqs, {"a": "1", "b": "3", "c": "y", "d": "q", "e": "", "f": "1"})
    with pytest.raises(ApiError):
        parse_label_selector("a in b")


def test_watch_streams_added_modified_and_deleted_pod_events(kube_lab: KubeLab) -> None:
    core = kube_lab.core()
    start = core.list_namespaced_pod("default").metadata.resource_version
    core.create_namespaced_pod("default", pod_body("w1"))
    kube_lab.api.set_pod_status("default", "w1", {"phase": "Running"})
    core.delete_namespaced_pod("w1", "default")
    seen = [
        (e["type"], e["object"].status.phase)
        for e in watch.Watch().stream(
            core.list_namespaced_pod, "default", resource_version=start, timeout_seconds=1
        )
    ]
    assert seen == [("ADDED", "Pending"), ("MODIFIED", "Running"), ("DELETED", "Running")]


def test_watch_without_resource_version_lists_then_ends_at_timeout(kube_lab: KubeLab) -> None:
    events = list(watch.Watch().stream(kube_lab.core().list_namespace, timeout_seconds=1))
    assert [e["object"].metadata.name for e in events] == [
        "default",
        "kube-node-lease",
        "kube-public",
        "kube-system",
    ]


def test_pod_hooks_see_created_and_deleted_pods(kube_lab: KubeLab) -> None:
    created: list[str] = []
    deleted: list[str] = []

    async def on_delete(pod: dict[str, Any]) -> None:
        deleted.append(pod["metadata"]["name"])

    kube_lab.api.on_pod_created.append(lambda pod: created.append(pod["metadata"]["uid"]))
    kube_lab.api.on_pod_deleted.append(on_delete)
    pod = kube_lab.core().create_namespaced_pod("default", pod_body("h1"))
    kube_lab.core().delete_namespaced_pod("h1", "default")
    assert created == [pod.metadata.uid] and deleted == ["h1"]


# --- discovery documents, auth, errors ---------------------------------------------------------


def test_discovery_documents_through_raw_client_calls(kube_lab: KubeLab) -> None:
    api = kube_lab.api_client()
    doc = api.call_api(
        "/.well-known/openid-configuration",
        "GET",
        auth_settings=["BearerToken"],
        response_types_map={200: "object"},
        _return_http_data_only=True,
    )
    assert list(doc) == [
        "issuer",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ]
    jwks = api.call_api(
        "/openid/v1/jwks",
        "GET",
        auth_settings=["BearerToken"],
        response_types_map={200: "object"},
        _return_http_data_only=True,
    )
    assert jwks == kube_lab.api.issuer.jwks()


def test_discovery_documents_are_anonymous_with_their_content_types(kube_lab: KubeLab) -> None:
    code, headers, body = _raw(kube_lab, "GET", "/openid/v1/jwks", token=None, content_type=None)
    assert code == 200 and headers["Content-Type"] == "application/jwk-set+json"
    assert headers["Cache-Control"] == "public, max-age=3600"
    code, headers, body = _raw(kube_lab, "GET", "/.well-known/openid-configuration", token=None)
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert body.startswith(b'{"issuer":')


def test_a_wrong_token_is_401_and_no_token_is_the_anonymous_user(kube_lab: KubeLab) -> None:
    code, _, body = _raw(kube_lab, "GET", "/api/v1/namespaces", token="wrong")
    assert code == 401 and json.loads(body)["reason"] == "Unauthorized"
    # Anonymous auth is on, as on kubeadm and kind: RBAC refuses, with a 403.
    code, _, body = _raw(kube_lab, "GET", "/api/v1/namespaces/default/pods", token=None)
    status = json.loads(body)
    assert code == 403 and status["reason"] == "Forbidden"
    assert status["message"] == (
        'pods is forbidden: User "system:anonymous" cannot list resource "pods" in API group '
        '"" in the namespace "default"'
    )
    assert status["details"] == {"kind": "pods"}
    # Health and version are public; discovery needs an authenticated user.
    assert _raw(kube_lab, "GET", "/version", token=None)[0] == 200
    code, _, body = _raw(kube_lab, "GET", "/api", token=None)
    assert code == 403 and json.loads(body)["message"] == (
        'forbidden: User "system:anonymous" cannot get path "/api"'
    )


def test_bad_bodies_and_methods_get_status_objects(kube_lab: KubeLab) -> None:
    code, _, body = _raw(kube_lab, "POST", "/api/v1/namespaces", b"{nope")
    assert code == 400 and json.loads(body)["reason"] == "BadRequest"
    code, _, body = _raw(kube_lab, "POST", "/api/v1/namespaces", b"{}", content_type="text/xml")
    assert code == 415 and json.loads(body)["reason"] == "UnsupportedMediaType"
    code, _, body = _raw(kube_lab, "PUT", "/api/v1/namespaces", b"{}")
    assert code == 405 and json.loads(body)["reason"] == "MethodNotAllowed"
    code, _, body = _raw(kube_lab, "GET", "/api/v1/frobs")
    assert code == 404 and json.loads(body)["kind"] == "Status"


def test_concurrent_clients_creating_pods_get_unique_stored_objects(kube_lab: KubeLab) -> None:
    core = kube_lab.core()
    errors: list[BaseException] = []

    def make(i: int) -> None:
        try:
            for _ in range(5):
                core.create_namespaced_pod("default", pod_body(None, generate_name=f"c{i}-"))
        except BaseException as exc:  # noqa: BLE001 - collected for the assert
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pods = core.list_namespaced_pod("default").items
    assert len(pods) == 40 and len({p.metadata.uid for p in pods}) == 40


# --- fuzz -----------------------------------------------------------------------------------------

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "metadata",
        "spec",
        "kind",
        "apiVersion",
        "webhooks",
        "status",
        "name",
        "containers",
        "volumes",
        "audiences",
        "expirationSeconds",
        "boundObjectRef",
        "labels",
        "clientConfig",
        "rules",
    ]
)
_shaped = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=16,
)
_bodies = (
    st.binary(max_size=40)
    | _json.map(lambda v: json.dumps(v).encode())
    | _shaped.map(lambda v: json.dumps(v).encode())
)
_paths = st.sampled_from(
    [
        ("POST", "/api/v1/namespaces"),
        ("POST", "/api/v1/namespaces/default/serviceaccounts"),
        ("POST", "/api/v1/namespaces/default/pods"),
        ("POST", "/api/v1/namespaces/default/serviceaccounts/default/token"),
        ("POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"),
        ("PATCH", "/api/v1/namespaces/default/serviceaccounts/default"),
        ("PUT", "/api/v1/namespaces/default/serviceaccounts/default"),
    ]
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(target=_paths, body=_bodies)
def test_random_bodies_never_get_a_server_error_and_always_get_a_status(
    kube_lab: KubeLab, target: tuple[str, str], body: bytes
) -> None:
    method, path = target
    ctype = "application/merge-patch+json" if method == "PATCH" else "application/json"
    code, headers, raw = _raw(kube_lab, method, path, body, content_type=ctype)
    assert code < 500, raw
    if code >= 400:
        status = json.loads(raw)
        assert status["kind"] == "Status" and status["code"] == code
