"""The admission record read from a real API server's audit log (irsa_lab.kube.audit).

The fixtures are audit Events kube-apiserver v1.36.1 wrote at ``Request`` level with the
upstream pod identity webhook v0.6.17 (the ``k8s`` backend), trimmed of the fields the
reader does not use (source IPs, user agent, timestamps, credential ids, kubectl's
last-applied annotation). The live tests run the real programs and are skipped, naming
``make k8s-bin``, where they are not built.
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from irsa_lab import constants as C
from irsa_lab.backends import binaries
from irsa_lab.kube.audit import (
    AUDIT_SOURCE,
    AuditLog,
    NoAuditEvent,
    admission_records,
    find_pod_create,
    parse_events,
    webhook_calls,
)
from irsa_lab.webhook.mutate import mutate_pod
from irsa_lab.webhook.settings import WebhookSettings

ROLE_ARN = "arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"
# The k8s backend runs the webhook with --aws-default-region and --sts-regional-endpoint.
K8S_WEBHOOK_SETTINGS = WebhookSettings(aws_default_region=C.REGION, sts_regional_endpoint=True)

# `kubectl apply -f examples/mypod.yaml`: called, patched.
MYPOD = r"""{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"4a93142e-a561-4ce6-b4ab-e8709207bd9e","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-client-side-apply&fieldValidation=Strict","verb":"create","user":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"objectRef":{"resource":"pods","namespace":"default","name":"mypod","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"mypod","namespace":"default"},"spec":{"containers":[{"name":"mypod","image":"amazon/aws-cli","command":["sleep","infinity"],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"Always"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"s3-readonly-sa","serviceAccount":"s3-readonly-sa","securityContext":{},"schedulerName":"default-scheduler","enableServiceLinks":true},"status":{}},"annotations":{"authorization.k8s.io/decision":"allow","mutation.webhook.admission.k8s.io/round_0_index_0":"{\"configuration\":\"pod-identity-webhook\",\"webhook\":\"iam-for-pods.amazonaws.com\",\"mutated\":true}","patch.webhook.admission.k8s.io/round_0_index_0":"{\"configuration\":\"pod-identity-webhook\",\"webhook\":\"iam-for-pods.amazonaws.com\",\"patch\":[{\"op\":\"add\",\"path\":\"/spec/volumes/0\",\"value\":{\"name\":\"aws-iam-token\",\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"audience\":\"sts.amazonaws.com\",\"expirationSeconds\":86400,\"path\":\"token\"}}]}}},{\"op\":\"add\",\"path\":\"/spec/containers\",\"value\":[{\"name\":\"mypod\",\"image\":\"amazon/aws-cli\",\"command\":[\"sleep\",\"infinity\"],\"env\":[{\"name\":\"AWS_STS_REGIONAL_ENDPOINTS\",\"value\":\"regional\"},{\"name\":\"AWS_DEFAULT_REGION\",\"value\":\"eu-west-1\"},{\"name\":\"AWS_REGION\",\"value\":\"eu-west-1\"},{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole\"},{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/eks.amazonaws.com/serviceaccount/token\"}],\"resources\":{},\"volumeMounts\":[{\"name\":\"kube-api-access-l98cx\",\"readOnly\":true,\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"},{\"name\":\"aws-iam-token\",\"readOnly\":true,\"mountPath\":\"/var/run/secrets/eks.amazonaws.com/serviceaccount\"}],\"terminationMessagePath\":\"/dev/termination-log\",\"terminationMessagePolicy\":\"File\",\"imagePullPolicy\":\"Always\"}]}],\"patchType\":\"JSONPatch\"}"}}"""
# The same pod labelled eks.amazonaws.com/skip-pod-identity-webhook=true: not called.
SKIPPOD = r"""{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"2b6ba982-10aa-4b12-9710-47a5625e911a","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-client-side-apply&fieldValidation=Strict","verb":"create","user":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"objectRef":{"resource":"pods","namespace":"default","name":"skippod","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"skippod","namespace":"default","labels":{"eks.amazonaws.com/skip-pod-identity-webhook":"true"}},"spec":{"containers":[{"name":"c","image":"amazon/aws-cli","command":["sleep","infinity"],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"Always"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"s3-readonly-sa","serviceAccount":"s3-readonly-sa","securityContext":{},"schedulerName":"default-scheduler","enableServiceLinks":true},"status":{}},"annotations":{"authorization.k8s.io/decision":"allow"}}"""
# A pod of the `default` ServiceAccount (no role-arn): called, not patched.
PLAINPOD = r"""{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"85b53389-0795-421b-8673-737d440a3c8c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-client-side-apply&fieldValidation=Strict","verb":"create","user":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"objectRef":{"resource":"pods","namespace":"default","name":"plainpod","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"plainpod","namespace":"default"},"spec":{"containers":[{"name":"c","image":"amazon/aws-cli","command":["sleep","infinity"],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"Always"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","securityContext":{},"schedulerName":"default-scheduler","enableServiceLinks":true},"status":{}},"annotations":{"authorization.k8s.io/decision":"allow","mutation.webhook.admission.k8s.io/round_0_index_0":"{\"configuration\":\"pod-identity-webhook\",\"webhook\":\"iam-for-pods.amazonaws.com\",\"mutated\":false}"}}"""
# A second configuration `zz-broken` with two webhooks at a closed port, each selecting
# pods by a label: broken.example.com (index 1, failurePolicy Fail) ...
FAILPOD = r"""{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"92c048b0-160f-4968-91a1-474f35c3446e","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-run","verb":"create","user":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"objectRef":{"resource":"pods","namespace":"default","name":"failpod","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Failure","message":"Internal error occurred: failed calling webhook \"broken.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/mutate?timeout=10s\": dial tcp 127.0.0.1:1: connect: connection refused","reason":"InternalError","details":{"causes":[{"message":"failed calling webhook \"broken.example.com\": failed to call webhook: Post \"https://127.0.0.1:1/mutate?timeout=10s\": dial tcp 127.0.0.1:1: connect: connection refused"}]},"code":500},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"failpod","labels":{"broken":"fail"}},"spec":{"containers":[{"name":"failpod","image":"amazon/aws-cli","args":["sleep","infinity"],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"Always"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"s3-readonly-sa","serviceAccount":"s3-readonly-sa","securityContext":{},"schedulerName":"default-scheduler","enableServiceLinks":true},"status":{}},"annotations":{"authorization.k8s.io/decision":"allow","mutation.webhook.admission.k8s.io/round_0_index_0":"{\"configuration\":\"pod-identity-webhook\",\"webhook\":\"iam-for-pods.amazonaws.com\",\"mutated\":true}","mutation.webhook.admission.k8s.io/round_0_index_1":"{\"configuration\":\"zz-broken\",\"webhook\":\"broken.example.com\",\"mutated\":false}","patch.webhook.admission.k8s.io/round_0_index_0":"{\"configuration\":\"pod-identity-webhook\",\"webhook\":\"iam-for-pods.amazonaws.com\",\"patch\":[{\"op\":\"add\",\"path\":\"/spec/volumes/0\",\"value\":{\"name\":\"aws-iam-token\",\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"audience\":\"sts.amazonaws.com\",\"expirationSeconds\":86400,\"path\":\"token\"}}]}}},{\"op\":\"add\",\"path\":\"/spec/containers\",\"value\":[{\"name\":\"failpod\",\"image\":\"amazon/aws-cli\",\"args\":[\"sleep\",\"infinity\"],\"env\":[{\"name\":\"AWS_STS_REGIONAL_ENDPOINTS\",\"value\":\"regional\"},{\"name\":\"AWS_DEFAULT_REGION\",\"value\":\"eu-west-1\"},{\"name\":\"AWS_REGION\",\"value\":\"eu-west-1\"},{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole\"},{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/eks.amazonaws.com/serviceaccount/token\"}],\"resources\":{},\"volumeMounts\":[{\"name\":\"kube-api-access-vv9qb\",\"readOnly\":true,\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"},{\"name\":\"aws-iam-token\",\"readOnly\":true,\"mountPath\":\"/var/run/secrets/eks.amazonaws.com/serviceaccount\"}],\"terminationMessagePath\":\"/dev/termination-log\",\"terminationMessagePolicy\":\"File\",\"imagePullPolicy\":\"Always\"}]}],\"patchType\":\"JSONPatch\"}"}}"""
# ... and broken-ignore.example.com (index 2, failurePolicy Ignore).
IGNPOD = r"""{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"f9f0f639-d935-4eaa-9508-d932247076aa","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-run","verb":"create","user":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"objectRef":{"resource":"pods","namespace":"default","name":"ignpod","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"ignpod","labels":{"broken":"ignore"}},"spec":{"containers":[{"name":"ignpod","image":"amazon/aws-cli","args":["sleep","infinity"],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"Always"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"s3-readonly-sa","serviceAccount":"s3-readonly-sa","securityContext":{},"schedulerName":"default-scheduler","enableServiceLinks":true},"status":{}},"annotations":{"authorization.k8s.io/decision":"allow","failed-open.mutation.webhook.admission.k8s.io/round_0_index_2":"broken-ignore.example.com","mutation.webhook.admission.k8s.io/round_0_index_0":"{\"configuration\":\"pod-identity-webhook\",\"webhook\":\"iam-for-pods.amazonaws.com\",\"mutated\":true}","mutation.webhook.admission.k8s.io/round_0_index_2":"{\"configuration\":\"zz-broken\",\"webhook\":\"broken-ignore.example.com\",\"mutated\":false}","patch.webhook.admission.k8s.io/round_0_index_0":"{\"configuration\":\"pod-identity-webhook\",\"webhook\":\"iam-for-pods.amazonaws.com\",\"patch\":[{\"op\":\"add\",\"path\":\"/spec/volumes/0\",\"value\":{\"name\":\"aws-iam-token\",\"projected\":{\"sources\":[{\"serviceAccountToken\":{\"audience\":\"sts.amazonaws.com\",\"expirationSeconds\":86400,\"path\":\"token\"}}]}}},{\"op\":\"add\",\"path\":\"/spec/containers\",\"value\":[{\"name\":\"ignpod\",\"image\":\"amazon/aws-cli\",\"args\":[\"sleep\",\"infinity\"],\"env\":[{\"name\":\"AWS_STS_REGIONAL_ENDPOINTS\",\"value\":\"regional\"},{\"name\":\"AWS_DEFAULT_REGION\",\"value\":\"eu-west-1\"},{\"name\":\"AWS_REGION\",\"value\":\"eu-west-1\"},{\"name\":\"AWS_ROLE_ARN\",\"value\":\"arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole\"},{\"name\":\"AWS_WEB_IDENTITY_TOKEN_FILE\",\"value\":\"/var/run/secrets/eks.amazonaws.com/serviceaccount/token\"}],\"resources\":{},\"volumeMounts\":[{\"name\":\"kube-api-access-r9lmj\",\"readOnly\":true,\"mountPath\":\"/var/run/secrets/kubernetes.io/serviceaccount\"},{\"name\":\"aws-iam-token\",\"readOnly\":true,\"mountPath\":\"/var/run/secrets/eks.amazonaws.com/serviceaccount\"}],\"terminationMessagePath\":\"/dev/termination-log\",\"terminationMessagePolicy\":\"File\",\"imagePullPolicy\":\"Always\"}]}],\"patchType\":\"JSONPatch\"}"}}"""
# The pod identity webhook's process stopped: failed open (its failurePolicy is Ignore).
DOWNPOD = r"""{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"4bddf478-8101-45f6-9585-9bdd50e84d74","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?fieldManager=kubectl-run","verb":"create","user":{"username":"kubernetes-admin","groups":["system:masters","system:authenticated"]},"objectRef":{"resource":"pods","namespace":"default","name":"downpod","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"downpod","labels":{"run":"downpod"}},"spec":{"containers":[{"name":"downpod","image":"amazon/aws-cli","args":["sleep","infinity"],"resources":{},"terminationMessagePath":"/dev/termination-log","terminationMessagePolicy":"File","imagePullPolicy":"Always"}],"restartPolicy":"Always","terminationGracePeriodSeconds":30,"dnsPolicy":"ClusterFirst","serviceAccountName":"s3-readonly-sa","serviceAccount":"s3-readonly-sa","securityContext":{},"schedulerName":"default-scheduler","enableServiceLinks":true},"status":{}},"annotations":{"authorization.k8s.io/decision":"allow","failed-open.mutation.webhook.admission.k8s.io/round_0_index_0":"iam-for-pods.amazonaws.com","mutation.webhook.admission.k8s.io/round_0_index_0":"{\"configuration\":\"pod-identity-webhook\",\"webhook\":\"iam-for-pods.amazonaws.com\",\"mutated\":false}"}}"""


def event(line: str) -> dict[str, Any]:
    return dict(json.loads(line))


# --- one event to records -------------------------------------------------------------------


def test_a_patched_create_gives_one_record_carrying_the_real_jsonpatch() -> None:
    (rec,) = admission_records(event(MYPOD))
    assert (rec.configuration, rec.webhook) == (
        "pod-identity-webhook",
        "iam-for-pods.amazonaws.com",
    )
    assert (rec.round, rec.index, rec.outcome, rec.source) == (0, 0, "patched", AUDIT_SOURCE)
    assert rec.patch is not None
    assert [(op["op"], op["path"]) for op in rec.patch] == [
        ("add", "/spec/volumes/0"),
        ("add", "/spec/containers"),
    ]
    assert rec.error == ""


def test_the_patch_applies_to_the_rebuilt_webhook_input_and_gives_the_stored_pod() -> None:
    (rec,) = admission_records(event(MYPOD))
    assert rec.before is not None and rec.after is not None
    # The ServiceAccount plugin's volume, named as the patch names it, and the
    # Priority and DefaultTolerationSeconds plugins' fields: all before the webhook.
    assert [v["name"] for v in rec.before["spec"]["volumes"]] == ["kube-api-access-l98cx"]
    assert rec.before["spec"]["priority"] == 0
    assert len(rec.before["spec"]["tolerations"]) == 2
    spec = rec.after["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["aws-iam-token", "kube-api-access-l98cx"]
    # The projected token volume is defaulted again after the patch, as the server does.
    assert spec["volumes"][0]["projected"]["defaultMode"] == 420
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["AWS_ROLE_ARN"] == ROLE_ARN
    assert env["AWS_WEB_IDENTITY_TOKEN_FILE"] == C.TOKEN_MOUNT_PATH + "/token"


def test_the_request_is_what_the_server_sent_and_says_what_the_log_does_not_hold() -> None:
    (rec,) = admission_records(event(MYPOD))
    req = rec.request["request"]
    assert rec.request["apiVersion"] == "admission.k8s.io/v1"
    assert (req["operation"], req["namespace"], req["name"]) == ("CREATE", "default", "mypod")
    assert req["userInfo"]["username"] == "kubernetes-admin"
    assert req["userInfo"]["groups"] == ["system:masters", "system:authenticated"]
    assert req["options"]["fieldManager"] == "kubectl-client-side-apply"
    assert req["dryRun"] is False
    assert rec.before is not None
    assert req["object"]["spec"] == rec.before["spec"]
    assert req["object"]["metadata"]["creationTimestamp"] is None
    assert req["uid"] == ""
    assert rec.response is None
    for missing in ("request.uid", "response", "duration_ms", "url", "failure_policy"):
        assert missing in rec.unknown


def test_a_pod_the_object_selector_skips_has_no_record() -> None:
    assert admission_records(event(SKIPPOD)) == []


def test_a_call_that_did_not_patch_is_allowed_and_leaves_the_pod_as_it_was() -> None:
    (rec,) = admission_records(event(PLAINPOD))
    assert rec.outcome == "allowed"
    assert rec.patch is None
    assert rec.after == rec.before
    assert rec.before is not None
    assert rec.before["spec"]["serviceAccountName"] == "default"
    # No patch names the ServiceAccount plugin's volume: its suffix is not guessed.
    assert [v["name"] for v in rec.before["spec"]["volumes"]] == ["kube-api-access-?????"]
    assert "kube-api-access suffix" in rec.unknown


def test_a_call_that_failed_under_fail_is_failed_with_the_servers_error() -> None:
    first, second = admission_records(event(FAILPOD))
    assert first.outcome == "patched"
    assert (second.webhook, second.index, second.outcome) == ("broken.example.com", 1, "failed")
    assert second.failure_policy == "Fail"
    assert second.error.startswith(
        'failed calling webhook "broken.example.com": failed to call webhook: '
        'Post "https://127.0.0.1:1/mutate?timeout=10s": dial tcp'
    )
    # The second webhook was sent the pod the first one patched.
    assert second.before == first.after


def test_failed_open_is_ignored_and_keeps_the_index_among_all_webhooks() -> None:
    first, second = admission_records(event(IGNPOD))
    assert first.outcome == "patched"
    # index 2: the server counts every webhook of every configuration, called or not.
    assert (second.webhook, second.index, second.outcome) == (
        "broken-ignore.example.com",
        2,
        "ignored",
    )
    assert second.failure_policy == "Ignore"
    assert "error" in second.unknown  # the reason is only in the server's own log


def test_the_pod_identity_webhook_down_fails_open() -> None:
    (rec,) = admission_records(event(DOWNPOD))
    assert (rec.webhook, rec.outcome, rec.failure_policy) == (
        "iam-for-pods.amazonaws.com",
        "ignored",
        "Ignore",
    )
    assert rec.patch is None and rec.after == rec.before


def test_below_request_level_a_patched_call_is_patched_without_its_patch() -> None:
    e = event(MYPOD)
    e["level"] = "Metadata"
    del e["requestObject"]
    e["annotations"] = {
        k: v for k, v in e["annotations"].items() if not k.startswith("patch.webhook")
    }
    (rec,) = admission_records(e)
    assert rec.outcome == "patched"
    assert rec.patch is None and rec.after is None
    assert "patch" in rec.unknown and "after" in rec.unknown


def test_configurations_fill_the_url_and_the_failure_policy() -> None:
    config = {
        "metadata": {"name": "pod-identity-webhook"},
        "webhooks": [
            {
                "name": "iam-for-pods.amazonaws.com",
                "clientConfig": {"url": "https://127.0.0.1:9443/mutate"},
                "failurePolicy": "Ignore",
            }
        ],
    }
    (rec,) = admission_records(event(MYPOD), configurations=[config])
    assert (rec.url, rec.failure_policy) == ("https://127.0.0.1:9443/mutate", "Ignore")
    assert "url" not in rec.unknown and "failure_policy" not in rec.unknown


def test_webhook_calls_read_the_three_annotations() -> None:
    calls = webhook_calls(event(IGNPOD)["annotations"])
    assert [(c.index, c.webhook, c.mutated, c.failed_open) for c in calls] == [
        (0, "iam-for-pods.amazonaws.com", True, False),
        (2, "broken-ignore.example.com", False, True),
    ]
    assert calls[0].patch_type == "JSONPatch"


def test_the_stand_in_webhook_makes_the_same_patch_as_upstream_for_the_same_pod() -> None:
    (rec,) = admission_records(event(MYPOD))
    ours = mutate_pod(
        rec.request["request"]["object"],
        namespace="default",
        sa_annotations={C.ROLE_ARN_ANNOTATION: ROLE_ARN},
        settings=K8S_WEBHOOK_SETTINGS,
    )
    assert ours.patch == rec.patch


# --- the file -----------------------------------------------------------------------------------


def test_find_pod_create_takes_the_finished_create_of_that_pod_only() -> None:
    events = parse_events([SKIPPOD, "", "not json", MYPOD])
    assert find_pod_create(events, namespace="default", name="mypod") == event(MYPOD)
    assert find_pod_create(events, namespace="kube-system", name="mypod") is None
    started = {**event(MYPOD), "stage": "ResponseStarted"}
    assert find_pod_create([started], namespace="default", name="mypod") is None


def test_since_leaves_out_what_was_logged_before_the_mark(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    assert log.mark() == 0  # no file yet
    log.path.write_text(DOWNPOD + "\n")
    since = log.mark()
    assert log.admission_records(namespace="default", name="downpod")[0].outcome == "ignored"
    with pytest.raises(NoAuditEvent, match="default/downpod"):
        log.admission_records(namespace="default", name="downpod", since=since, timeout=0.2)


def test_a_line_still_being_written_is_not_read(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.path.write_text(MYPOD)  # no newline yet
    assert log.events() == []
    with log.path.open("a") as f:
        f.write("\n")
    assert len(log.events()) == 1


def test_the_reader_waits_for_the_server_to_write_the_event(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.log")
    log.path.write_text(SKIPPOD + "\n")
    since = log.mark()

    def write_later() -> None:
        time.sleep(0.3)
        with log.path.open("a") as f:
            f.write(MYPOD + "\n")

    writer = threading.Thread(target=write_later)
    writer.start()
    try:
        (rec,) = log.admission_records(namespace="default", name="mypod", since=since, timeout=5)
    finally:
        writer.join()
    assert rec.outcome == "patched"


# --- live, on the real API server and webhook (the k8s backend) -----------------------------

live = pytest.mark.skipif(
    bool(binaries.missing()),
    reason=f"{', '.join(binaries.missing())} not built: run `make k8s-bin` (needs Go)",
)


def _pod(name: str, sa: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if labels:
        meta["labels"] = labels
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "serviceAccountName": sa,
            "containers": [{"name": name, "image": "amazon/aws-cli", "command": ["sleep", "3600"]}],
        },
    }


def _without_kube_api_access(spec: dict[str, Any]) -> str:
    """The spec's JSON with the ServiceAccount plugin's random volume name masked."""
    return re.sub(
        r"kube-api-access-[^\"]{5}", "kube-api-access-*", json.dumps(spec, sort_keys=True)
    )


@pytest.fixture(scope="module")
def k8s_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from irsa_lab.backends.k8s import K8sLab

    with K8sLab(state_dir=tmp_path_factory.mktemp("audit-k8s")) as lab:
        yield lab


def _create(lab: Any, pod: dict[str, Any]) -> tuple[dict[str, Any], AuditLog, int]:
    log = AuditLog(lab.audit_log)
    since = log.mark()
    stored = lab.rest.create("/api/v1/namespaces/default/pods", pod)
    return stored, log, since


def _records(lab: Any, log: AuditLog, name: str, since: int) -> list[Any]:
    configs = lab.rest.get("/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations")[
        "items"
    ]
    return log.admission_records(
        namespace="default", name=name, since=since, configurations=configs
    )


@live
def test_live_the_real_webhooks_patch_is_read_and_gives_the_stored_pod(k8s_lab: Any) -> None:
    stored, log, since = _create(k8s_lab, _pod("audit-mypod", C.SERVICE_ACCOUNT))
    (rec,) = _records(k8s_lab, log, "audit-mypod", since)
    assert (rec.webhook, rec.outcome, rec.failure_policy) == (
        "iam-for-pods.amazonaws.com",
        "patched",
        "Ignore",
    )
    assert rec.url.startswith("https://127.0.0.1:")
    assert rec.after is not None
    assert rec.after["spec"] == stored["spec"]  # the suffix is the one the patch names


@live
def test_live_the_stand_in_webhook_makes_the_same_patch_as_the_real_one(k8s_lab: Any) -> None:
    _, log, since = _create(k8s_lab, _pod("audit-compare", C.SERVICE_ACCOUNT))
    (rec,) = _records(k8s_lab, log, "audit-compare", since)
    sa = k8s_lab.rest.get(f"/api/v1/namespaces/default/serviceaccounts/{C.SERVICE_ACCOUNT}")
    ours = mutate_pod(
        copy.deepcopy(rec.request["request"]["object"]),
        namespace="default",
        sa_annotations=sa["metadata"].get("annotations") or {},
        settings=K8S_WEBHOOK_SETTINGS,
    )
    assert ours.mutated
    assert ours.patch == rec.patch


@live
def test_live_a_pod_with_the_skip_label_is_not_called(k8s_lab: Any) -> None:
    pod = _pod("audit-skip", C.SERVICE_ACCOUNT, {C.SKIP_WEBHOOK_LABEL: "true"})
    stored, log, since = _create(k8s_lab, pod)
    assert _records(k8s_lab, log, "audit-skip", since) == []
    assert "volumes" not in stored["spec"] or all(
        v["name"] != "aws-iam-token" for v in stored["spec"]["volumes"]
    )


@live
def test_live_a_pod_without_a_role_is_called_and_not_patched(k8s_lab: Any) -> None:
    _, log, since = _create(k8s_lab, _pod("audit-plain", "default"))
    (rec,) = _records(k8s_lab, log, "audit-plain", since)
    assert (rec.outcome, rec.patch) == ("allowed", None)


@live
def test_live_a_webhook_failing_under_fail_fails_the_create(k8s_lab: Any) -> None:
    from irsa_lab.kube.rest import KubeApiError

    upstream = k8s_lab.rest.get(
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/pod-identity-webhook"
    )["webhooks"][0]
    path = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
    broken = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-audit-broken"},
        "webhooks": [
            {
                **{k: upstream[k] for k in ("rules", "sideEffects", "admissionReviewVersions")},
                "name": "broken.example.com",
                "clientConfig": {"url": "https://127.0.0.1:1/mutate"},
                "failurePolicy": "Fail",
                "objectSelector": {"matchLabels": {"audit-test": "broken"}},
            }
        ],
    }
    k8s_lab.rest.create(path, broken)
    try:
        pod = _pod("audit-broken", C.SERVICE_ACCOUNT, {"audit-test": "broken"})
        log = AuditLog(k8s_lab.audit_log)
        since = log.mark()
        with pytest.raises(KubeApiError) as err:
            k8s_lab.rest.create("/api/v1/namespaces/default/pods", pod)
        assert err.value.status == 500
        first, second = _records(k8s_lab, log, "audit-broken", since)
    finally:
        k8s_lab.rest.delete(f"{path}/zz-audit-broken")
    assert (first.outcome, second.outcome) == ("patched", "failed")
    assert second.failure_policy == "Fail"
    assert second.error.startswith('failed calling webhook "broken.example.com"')
    assert second.error in str(err.value)


@live
def test_live_the_webhook_process_stopped_is_failed_open(tmp_path: Path) -> None:
    from irsa_lab.backends.k8s import K8sLab

    # A lab of its own: the webhook does not come back.
    with K8sLab(state_dir=tmp_path) as lab:
        webhook = next(p for p in lab.procs if p.name == "amazon-eks-pod-identity-webhook")
        webhook.popen.terminate()
        webhook.popen.wait(10)
        stored, log, since = _create(lab, _pod("audit-down", C.SERVICE_ACCOUNT))
        (rec,) = _records(lab, log, "audit-down", since)
    assert (rec.webhook, rec.outcome, rec.failure_policy) == (
        "iam-for-pods.amazonaws.com",
        "ignored",
        "Ignore",
    )
    assert rec.after is not None
    assert _without_kube_api_access(rec.after["spec"]) == _without_kube_api_access(stored["spec"])
