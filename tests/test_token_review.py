"""ServiceAccount tokens at the API stand-in: TokenReview and bearer authentication.

The expected texts are kube-apiserver v1.36.1's, read from its answers to the same
requests (the ``k8s`` backend): ``[invalid bearer token, <why>]`` in
``TokenReview.status.error``, 401 for a bearer token that does not authenticate, and
the RBAC ``Forbidden`` message for what a ServiceAccount may not do.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kube_fixtures import KubeLab, pod_body, running_kube_lab
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from irsa_lab import jose
from irsa_lab.kube import authn
from irsa_lab.kube.kubeconfig import write_kubeconfig
from irsa_lab.kube.status import ApiError
from irsa_lab.kube.wire import decode_token_request_protobuf
from irsa_lab.pki import SigningKey

STS = "sts.amazonaws.com"
API = "https://kubernetes.default.svc"
SA = "reader"
POD = "app"


@pytest.fixture
def kube_lab(tmp_path: Path) -> Iterator[KubeLab]:
    with running_kube_lab(tmp_path) as lab:
        yield lab


@pytest.fixture
def bound(kube_lab: KubeLab) -> dict[str, str]:
    """A ServiceAccount, a pod running as it, and tokens bound to the pod."""
    core = kube_lab.core()
    sa = core.create_namespaced_service_account("default", {"metadata": {"name": SA}})
    pod = core.create_namespaced_pod("default", pod_body(POD, sa=SA))
    return {
        "sa_uid": sa.metadata.uid,
        "pod_uid": pod.metadata.uid,
        "sts": _token(kube_lab, [STS], pod=(POD, pod.metadata.uid)),
        "api": _token(kube_lab, [], pod=(POD, pod.metadata.uid)),
    }


def _token(
    lab: KubeLab, audiences: list[str], *, pod: tuple[str, str] | None = None, sa: str = SA
) -> str:
    spec: dict[str, Any] = {"expirationSeconds": 3600}
    if audiences:
        spec["audiences"] = audiences
    if pod:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod[0], "uid": pod[1]}
    answer = lab.core().create_namespaced_service_account_token(sa, "default", {"spec": spec})
    return str(answer.status.token)


def _review(lab: KubeLab, token: str, audiences: list[str] | None = None) -> dict[str, Any]:
    """A TokenReview created by the admin with the official client; the raw answer."""
    spec: dict[str, Any] = {"token": token}
    if audiences is not None:
        spec["audiences"] = audiences
    auth = client.AuthenticationV1Api(lab.api_client())
    resp = auth.create_token_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
        _preload_content=False,
    )
    assert resp.status == 201
    return dict(json.loads(resp.data))


def _as(lab: KubeLab, tmp_path: Path, token: str) -> client.ApiClient:
    """A ``kubernetes`` client whose kubeconfig user is ``token``."""
    path = write_kubeconfig(tmp_path / "sa.kubeconfig", lab.url, lab.ca.cert_pem, token)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    api = client.ApiClient(cfg)
    lab.clients.append(api)
    return api


def _error(review: dict[str, Any]) -> str:
    status = review["status"]
    assert "authenticated" not in status and status["user"] == {}
    return str(status["error"])


# --- TokenReview ------------------------------------------------------------------------


def test_a_pod_bound_sts_token_reviews_as_its_service_account_with_the_pod_in_extra(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    review = _review(kube_lab, bound["sts"], [STS])
    _, claims = jose.decode_unverified(bound["sts"])
    assert review["status"] == {
        "authenticated": True,
        "user": {
            "username": f"system:serviceaccount:default:{SA}",
            "uid": bound["sa_uid"],
            "groups": [
                "system:serviceaccounts",
                "system:serviceaccounts:default",
                "system:authenticated",
            ],
            "extra": {
                "authentication.kubernetes.io/credential-id": [f"JTI={claims['jti']}"],
                "authentication.kubernetes.io/pod-name": [POD],
                "authentication.kubernetes.io/pod-uid": [bound["pod_uid"]],
            },
        },
        "audiences": [STS],
    }
    # Not stored: the answer echoes spec and names nothing.
    assert review["spec"] == {"token": bound["sts"], "audiences": [STS]}
    assert review["metadata"] == {}


def test_without_spec_audiences_the_api_audiences_are_asked_for(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    review = _review(kube_lab, bound["api"])
    assert review["status"]["authenticated"] is True
    assert review["status"]["audiences"] == [API]
    assert "audiences" not in review["spec"]


def test_the_answer_lists_only_the_audiences_the_token_shares(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    review = _review(kube_lab, bound["sts"], ["other", STS])
    assert review["status"]["audiences"] == [STS]


def test_an_sts_token_reviewed_for_the_api_audiences_names_both_audience_lists(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    assert _error(_review(kube_lab, bound["sts"])) == (
        '[invalid bearer token, token audiences ["sts.amazonaws.com"] is invalid for '
        'the target audiences ["https://kubernetes.default.svc"]]'
    )


def test_a_token_is_expired_sixty_seconds_after_exp(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    _, claims = jose.decode_unverified(bound["sts"])
    kube_lab.clock.set(claims["exp"] + 60)  # within go-jose's leeway
    assert _review(kube_lab, bound["sts"], [STS])["status"]["authenticated"] is True
    kube_lab.clock.set(claims["exp"] + 61)
    assert _error(_review(kube_lab, bound["sts"], [STS])) == (
        "[invalid bearer token, service account token has expired]"
    )


def test_a_changed_signature_or_another_key_fails_in_the_cryptographic_primitive(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    token = bound["sts"]
    # A character inside the signature: the last one may carry only padding bits, which
    # base64 decoders (Go's and Python's) ignore.
    i = len(token) - 10
    changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
    other = SigningKey.generate()
    header, claims = jose.decode_unverified(token)
    forged = jose.sign_compact(header, claims, other.private_key)
    for bad in (changed, forged):
        assert _error(_review(kube_lab, bad, [STS])) == (
            "[invalid bearer token, go-jose/go-jose: error in cryptographic primitive]"
        )


def test_text_that_is_no_token_of_the_issuer_is_just_an_invalid_bearer_token(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    header, claims = jose.decode_unverified(bound["sts"])
    other_issuer = jose.sign_compact(
        header, {**claims, "iss": "https://example.com"}, SigningKey.generate().private_key
    )
    for text in ("garbage", other_issuer):
        assert _error(_review(kube_lab, text, [STS])) == "invalid bearer token"


def test_a_deleted_pods_token_has_been_invalidated(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    assert _review(kube_lab, bound["sts"], [STS])["status"]["authenticated"] is True
    kube_lab.core().delete_namespaced_pod(POD, "default")
    assert _error(_review(kube_lab, bound["sts"], [STS])) == (
        "[invalid bearer token, service account token has been invalidated]"
    )


def test_a_pod_recreated_with_the_same_name_has_another_uid(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    core = kube_lab.core()
    core.delete_namespaced_pod(POD, "default")
    again = core.create_namespaced_pod("default", pod_body(POD, sa=SA))
    assert _error(_review(kube_lab, bound["sts"], [STS])) == (
        f"[invalid bearer token, pod UID ({again.metadata.uid}) does not match service "
        f"account pod ref claim ({bound['pod_uid']})]"
    )


def test_a_deleted_or_recreated_service_account_no_longer_authenticates(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    core = kube_lab.core()
    core.delete_namespaced_service_account(SA, "default")
    assert _error(_review(kube_lab, bound["sts"], [STS])) == (
        f'[invalid bearer token, serviceaccounts "{SA}" not found]'
    )
    again = core.create_namespaced_service_account("default", {"metadata": {"name": SA}})
    assert _error(_review(kube_lab, bound["sts"], [STS])) == (
        f"[invalid bearer token, service account UID ({again.metadata.uid}) does not "
        f"match claim ({bound['sa_uid']})]"
    )


def test_an_unbound_token_has_only_its_credential_id_in_extra(kube_lab: KubeLab) -> None:
    kube_lab.core().create_namespaced_service_account("default", {"metadata": {"name": SA}})
    token = _token(kube_lab, [])
    user = _review(kube_lab, token)["status"]["user"]
    assert list(user["extra"]) == ["authentication.kubernetes.io/credential-id"]


def test_the_admins_token_reviews_as_the_admin_for_the_api_audiences_only(
    kube_lab: KubeLab,
) -> None:
    ok = _review(kube_lab, kube_lab.api.token)["status"]
    assert ok["authenticated"] is True and ok["user"]["username"] == "kubernetes-admin"
    assert ok["audiences"] == [API]
    assert _error(_review(kube_lab, kube_lab.api.token, [STS])) == "invalid bearer token"


def test_a_review_without_a_token_is_400_and_the_kind_is_in_discovery(
    kube_lab: KubeLab,
) -> None:
    auth = client.AuthenticationV1Api(kube_lab.api_client())
    with pytest.raises(ApiException) as exc:
        auth.create_token_review({"spec": {"token": ""}})
    body = json.loads(exc.value.body)
    assert exc.value.status == 400 and body["reason"] == "BadRequest"
    assert body["message"] == "token is required for TokenReview in authentication"
    resources = auth.get_api_resources().resources
    review = next(r for r in resources if r.name == "tokenreviews")
    assert (review.kind, review.verbs, review.namespaced) == ("TokenReview", ["create"], False)


# --- a ServiceAccount token as a bearer token ----------------------------------------------


def test_a_service_account_may_read_discovery_and_ask_who_it_is(
    kube_lab: KubeLab, bound: dict[str, str], tmp_path: Path
) -> None:
    api = _as(kube_lab, tmp_path, bound["api"])
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = client.ApisApi(api).get_api_versions().groups
    assert "authentication.k8s.io" in [g.name for g in groups]
    resp = client.AuthenticationV1Api(api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
        _preload_content=False,
    )
    who = json.loads(resp.data)["status"]["userInfo"]
    assert who["username"] == f"system:serviceaccount:default:{SA}"
    assert who["extra"]["authentication.kubernetes.io/pod-uid"] == [bound["pod_uid"]]


def test_a_service_account_is_forbidden_to_list_pods_with_the_rbac_message(
    kube_lab: KubeLab, bound: dict[str, str], tmp_path: Path
) -> None:
    core = client.CoreV1Api(_as(kube_lab, tmp_path, bound["api"]))
    with pytest.raises(ApiException) as exc:
        core.list_namespaced_pod("default")
    assert exc.value.status == 403
    user = f"system:serviceaccount:default:{SA}"
    assert json.loads(exc.value.body) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'pods is forbidden: User "{user}" cannot list resource "pods" in API '
        'group "" in the namespace "default"',
        "reason": "Forbidden",
        "details": {"kind": "pods"},
        "code": 403,
    }
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod(POD, "default")
    assert json.loads(exc.value.body)["details"] == {"name": POD, "kind": "pods"}
    with pytest.raises(ApiException) as exc:
        core.list_namespace()
    assert json.loads(exc.value.body)["message"] == (
        f'namespaces is forbidden: User "{user}" cannot list resource "namespaces" in '
        'API group "" at the cluster scope'
    )


def test_a_service_account_may_not_create_token_reviews(
    kube_lab: KubeLab, bound: dict[str, str], tmp_path: Path
) -> None:
    auth = client.AuthenticationV1Api(_as(kube_lab, tmp_path, bound["api"]))
    with pytest.raises(ApiException) as exc:
        auth.create_token_review({"spec": {"token": bound["api"]}})
    body = json.loads(exc.value.body)
    assert exc.value.status == 403
    assert body["message"] == (
        "tokenreviews.authentication.k8s.io is forbidden: User "
        f'"system:serviceaccount:default:{SA}" cannot create resource "tokenreviews" in '
        'API group "authentication.k8s.io" at the cluster scope'
    )
    assert body["details"] == {"group": "authentication.k8s.io", "kind": "tokenreviews"}


@pytest.mark.parametrize("path", ["/version", "/healthz", "/openid/v1/jwks"])
def test_a_token_that_does_not_authenticate_is_401_even_where_no_token_is_needed(
    kube_lab: KubeLab, bound: dict[str, str], tmp_path: Path, path: str
) -> None:
    # The STS token while its pod lives (its audience is not the API server's), and
    # the API token once its pod is gone.
    kube_lab.core().delete_namespaced_pod(POD, "default")
    for token in (bound["sts"], bound["api"], "garbage"):
        api = _as(kube_lab, tmp_path, token)
        with pytest.raises(ApiException) as exc:
            api.call_api(path, "GET", auth_settings=["BearerToken"], _preload_content=False)
        assert exc.value.status == 401
        assert json.loads(exc.value.body)["message"] == "Unauthorized"


def test_the_sts_token_is_refused_as_a_bearer_token_while_its_pod_lives(
    kube_lab: KubeLab, bound: dict[str, str], tmp_path: Path
) -> None:
    with pytest.raises(ApiException) as exc:
        client.CoreApi(_as(kube_lab, tmp_path, bound["sts"])).get_api_versions()
    assert exc.value.status == 401
    assert client.CoreApi(_as(kube_lab, tmp_path, bound["api"])).get_api_versions()


def test_the_admin_token_still_does_everything(kube_lab: KubeLab, bound: dict[str, str]) -> None:
    core = kube_lab.core()
    assert [p.metadata.name for p in core.list_namespaced_pod("default").items] == [POD]
    assert core.read_namespaced_service_account(SA, "default").metadata.uid == bound["sa_uid"]


# --- the pure core -----------------------------------------------------------------------------


def test_each_failure_is_its_own_class_carrying_its_wire_text(
    kube_lab: KubeLab, bound: dict[str, str]
) -> None:
    api = kube_lab.api
    with pytest.raises(authn.AudienceInvalid):
        api.authenticate(bound["sts"])
    kube_lab.core().delete_namespaced_pod(POD, "default")
    with pytest.raises(authn.Invalidated) as exc:
        api.authenticate(bound["sts"], [STS])
    assert exc.value.message == "service account token has been invalidated"
    assert exc.value.review_error == f"[invalid bearer token, {exc.value.message}]"


def test_a_protobuf_envelope_whose_raw_field_is_a_number_is_400_not_an_assertion() -> None:
    # Field 2 of runtime.Unknown sent as a varint instead of bytes.
    with pytest.raises(ApiError) as exc:
        decode_token_request_protobuf(b"k8s\x00" + bytes([0x10, 0x01]))
    assert exc.value.code == 400
    assert "the envelope's raw field is not length-delimited" in exc.value.message
