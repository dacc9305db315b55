"""Wire entry points not fuzzed elsewhere never answer a 5xx, crash or hang.

Covered elsewhere: STS forms (test_sts_fuzz), random bodies on the API server's create
paths (test_apiserver), AdmissionReviews posted to the webhook (test_webhook_server),
IAM and S3 requests (test_iam, test_s3), policies (test_policy_properties). Here:
TokenRequest bodies shaped like the real thing (JSON and protobuf), the IMDS, the OIDC
host, and AdmissionReview *answers*: a webhook that answers anything, seen through the
API server, whose only 5xx is its documented webhook-failure 500.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from irsa_lab import constants as C
from irsa_lab import web
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock

TIMEOUT_S = 15  # a request that takes longer counts as a hang


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLab]:
    lab = EmbeddedLab(
        state_dir=tmp_path_factory.mktemp("fuzz"), seed=DEFAULT_SEED, clock=lab_clock(True)
    ).start()
    try:
        yield lab
    finally:
        lab.stop()


def request(
    stack: EmbeddedLab,
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(base)
    if url.scheme == "https":
        ctx = ssl.create_default_context(cafile=stack.endpoints.ca_bundle)
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            url.hostname or "", url.port, context=ctx, timeout=TIMEOUT_S
        )
    else:
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=TIMEOUT_S)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def assert_status_object(code: int, raw: bytes) -> dict[str, Any]:
    status = json.loads(raw)
    assert status["kind"] == "Status" and status["apiVersion"] == "v1"
    assert status["status"] == "Failure" and status["code"] == code
    assert isinstance(status["message"], str)
    # reason is omitempty: a webhook's denial without one has none, as on a real server.
    assert isinstance(status.get("reason", ""), str)
    return dict(status)


def no_internal_errors_since(stack: EmbeddedLab, mark: int) -> None:
    """No request hit the API server's catch-all (a bug turned into a 500)."""
    bugs = [
        e
        for e in stack.trace.since(mark)
        if e.target == "apiserver" and e.outcome == "InternalError"
    ]
    assert bugs == []


# --- TokenRequest bodies ----------------------------------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**65), 2**65)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
_maybe = st.one_of(st.just("<absent>"), _scalars, st.lists(_scalars, max_size=3))
token_requests = st.fixed_dictionaries(
    {},
    optional={
        "apiVersion": st.sampled_from(["authentication.k8s.io/v1", "v1", ""]) | _scalars,
        "kind": st.sampled_from(["TokenRequest", "Pod", ""]) | _scalars,
        "metadata": st.fixed_dictionaries(
            {}, optional={"name": st.sampled_from([C.SERVICE_ACCOUNT, "other"]) | _scalars}
        )
        | _scalars,
        "spec": st.fixed_dictionaries(
            {},
            optional={
                "audiences": st.lists(
                    st.sampled_from([C.DEFAULT_AUDIENCE, "", "https://kubernetes.default.svc"])
                    | st.text(max_size=20),
                    max_size=3,
                )
                | _scalars,
                "expirationSeconds": st.sampled_from([599, 600, 3600, 3607, 86400, 2**32 + 1])
                | _scalars,
                "boundObjectRef": st.fixed_dictionaries(
                    {},
                    optional={
                        "kind": st.sampled_from(["Pod", "Secret", "Node", "Service"]) | _scalars,
                        "apiVersion": st.sampled_from(["v1", "apps/v1"]) | _scalars,
                        "name": st.sampled_from(["mypod", "missing"]) | _scalars,
                        "uid": st.text(max_size=36) | _scalars,
                    },
                )
                | _scalars,
            },
        )
        | _scalars,
        "status": _maybe,
    },
)
TOKEN_PATH = f"/api/v1/namespaces/default/serviceaccounts/{C.SERVICE_ACCOUNT}/token"


@settings(max_examples=150, deadline=None)
@given(body=token_requests)
def test_token_requests_of_any_shape_get_a_token_or_a_status_never_a_5xx(
    stack: EmbeddedLab, body: dict[str, Any]
) -> None:
    mark = stack.trace.mark()
    headers = {"Authorization": f"Bearer {stack.api_token}", "Content-Type": "application/json"}
    code, _, raw = request(
        stack, stack.endpoints.apiserver, "POST", TOKEN_PATH, json.dumps(body).encode(), headers
    )
    event(f"HTTP {code}")
    assert code < 500, raw
    if code == 201:
        answer = json.loads(raw)
        assert answer["kind"] == "TokenRequest" and answer["status"]["token"].count(".") == 2
    else:
        assert_status_object(code, raw)
    no_internal_errors_since(stack, mark)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


_proto_fields = st.lists(
    st.tuples(st.integers(1, 6), st.sampled_from([0, 1, 2, 5, 3, 7]), st.binary(max_size=24)),
    max_size=6,
)


def _encode(fields: list[tuple[int, int, bytes]]) -> bytes:
    out = b""
    for number, wire, payload in fields:
        out += _varint(number << 3 | wire)
        if wire == 0:
            out += _varint(int.from_bytes(payload[:8] or b"\0", "little"))
        elif wire == 2:
            out += _varint(len(payload)) + payload
        else:
            out += payload  # fixed-size or invalid wire types, maybe truncated
    return out


protobuf_bodies = (
    st.binary(max_size=64)
    | _proto_fields.map(lambda f: b"k8s\x00" + _encode(f))
    | st.tuples(_proto_fields, _proto_fields).map(
        lambda ab: b"k8s\x00" + _encode([(1, 2, _encode(ab[0])), (2, 2, _encode(ab[1]))])
    )
)


@settings(max_examples=150, deadline=None)
@given(body=protobuf_bodies)
def test_protobuf_token_requests_like_kubectl_create_token_never_get_a_5xx(
    stack: EmbeddedLab, body: bytes
) -> None:
    mark = stack.trace.mark()
    headers = {
        "Authorization": f"Bearer {stack.api_token}",
        "Content-Type": "application/vnd.kubernetes.protobuf",
        "Accept": "application/json",
    }
    code, _, raw = request(stack, stack.endpoints.apiserver, "POST", TOKEN_PATH, body, headers)
    event(f"HTTP {code}")
    assert code < 500, raw
    if code != 201:
        assert_status_object(code, raw)
    no_internal_errors_since(stack, mark)


# --- IMDS ---------------------------------------------------------------------------------------

_imds_paths = st.sampled_from(
    [
        "/latest/api/token",
        "/latest/meta-data/",
        "/latest/meta-data/iam/security-credentials/",
        f"/latest/meta-data/iam/security-credentials/{C.NODE_ROLE_NAME}",
        "/latest/meta-data/iam/info",
        "/latest/meta-data/instance-id",
        "/latest/dynamic/instance-identity/document",
    ]
) | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30).map(
    lambda s: "/" + quote(s, safe="/")
)
_header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    method=st.sampled_from(["GET", "GET", "GET", "PUT", "PUT", "POST", "DELETE", "HEAD"]),
    path=_imds_paths,
    ttl=st.none() | st.sampled_from(["21600", "1", "0", "21601", "-5", "1e3"]) | _header_values,
    token=st.none() | _header_values,
    forwarded=st.booleans(),
    tokens_required=st.booleans(),
)
def test_imds_answers_any_request_with_a_plain_text_status_never_a_5xx(
    stack: EmbeddedLab,
    method: str,
    path: str,
    ttl: str | None,
    token: str | None,
    forwarded: bool,
    tokens_required: bool,
) -> None:
    stack.imds_settings.http_tokens = "required" if tokens_required else "optional"
    headers = {}
    if ttl is not None:
        headers[C.IMDS_TOKEN_TTL_HEADER] = ttl
    if token is not None:
        headers[C.IMDS_TOKEN_HEADER] = token
    if forwarded:
        headers["X-Forwarded-For"] = "10.0.0.1"
    try:
        code, got, raw = request(stack, stack.endpoints.imds, method, path, None, headers)
    finally:
        stack.imds_settings.http_tokens = "optional"
    event(f"HTTP {code}")
    assert code < 500, raw
    assert code in (200, 400, 401, 403, 404, 405)
    if method != "HEAD" and code != 405:
        assert got["content-type"].startswith("text/plain")


def test_imds_fuzzing_leaves_the_imdsv2_flow_working(stack: EmbeddedLab) -> None:
    headers = {C.IMDS_TOKEN_TTL_HEADER: "60"}
    code, _, token = request(stack, stack.endpoints.imds, "PUT", "/latest/api/token", b"", headers)
    assert code == 200
    path = f"/latest/meta-data/iam/security-credentials/{C.NODE_ROLE_NAME}"
    headers = {C.IMDS_TOKEN_HEADER: token.decode()}
    code, _, raw = request(stack, stack.endpoints.imds, "GET", path, None, headers)
    assert code == 200 and json.loads(raw)["Code"] == "Success"


# --- OIDC host ----------------------------------------------------------------------------------


@settings(max_examples=120, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]),
    suffix=st.sampled_from(["/.well-known/openid-configuration", "/keys", "", "/"])
    | st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=30).map(
        lambda s: "/" + quote(s, safe="/")
    ),
    under_issuer=st.booleans(),
    accept=st.sampled_from(["*/*", "application/json", "text/html", "application/jwk-set+json"]),
)
def test_the_oidc_host_answers_json_200_or_404_to_anything(
    stack: EmbeddedLab, method: str, suffix: str, under_issuer: bool, accept: str
) -> None:
    base = urlsplit(stack.endpoints.oidc)
    path = (base.path if under_issuer else "") + suffix
    code, got, raw = request(
        stack, stack.endpoints.oidc, method, path or "/", None, {"Accept": accept}
    )
    assert code in (200, 404), raw
    assert got["content-type"] == "application/json"
    body = json.loads(raw)
    if code == 200:
        assert "keys" in body or body.get("issuer") == stack.endpoints.issuer
    else:
        assert body == {"message": "Not Found"}


# --- AdmissionReview answers, seen through the API server ---------------------------------------

_ops = st.fixed_dictionaries(
    {
        "op": st.sampled_from(["add", "remove", "replace", "move", "copy", "test", "bogus"]),
        "path": st.sampled_from(
            [
                "/metadata/labels",
                "/metadata/labels/x",
                "/metadata/name",
                "/metadata/namespace",
                "/spec/containers/0/env",
                "/spec/containers/0/image",
                "/spec/containers/-",
                "/spec/volumes",
                "/spec/serviceAccountName",
                "/status",
                "/kind",
                "",
                "/nope/deeper",
            ]
        ),
    },
    optional={
        "value": st.recursive(
            _scalars,
            lambda inner: (
                st.lists(inner, max_size=2)
                | st.dictionaries(
                    st.sampled_from(["name", "image", "x", "value"]), inner, max_size=2
                )
            ),
            max_leaves=6,
        ),
        "from": st.sampled_from(["/metadata/labels", "/spec/containers/0", "/x"]),
    },
)
_patches = st.one_of(
    st.lists(_ops, max_size=3).map(lambda ops: base64.b64encode(json.dumps(ops).encode()).decode()),
    st.text(max_size=20),
    _scalars,
)
_garbage = st.binary(max_size=30).map(lambda b: ("raw", b)) | _scalars.map(lambda v: ("json", v))
answers = st.one_of(
    _garbage,
    st.fixed_dictionaries(
        {
            # Mostly well-formed envelopes, so the answers reach the patch and denial code.
            "uid_ok": st.sampled_from([True, True, True, False]),
            "allowed": st.booleans() | _scalars,
            "version": st.sampled_from(["admission.k8s.io/v1"] * 4 + ["admission.k8s.io/v1beta1"]),
            "kind": st.sampled_from(["AdmissionReview"] * 4 + ["Status"]),
        },
        optional={
            "patchType": st.sampled_from(["JSONPatch", "MergePatch"]) | _scalars,
            "patch": _patches,
            "status": st.fixed_dictionaries(
                {},
                optional={
                    "code": st.sampled_from([400, 403, 422, 429]) | st.none(),
                    "message": st.text(max_size=20),
                    "reason": st.text(max_size=10),
                },
            ),
            "warnings": st.lists(st.text(max_size=20), max_size=2) | _scalars,
        },
    ).map(lambda d: ("review", d)),
)


class FuzzWebhook:
    """A webhook that answers whatever the current example says."""

    def __init__(self) -> None:
        self.answer: tuple[str, Any] = ("json", None)
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        review = await request.json()
        kind, spec = self.answer
        if kind == "raw":
            return web.Response(body=spec, content_type="application/json")
        if kind == "json":
            return web.json_response(spec)
        uid = review["request"]["uid"] if spec["uid_ok"] else "not-the-uid"
        response: dict[str, Any] = {"uid": uid, "allowed": spec["allowed"]}
        for key in ("patchType", "patch", "status", "warnings"):
            if key in spec:
                response[key] = spec[key]
        body = {"apiVersion": spec["version"], "kind": spec["kind"], "response": response}
        await asyncio.sleep(0)
        return web.json_response(body)


@pytest.fixture(scope="module")
def fuzz_webhook(stack: EmbeddedLab) -> FuzzWebhook:
    hook = FuzzWebhook()
    app = web.Application()
    app.router.add_post("/{policy}", hook.handle)
    served = stack.loop.serve("fuzz-webhook", app, tls=stack.ca.issue().server_context())
    ca = base64.b64encode(stack.ca.cert_pem).decode()
    rules = [
        {"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}
    ]
    config = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "fuzz"},
        "webhooks": [
            {
                "name": f"fuzz-{policy.lower()}.test.lab",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": f"{served.url}/{policy}", "caBundle": ca},
                "failurePolicy": policy,
                "sideEffects": "None",
                "timeoutSeconds": 5,
                "rules": rules,
                "objectSelector": {"matchLabels": {"fuzz": policy.lower()}},
            }
            for policy in ("Ignore", "Fail")
        ],
    }
    headers = {"Authorization": f"Bearer {stack.api_token}", "Content-Type": "application/json"}
    code, _, raw = request(
        stack,
        stack.endpoints.apiserver,
        "POST",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        json.dumps(config).encode(),
        headers,
    )
    assert code == 201, raw
    return hook


@settings(max_examples=150, deadline=None)
@given(answer=answers, policy=st.sampled_from(["ignore", "fail"]))
def test_any_webhook_answer_gives_a_stored_pod_a_status_or_the_documented_500(
    stack: EmbeddedLab, fuzz_webhook: FuzzWebhook, answer: tuple[str, Any], policy: str
) -> None:
    fuzz_webhook.answer = answer
    calls = fuzz_webhook.calls
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "fuzz-", "labels": {"fuzz": policy}},
        "spec": {
            "serviceAccountName": C.SERVICE_ACCOUNT,
            "containers": [{"name": "app", "image": "amazon/aws-cli"}],
        },
    }
    headers = {"Authorization": f"Bearer {stack.api_token}", "Content-Type": "application/json"}
    mark = stack.trace.mark()
    code, _, raw = request(
        stack,
        stack.endpoints.apiserver,
        "POST",
        "/api/v1/namespaces/default/pods",
        json.dumps(pod).encode(),
        headers,
    )
    assert fuzz_webhook.calls > calls  # the answer was really seen by the API server
    event(f"{policy}: HTTP {code}")
    no_internal_errors_since(stack, mark)
    if code == 201:
        name = json.loads(raw)["metadata"]["name"]
        assert stack.apiserver.store.get("pods", "default", name) is not None
        return
    status = assert_status_object(code, raw)
    if code >= 500:
        # The only 5xx the API server sends for admission: the webhook call failed under
        # failurePolicy Fail, or the webhook's patch did not apply (whatever the policy).
        assert code == 500 and status["reason"] == "InternalError", status
        assert status["message"].startswith("Internal error occurred: "), status
        record = stack.apiserver.last_admission
        assert record is not None and record.webhook.startswith("fuzz-")


def test_fuzzing_left_the_pod_identity_webhook_working(stack: EmbeddedLab) -> None:
    headers = {"Authorization": f"Bearer {stack.api_token}", "Content-Type": "application/json"}
    pod = {
        "metadata": {"generateName": "after-"},
        "spec": {
            "serviceAccountName": C.SERVICE_ACCOUNT,
            "containers": [{"name": "app", "image": "amazon/aws-cli"}],
        },
    }
    code, _, raw = request(
        stack,
        stack.endpoints.apiserver,
        "POST",
        "/api/v1/namespaces/default/pods",
        json.dumps(pod).encode(),
        headers,
    )
    assert code == 201
    env = {e["name"] for e in json.loads(raw)["spec"]["containers"][0]["env"]}
    assert C.ENV_ROLE_ARN in env
