"""Kubernetes protobuf bodies (``application/vnd.kubernetes.protobuf``), kubectl's default.

The codec (:mod:`irsa_lab.kube.protobuf`) against the compiled definitions of the
pinned k8s.io/api (round trips of every kind the lab serves, apimachinery's special
types), the compiled definitions against the ``.proto`` files they come from, the real
kubectl (v1.36.1) against the embedded API server, and the real kube-apiserver v1.36.1
(the ``k8s`` backend) as the judge: what it writes as protobuf decodes to exactly the
JSON it writes, and the body kubectl sends is stored alike by both servers.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irsa_lab.backends import binaries
from irsa_lab.kube import discovery as disc
from irsa_lab.kube import protobuf_build, wire
from irsa_lab.kube.protobuf import (
    Codec,
    ProtobufError,
    codec,
    expected_kind,
    format_duration,
    parse_duration,
)
from irsa_lab.kube.protobuf_responses import prefers_protobuf
from irsa_lab.kube.status import ApiError

PROTOBUF = "application/vnd.kubernetes.protobuf"
KUBECTL = binaries.find("kubectl")
ROLE_ARN = "arn:aws:iam::111122223333:role/pb-role"
TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
Obj = dict[str, Any]


# --- realistic objects, one or more per kind the lab serves -------------------------------------

META = {
    "name": "web",
    "namespace": "default",
    "uid": "6f1c0d8e-8d2a-4a57-9f55-0d6c7a3b2e11",
    "resourceVersion": "42",
    "generation": 2,
    "creationTimestamp": "2024-03-27T10:00:00Z",
    "labels": {"app": "web", "tier": "front"},
    "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN},
    "managedFields": [
        {
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": "v1",
            "time": "2024-03-27T10:00:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}},
        }
    ],
}

POD_SPEC: Obj = {
    "volumes": [
        {
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
                ],
                "defaultMode": 420,
            },
        },
        {"name": "scratch", "emptyDir": {"sizeLimit": "64Mi"}},
    ],
    "containers": [
        {
            "name": "aws-cli",
            "image": "amazon/aws-cli",
            "command": ["sleep", "infinity"],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "env": [
                {"name": "AWS_ROLE_ARN", "value": ROLE_ARN},
                {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
                {
                    "name": "POD_NAME",
                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                },
            ],
            "resources": {
                "limits": {"cpu": "500m", "memory": "128Mi"},
                "requests": {"cpu": "250m"},
            },
            "volumeMounts": [
                {"name": "aws-iam-token", "readOnly": True, "mountPath": TOKEN_DIR},
            ],
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                "periodSeconds": 10,
            },
            "readinessProbe": {"tcpSocket": {"port": 8080}},
            "imagePullPolicy": "IfNotPresent",
        }
    ],
    "restartPolicy": "Always",
    "terminationGracePeriodSeconds": 30,
    "serviceAccountName": "web-sa",
    "automountServiceAccountToken": False,
    "securityContext": {"fsGroup": 65534},
}

POD: Obj = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": META,
    "spec": POD_SPEC,
    "status": {
        "phase": "Running",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "lastProbeTime": None,
                "lastTransitionTime": "2024-03-27T10:00:05Z",
            }
        ],
        "podIP": "10.0.0.7",
        "startTime": "2024-03-27T10:00:01Z",
        "containerStatuses": [
            {
                "name": "aws-cli",
                "state": {"running": {"startedAt": "2024-03-27T10:00:03Z"}},
                "lastState": {},
                "ready": True,
                "restartCount": 1,
                "image": "amazon/aws-cli",
                "imageID": "",
                "started": True,
            }
        ],
    },
}

TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": POD_SPEC}

OBJECTS: dict[str, Obj] = {
    "ServiceAccount": {
        "kind": "ServiceAccount",
        "apiVersion": "v1",
        "metadata": META,
        "automountServiceAccountToken": False,
        "imagePullSecrets": [{"name": "registry"}],
    },
    "ServiceAccountList": {
        "kind": "ServiceAccountList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "43", "continue": "abc", "remainingItemCount": 3},
        "items": [{"metadata": {"name": "a", "namespace": "default"}}],
    },
    "Namespace": {
        "kind": "Namespace",
        "apiVersion": "v1",
        "metadata": {"name": "dev", "labels": {"kubernetes.io/metadata.name": "dev"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    },
    "Pod": POD,
    "PodList": {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {},
        "items": [{k: v for k, v in POD.items() if k not in ("kind", "apiVersion")}],
    },
    "Event": {
        "kind": "Event",
        "apiVersion": "v1",
        "metadata": {"name": "web.17c", "namespace": "default"},
        "involvedObject": {"kind": "Pod", "namespace": "default", "name": "web", "uid": "u"},
        "reason": "FailedCreate",
        "message": 'admission webhook "pod-identity-webhook.amazonaws.com" denied',
        "source": {"component": "replicaset-controller"},
        "firstTimestamp": "2024-03-27T10:00:00Z",
        "lastTimestamp": "2024-03-27T10:01:00Z",
        "count": 3,
        "type": "Warning",
        "eventTime": None,
        "reportingComponent": "",
        "reportingInstance": "",
    },
    "events.k8s.io/Event": {
        "kind": "Event",
        "apiVersion": "events.k8s.io/v1",
        "metadata": {"name": "web.17d", "namespace": "default"},
        "eventTime": "2024-03-27T10:00:00.123456Z",
        "series": {"count": 2, "lastObservedTime": "2024-03-27T10:00:09.000001Z"},
        "reportingController": "kubelet",
        "reportingInstance": "node-1",
        "action": "Pulling",
        "reason": "Pulling",
        "regarding": {"kind": "Pod", "name": "web"},
        "note": "Pulling image",
        "type": "Normal",
        "deprecatedFirstTimestamp": "2024-03-27T10:00:00Z",
    },
    "MutatingWebhookConfiguration": {
        "kind": "MutatingWebhookConfiguration",
        "apiVersion": "admissionregistration.k8s.io/v1",
        "metadata": {"name": "pod-identity-webhook"},
        "webhooks": [
            {
                "name": "pod-identity-webhook.amazonaws.com",
                "clientConfig": {
                    "url": "https://127.0.0.1:9443/mutate",
                    "caBundle": base64.b64encode(b"-----BEGIN CERTIFICATE-----\n").decode(),
                },
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                        "scope": "*",
                    }
                ],
                "failurePolicy": "Ignore",
                "matchPolicy": "Equivalent",
                "namespaceSelector": {},
                "objectSelector": {
                    "matchExpressions": [{"key": "skip", "operator": "NotIn", "values": ["true"]}]
                },
                "sideEffects": "None",
                "timeoutSeconds": 10,
                "admissionReviewVersions": ["v1beta1"],
                "reinvocationPolicy": "Never",
            }
        ],
    },
    "Deployment": {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": META,
        "spec": {
            "replicas": 0,  # a pointer: 0 must survive
            "selector": {"matchLabels": {"app": "web"}},
            "template": TEMPLATE,
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 1},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {
            "observedGeneration": 2,
            "replicas": 1,
            "updatedReplicas": 1,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "True",
                    "lastUpdateTime": "2024-03-27T10:00:00Z",
                    "lastTransitionTime": "2024-03-27T10:00:00Z",
                    "reason": "NewReplicaSetAvailable",
                    "message": 'ReplicaSet "web-7d4b9c" has successfully progressed.',
                }
            ],
        },
    },
    "ReplicaSet": {
        "kind": "ReplicaSet",
        "apiVersion": "apps/v1",
        "metadata": {
            **META,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "web",
                    "uid": "u",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
        "status": {"replicas": 1, "fullyLabeledReplicas": 1, "observedGeneration": 1},
    },
    "TokenRequest": {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": "web-sa", "namespace": "default"},
        "spec": {
            "audiences": ["sts.amazonaws.com"],
            "expirationSeconds": 3600,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u"},
        },
        "status": {"token": "eyJ.x.y", "expirationTimestamp": "2024-03-27T11:00:00Z"},
    },
    "TokenReview": {
        "kind": "TokenReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "spec": {"token": "eyJ.x.y", "audiences": ["sts.amazonaws.com"]},
        "status": {
            "authenticated": True,
            "user": {
                "username": "system:serviceaccount:default:web-sa",
                "uid": "u",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["web"]},
            },
            "audiences": ["sts.amazonaws.com"],
        },
    },
    "SelfSubjectReview": {
        "kind": "SelfSubjectReview",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {},
        "status": {
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:authenticated"]}
        },
    },
    "SelfSubjectAccessReview": {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {},
        "spec": {
            "resourceAttributes": {
                "namespace": "default",
                "verb": "create",
                "resource": "serviceaccounts",
                "subresource": "token",
            }
        },
        "status": {"allowed": False, "reason": "no RBAC policy matched"},
    },
    "Status": {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'pods "nope" not found',
        "reason": "NotFound",
        "details": {"name": "nope", "kind": "pods"},
        "code": 404,
    },
    "DeleteOptions": {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "gracePeriodSeconds": 0,
        "propagationPolicy": "Foreground",
        "dryRun": ["All"],
    },
}


def served_kinds() -> set[tuple[str, str]]:
    resources = list(disc.CORE_RESOURCES)
    for group in disc.GROUP_RESOURCES.values():
        resources.extend(group)
    return {(r.api_version, r.kind) for r in resources}


# --- the codec ------------------------------------------------------------------------------------


def test_every_kind_the_lab_serves_has_its_protobuf_message_and_list() -> None:
    c = codec()
    for api_version, kind in served_kinds():
        assert c.has_kind(api_version, kind), (api_version, kind)
        assert c.message_name(api_version, kind).endswith("." + kind)
    assert c.has_kind("v1", "ServiceAccountList")
    assert c.has_kind("authentication.k8s.io/v1", "TokenRequest")
    assert c.version == protobuf_build.K8S_MODULE_VERSION


def test_the_round_trip_objects_cover_every_kind_the_lab_serves() -> None:
    covered = {(o["apiVersion"], o["kind"]) for o in OBJECTS.values()}
    assert served_kinds() <= covered, served_kinds() - covered


@pytest.mark.parametrize("name", sorted(OBJECTS))
def test_decode_of_encode_is_the_object_for_every_kind(name: str) -> None:
    c = codec()
    obj = OBJECTS[name]
    body = c.encode(obj)
    assert body.startswith(b"k8s\x00")
    assert c.decode(body) == obj


def _raw_message(c: Codec, obj: Obj) -> Any:
    """The kind's message as protobuf sees it, to check what the wire carries."""
    msg = c.message_class(c.message_name(obj["apiVersion"], obj["kind"]))()
    msg.ParseFromString(c.to_bytes(msg.DESCRIPTOR.full_name, obj))
    return msg


def test_special_types_are_carried_as_kubernetes_writes_them() -> None:
    c = codec()
    deployment = _raw_message(c, OBJECTS["Deployment"])
    # Time: seconds since the epoch; IntOrString: type 1 = string, 0 = int; pointer 0 kept.
    assert deployment.metadata.creationTimestamp.seconds == 1711533600
    assert deployment.spec.strategy.rollingUpdate.maxUnavailable.type == 1
    assert deployment.spec.strategy.rollingUpdate.maxUnavailable.strVal == "25%"
    assert deployment.spec.strategy.rollingUpdate.maxSurge.type == 0
    assert deployment.spec.strategy.rollingUpdate.maxSurge.intVal == 1
    assert deployment.spec.HasField("replicas") and deployment.spec.replicas == 0
    # FieldsV1: the JSON document as bytes; Quantity: its string.
    assert (
        json.loads(deployment.metadata.managedFields[0].fieldsV1.Raw)
        == (META["managedFields"][0]["fieldsV1"])
    )
    container = deployment.spec.template.spec.containers[0]
    assert container.resources.limits["memory"].string == "128Mi"
    # The inline VolumeSource of a Volume is its own message on the wire.
    assert deployment.spec.template.spec.volumes[0].volumeSource.projected.defaultMode == 420
    event = _raw_message(c, OBJECTS["events.k8s.io/Event"])
    assert (event.eventTime.seconds, event.eventTime.nanos) == (1711533600, 123456000)
    webhook = _raw_message(c, OBJECTS["MutatingWebhookConfiguration"])
    assert webhook.Webhooks[
        0
    ].clientConfig  # proto name != JSON name.caBundle == b"-----BEGIN CERTIFICATE-----\n"
    review = _raw_message(c, OBJECTS["TokenReview"])
    assert list(review.status.user.extra["authentication.kubernetes.io/pod-name"].items) == ["web"]


def test_omitempty_fields_go_and_pointers_and_required_fields_stay() -> None:
    c = codec()
    name = c.message_name("v1", "ServiceAccount")
    msg = c.message_class(name)()
    meta: Any = msg.metadata  # Go writes every non-pointer field, empty or not
    meta.name, meta.namespace, meta.generateName, meta.generation = "sa", "", "", 0
    meta.creationTimestamp.SetInParent()
    msg.automountServiceAccountToken = False
    decoded = c.from_bytes(name, msg.SerializeToString())
    # creationTimestamp is omitzero since 1.35: a zero time is left out, not null.
    assert decoded == {
        "metadata": {"name": "sa"},
        "automountServiceAccountToken": False,
    }
    sar = c.message_name("authorization.k8s.io/v1", "SelfSubjectAccessReview")
    body = c.to_bytes(sar, {"status": {"allowed": False}})
    assert c.from_bytes(sar, body)["status"] == {"allowed": False}


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1500, "1.5µs"),
        (300_000_000, "300ms"),
        (1_500_000_000, "1.5s"),
        (90 * 10**9, "1m30s"),
        (3600 * 10**9, "1h0m0s"),
        (-(3661 * 10**9 + 5), "-1h1m1.000000005s"),
    ],
)
def test_durations_read_and_write_as_go_does(ns: int, text: str) -> None:
    assert format_duration(ns) == text
    assert parse_duration(text) == ns


def test_a_duration_go_would_refuse_is_refused() -> None:
    for bad in ("", "1", "1x", "h"):
        with pytest.raises(ProtobufError, match="invalid duration"):
            parse_duration(bad)


def test_wrong_json_types_are_protobuf_errors_not_crashes() -> None:
    c = codec()
    name = c.message_name("v1", "Pod")
    for bad in (
        {"spec": {"containers": "nope"}},
        {"spec": {"automountServiceAccountToken": "yes"}},
        {"metadata": {"creationTimestamp": "yesterday"}},
        {"spec": {"containers": [{"ports": [{"containerPort": "80"}]}]}},
        {"metadata": {"labels": ["a"]}},
    ):
        with pytest.raises(ProtobufError):
            c.to_bytes(name, bad)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            b"",
            "the object provided is unrecognized (must be of type ServiceAccount): empty data (<empty>)",
        ),
        (
            b"hello",
            "the object provided is unrecognized (must be of type ServiceAccount): provided "
            "data does not appear to be a protobuf message, expected prefix [107 56 115 0] "
            "(68656c6c6f)",
        ),
        (
            b"k8s\x00\xff\xff\xff",
            "the object provided is unrecognized (must be of type ServiceAccount): "
            "unexpected EOF (6b387300ffffff)",
        ),
    ],
)
def test_unreadable_bodies_are_400_with_the_real_servers_message(body: bytes, message: str) -> None:
    # The messages are the ones kube-apiserver v1.36.1 answers (see the k8s test below).
    with pytest.raises(ApiError) as exc:
        wire.decode_protobuf(body, "ServiceAccount")
    assert exc.value.code == 400
    assert exc.value.message == message


def test_the_expected_kind_comes_from_the_path() -> None:
    assert expected_kind("/api/v1/namespaces/default/serviceaccounts") == "ServiceAccount"
    assert expected_kind("/api/v1/namespaces/default/serviceaccounts/sa/token") == "TokenRequest"
    assert expected_kind("/apis/apps/v1/namespaces/default/deployments/web") == "Deployment"
    assert expected_kind("/api/v1/namespaces") == "Namespace"


# --- the compiled definitions against the pinned .proto files ----------------------------------


def _cached_module_dirs() -> dict[str, Path]:
    """The pinned modules in the Go module cache, or a skip naming how to get them."""
    gomodcache = os.environ.get("GOMODCACHE") or str(Path.home() / "go" / "pkg" / "mod")
    version = protobuf_build.K8S_MODULE_VERSION
    dirs = {m: Path(gomodcache) / f"{m}@{version}" for m in ("k8s.io/api", "k8s.io/apimachinery")}
    missing = [f"{m}@{version}" for m, d in dirs.items() if not d.is_dir()]
    if missing:
        pytest.skip(
            f"{', '.join(missing)} not in the Go module cache: run "
            f"`go mod download -json k8s.io/api@{version} k8s.io/apimachinery@{version}`"
        )
    return dirs


def test_the_compiled_descriptor_set_matches_the_pinned_proto_files() -> None:
    pytest.importorskip("grpc_tools", reason="run `pip install grpcio-tools` for protoc")
    dirs = _cached_module_dirs()
    packaged = (protobuf_build.DATA_DIR / protobuf_build.DESCRIPTOR_FILE).read_bytes()
    assert protobuf_build.build_descriptor_set(dirs) == packaged, (
        "irsa_lab/data/k8s-protos.binpb is stale: run `python -m irsa_lab.kube.protobuf_build`"
    )


@pytest.mark.slow
def test_the_field_table_matches_the_pinned_go_types() -> None:
    dirs = _cached_module_dirs()
    if subprocess.run(["which", "go"], capture_output=True).returncode != 0:
        pytest.skip("go is not installed: install Go 1.24+ to read the Go types")
    packaged = json.loads((protobuf_build.DATA_DIR / protobuf_build.FIELDS_FILE).read_text())
    assert protobuf_build.build_fields(dirs) == packaged, (
        "irsa_lab/data/k8s-protos.json is stale: run `python -m irsa_lab.kube.protobuf_build`"
    )


# --- kubectl against the embedded API server --------------------------------------------------

needs_kubectl = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl v1.36.1 is not built; run `make k8s-bin` to build it"
)


class Cluster:
    """kubectl and raw HTTP against one backend's kubeconfig."""

    def __init__(self, state: Path) -> None:
        from kubernetes import config

        self.state = state
        home = state / "home"
        home.mkdir(exist_ok=True)
        self.env = {**os.environ, "KUBECONFIG": str(state / "kubeconfig"), "HOME": str(home)}
        self.api = config.new_client_from_config(config_file=str(state / "kubeconfig"))

    def kubectl(self, *args: str, input: str | None = None) -> str:
        assert KUBECTL is not None
        result = subprocess.run(
            [str(KUBECTL.path), *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def http(
        self, method: str, path: str, body: bytes | None = None, ctype: str = "", accept: str = ""
    ) -> tuple[int, str, bytes]:
        conf = self.api.configuration
        headers = {"Accept": accept or "application/json"}
        if ctype:
            headers["Content-Type"] = ctype
        token = conf.api_key.get("authorization") or conf.api_key.get("BearerToken")
        if token:
            headers["Authorization"] = token
        resp = self.api.rest_client.pool_manager.request(
            method, conf.host + path, body=body, headers=headers, timeout=30
        )
        return resp.status, resp.headers.get("Content-Type", ""), resp.data

    def stored(self, path: str) -> Obj:
        status, _, data = self.http("GET", path)
        assert status == 200, data
        obj: Obj = json.loads(data)
        return obj


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from irsa_lab.stack import EmbeddedLab

    state = tmp_path_factory.mktemp("protobuf-embedded")
    with EmbeddedLab(state_dir=state, seed=20240327):
        yield Cluster(state)


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The protobuf bodies the embedded server reads (it runs in this process)."""
    bodies: list[bytes] = []
    real: Callable[..., Obj] = wire.decode_protobuf

    def record(raw: bytes, kind: str = "") -> Obj:
        bodies.append(raw)
        return real(raw, kind)

    monkeypatch.setattr(wire, "decode_protobuf", record)
    return bodies


@needs_kubectl
def test_kubectl_creates_a_serviceaccount_and_a_namespace_sending_protobuf(
    embedded: Cluster, recorded: list[bytes]
) -> None:
    assert embedded.kubectl("create", "serviceaccount", "demo-sa").strip() == (
        "serviceaccount/demo-sa created"
    )
    assert embedded.kubectl("create", "namespace", "dev").strip() == "namespace/dev created"
    assert embedded.kubectl("create", "serviceaccount", "demo-sa", "-n", "dev").strip() == (
        "serviceaccount/demo-sa created"
    )
    kinds = [codec().decode(b)["kind"] for b in recorded]
    assert kinds == ["ServiceAccount", "Namespace", "ServiceAccount"]
    sa = embedded.stored("/api/v1/namespaces/dev/serviceaccounts/demo-sa")
    assert sa["metadata"]["name"] == "demo-sa" and sa["metadata"]["namespace"] == "dev"
    assert embedded.stored("/api/v1/namespaces/dev")["status"]["phase"] == "Active"


@needs_kubectl
def test_kubectl_create_token_sends_protobuf_and_gets_a_token_for_the_account(
    embedded: Cluster, recorded: list[bytes]
) -> None:
    embedded.kubectl("create", "serviceaccount", "token-sa")
    token = embedded.kubectl(
        "create", "token", "token-sa", "--audience", "sts.amazonaws.com", "--duration", "1h"
    ).strip()
    request = codec().decode(recorded[-1])
    assert request["kind"] == "TokenRequest"
    assert request["spec"] == {"audiences": ["sts.amazonaws.com"], "expirationSeconds": 3600}
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["sub"] == "system:serviceaccount:default:token-sa"
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["exp"] - claims["iat"] == 3600


@needs_kubectl
def test_kubectl_auth_whoami_sends_a_protobuf_self_subject_review(
    embedded: Cluster, recorded: list[bytes]
) -> None:
    out = embedded.kubectl("auth", "whoami", "-o", "json")
    assert json.loads(out)["status"]["userInfo"]["username"]
    assert codec().decode(recorded[-1])["kind"] == "SelfSubjectReview"


@needs_kubectl
def test_kubectl_apply_still_sends_json_and_works(embedded: Cluster, recorded: list[bytes]) -> None:
    sa = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "applied-sa", "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN}},
    }
    assert embedded.kubectl("apply", "-f", "-", input=json.dumps(sa)).strip() == (
        "serviceaccount/applied-sa created"
    )
    stored = embedded.stored("/api/v1/namespaces/default/serviceaccounts/applied-sa")
    assert stored["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == ROLE_ARN
    assert recorded == []  # apply sends JSON (and patches) only


def test_a_protobuf_body_of_another_kind_is_refused(embedded: Cluster) -> None:
    body = codec().encode({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "x"}})
    status, _, data = embedded.http(
        "POST", "/api/v1/namespaces/default/serviceaccounts", body, PROTOBUF
    )
    assert status == 400
    assert "cannot be handled as a ServiceAccount" in json.loads(data)["message"]


# --- the real kube-apiserver as the judge ----------------------------------------------------


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    missing = binaries.missing()
    if missing:
        pytest.skip(f"{', '.join(missing)} not built: run `make k8s-bin` (needs Go)")
    from irsa_lab.backends.k8s import K8sLab

    state = tmp_path_factory.mktemp("protobuf-k8s")
    with K8sLab(state_dir=state):
        yield Cluster(state)


def _without_server_fields(obj: Obj) -> Obj:
    meta = {
        k: v
        for k, v in obj["metadata"].items()
        if k not in ("uid", "resourceVersion", "creationTimestamp", "managedFields")
    }
    return {**obj, "metadata": meta}


@needs_kubectl
def test_the_body_kubectl_sends_is_stored_alike_by_both_servers(
    embedded: Cluster, real: Cluster, recorded: list[bytes]
) -> None:
    embedded.kubectl("create", "serviceaccount", "twin-sa")
    embedded.kubectl("create", "namespace", "twin-ns")
    sa_body, ns_body = recorded[0], recorded[1]
    for path, body in (
        ("/api/v1/namespaces/default/serviceaccounts", sa_body),
        ("/api/v1/namespaces", ns_body),
    ):
        status, _, data = real.http("POST", path, body, PROTOBUF)
        assert status == 201, data
    for path in (
        "/api/v1/namespaces/default/serviceaccounts/twin-sa",
        "/api/v1/namespaces/twin-ns",
    ):
        want = _without_server_fields(real.stored(path))
        assert _without_server_fields(embedded.stored(path)) == want, path


def test_what_the_real_server_writes_as_protobuf_decodes_to_the_json_it_writes(
    real: Cluster,
) -> None:
    sa = {
        "kind": "ServiceAccount",
        "apiVersion": "v1",
        "metadata": {"name": "pb-sa", "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN}},
    }
    status, _, data = real.http(
        "POST", "/api/v1/namespaces/default/serviceaccounts", codec().encode(sa), PROTOBUF
    )
    assert status == 201, data
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pb-pod", "labels": {"app": "pb"}},
        "spec": {
            "serviceAccountName": "pb-sa",
            "containers": [
                {
                    "name": "c",
                    "image": "busybox",
                    "ports": [{"containerPort": 80}],
                    "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}},
                    "livenessProbe": {"httpGet": {"path": "/", "port": 80}},
                }
            ],
        },
    }
    deployment = json.loads(json.dumps(OBJECTS["Deployment"]))
    deployment["metadata"] = {"name": "pb-web"}
    del deployment["status"]
    for path, obj in (
        ("/api/v1/namespaces/default/pods", pod),
        ("/apis/apps/v1/namespaces/default/deployments", deployment),
    ):
        status, _, data = real.http("POST", path, codec().encode(obj), PROTOBUF)
        assert status == 201, data
    paths = [
        "/api/v1/namespaces/default/serviceaccounts/pb-sa",
        "/api/v1/namespaces/default",
        "/api/v1/namespaces/default/pods/pb-pod",  # mutated by the upstream webhook
        "/apis/apps/v1/namespaces/default/deployments/pb-web",
        "/api/v1/namespaces/default/serviceaccounts",
        "/api/v1/namespaces/default/events",
        "/apis/events.k8s.io/v1/namespaces/default/events",
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
        "/api/v1/namespaces/default/pods/nope",  # a Status
    ]
    for path in paths:
        # The controllers and the kubelet keep writing (status, events): compare a
        # protobuf answer with JSON answers read just before and after it, once the
        # object stood still between them.
        for _ in range(20):
            _, _, before = real.http("GET", path)
            _, ctype, as_protobuf = real.http("GET", path, accept=f"{PROTOBUF},application/json")
            _, _, after = real.http("GET", path)
            if json.loads(before) == json.loads(after):
                break
            time.sleep(0.5)
        assert ctype.startswith(PROTOBUF), (path, ctype)
        assert codec().decode(as_protobuf) == json.loads(after), path
    stored_pod = real.stored("/api/v1/namespaces/default/pods/pb-pod")
    env = {e["name"]: e.get("value") for e in stored_pod["spec"]["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"] == ROLE_ARN  # the webhook read our protobuf ServiceAccount


@pytest.mark.parametrize(
    "body", [b"", b"hello", b"k8s\x00\xff\xff\xff"], ids=["empty", "no-magic", "truncated"]
)
def test_unreadable_bodies_get_the_real_servers_answer(
    embedded: Cluster, real: Cluster, body: bytes
) -> None:
    path = "/api/v1/namespaces/default/serviceaccounts"
    want_status, _, want = real.http("POST", path, body, PROTOBUF)
    got_status, _, got = embedded.http("POST", path, body, PROTOBUF)
    assert (got_status, json.loads(got)) == (want_status, json.loads(want))


# --- protobuf responses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "protobuf"),
    [
        ("application/vnd.kubernetes.protobuf,application/json", True),
        ("application/vnd.kubernetes.protobuf", True),
        ("application/json, */*", False),
        ("", False),
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", False),
        ("application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io", False),
        ("application/json,application/vnd.kubernetes.protobuf", False),
    ],
)
def test_protobuf_is_answered_only_when_it_is_the_clients_first_choice(
    accept: str, protobuf: bool
) -> None:
    assert prefers_protobuf(accept) is protobuf


RESPONSE_PATHS = [
    "/api/v1/namespaces/default/serviceaccounts/default",
    "/api/v1/namespaces/default",
    "/api/v1/namespaces/default/serviceaccounts",
    "/api/v1/namespaces/default/pods/nope",  # a 404 Status
    "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations",
    "/api",  # discovery documents have protobuf messages too
    "/apis/apps/v1",
]


def test_the_embedded_server_answers_protobuf_that_decodes_to_its_json(
    embedded: Cluster,
) -> None:
    for path in RESPONSE_PATHS:
        status, _, as_json = embedded.http("GET", path)
        pstatus, ctype, as_protobuf = embedded.http(
            "GET", path, accept=f"{PROTOBUF},application/json"
        )
        assert (pstatus, ctype) == (status, PROTOBUF), path
        want = json.loads(as_json)
        if path == "/api":  # APIVersions: no apiVersion in its JSON, v1 in its envelope
            want = {"kind": "APIVersions", "apiVersion": "v1", **want}
        assert codec().decode(as_protobuf) == want, path
    table_accept = f"{PROTOBUF};as=Table;v=v1;g=meta.k8s.io,application/json"
    _, ctype, _ = embedded.http("GET", RESPONSE_PATHS[2], accept=table_accept)
    assert ctype.startswith("application/json")


def test_both_servers_pick_the_same_content_type_for_each_answer(
    embedded: Cluster, real: Cluster
) -> None:
    accept = f"{PROTOBUF},application/json"
    for path in RESPONSE_PATHS:
        want = real.http("GET", path, accept=accept)
        got = embedded.http("GET", path, accept=accept)
        assert (got[0], got[1].split(";")[0]) == (want[0], want[1].split(";")[0]), path


# --- robustness ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    tail=st.binary(max_size=200),
    kind=st.sampled_from(["ServiceAccount", "Pod", "Namespace", "TokenRequest", "Nope"]),
)
def test_any_bytes_decode_to_an_object_or_a_protobuf_error(tail: bytes, kind: str) -> None:
    c = codec()
    version = "authentication.k8s.io/v1" if kind == "TokenRequest" else "v1"
    envelope = c.message_class("k8s.io.apimachinery.pkg.runtime.Unknown")()
    envelope.typeMeta.apiVersion, envelope.typeMeta.kind = version, kind
    envelope.raw = tail
    for body in (b"k8s\x00" + tail, b"k8s\x00" + envelope.SerializeToString()):
        try:
            obj = c.decode(body)
        except ProtobufError:
            continue
        assert isinstance(obj, dict)
        json.dumps(obj)  # what the store keeps must be JSON


@settings(max_examples=200, deadline=None)
@given(
    labels=st.dictionaries(st.text(max_size=20), st.text(max_size=20), min_size=1, max_size=4),
    seconds=st.integers(min_value=1, max_value=253402300799),
    port=st.one_of(st.integers(min_value=0, max_value=65535), st.text(min_size=1, max_size=15)),
    replicas=st.integers(min_value=0, max_value=2**31 - 1),
)
def test_round_trips_hold_for_generated_values(
    labels: dict[str, str], seconds: int, port: int | str, replicas: int
) -> None:
    from datetime import UTC, datetime

    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj = json.loads(json.dumps(OBJECTS["Deployment"]))
    obj["metadata"]["labels"] = labels
    obj["metadata"]["creationTimestamp"] = stamp
    obj["spec"]["replicas"] = replicas
    obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = port
    assert codec().decode(codec().encode(obj)) == obj
