"""The lessons' own calls on the ``k8s`` backend: the real kube-apiserver, etcd and the
upstream pod identity webhook judge what the embedded stand-ins show.

What each notebook cell prints there is checked for errors by ``make test`` (nbval, lax);
here the facts behind the cells are checked: the admission record is the real webhook's
JSONPatch from the audit log, the webhook really goes down and comes back, the token
renewal is explained with the token's own numbers, the IMDS options and the trace are
reached through the same control as on embedded, and STS started for a real cluster's
issuer (the kind backend's AWS side) fetches its keys.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from irsa_lab import constants as C
from irsa_lab.backends import binaries
from irsa_lab.backends.k8s import K8sLab
from irsa_lab.control import StackControl, Unavailable
from irsa_lab.jose import decode_unverified
from irsa_lab.lessons import pod_mutation, sts_call, the_token, without_irsa
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, start_aws_for_issuer

pytestmark = pytest.mark.skipif(
    bool(binaries.missing()),
    reason=f"{', '.join(binaries.missing())} not built: run `make k8s-bin` (needs Go)",
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    stack = K8sLab(state_dir=tmp_path_factory.mktemp("k8s"), seed=DEFAULT_SEED).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="k8s", owned=stack)
    try:
        yield lab
    finally:
        lab.close()


def test_the_admission_record_is_the_real_webhooks_jsonpatch_from_the_audit_log(lab: Lab) -> None:
    mypod = pod_mutation.create_mypod(lab)
    rec = mypod.record
    assert rec is not None and rec.source == "audit log" and rec.outcome == "patched"
    assert rec.patch is not None
    volume = next(op for op in rec.patch if op["path"].startswith("/spec/volumes"))
    assert volume["op"] == "add" and volume["value"]["name"] == C.TOKEN_VOLUME_NAME
    # The patch is what the API server stored (then defaulted: defaultMode 420).
    stored = next(v for v in mypod.stored["spec"]["volumes"] if v["name"] == C.TOKEN_VOLUME_NAME)
    assert stored["projected"]["sources"] == volume["value"]["projected"]["sources"]
    text = pod_mutation.admission_response_text(rec)
    assert "patch.webhook.admission.k8s.io/round_0_index_0" in text and "aws-iam-token" in text
    assert pod_mutation.admission_request_text(rec).startswith(f"POST {lab.endpoints['webhook']}")


def test_a_pod_with_the_skip_label_shows_the_webhook_not_called(lab: Lab) -> None:
    skipped = pod_mutation.skip_label_demo(lab)
    assert skipped.record is None and skipped.outcome == "not called"


def test_the_real_webhook_stopped_fails_open_and_runs_again_afterwards(lab: Lab) -> None:
    down = pod_mutation.webhook_down_demo(lab)
    assert down.outcome == "ignored" and down.token_volume is None
    assert lab.control.webhook_running()
    again = pod_mutation.create_mypod(lab)
    assert again.outcome == "patched"


def test_an_annotation_changed_just_before_a_pod_is_created_is_the_one_the_pod_gets(
    lab: Lab,
) -> None:
    """The upstream webhook reads ServiceAccounts from an informer cache: the lab waits
    until a server-side dry run shows the new annotation before creating the pod."""
    sa = C.SERVICE_ACCOUNT
    try:
        for audience in ("aud-a", "aud-b", "aud-c", "aud-d"):
            lab.annotate_service_account(sa, {C.AUDIENCE_ANNOTATION: audience})
            got = pod_mutation.create_mypod(lab).token_volume
            assert got is not None and got["audience"] == audience
    finally:
        lab.annotate_service_account(sa, {C.AUDIENCE_ANNOTATION: None})


def test_annotated_too_late_shows_the_running_pod_unpatched_and_the_rolled_out_one_patched(
    lab: Lab,
) -> None:
    late = pod_mutation.annotated_too_late(lab)
    assert late.before.token_volume is None and late.after_annotation.token_volume is None
    assert late.restart_output == f"deployment.apps/{pod_mutation.LATE_DEPLOYMENT} restarted"
    assert late.rolled_out.token_volume is not None
    assert late.rolled_out.env()[C.ENV_ROLE_ARN] == C.ROLE_ARN


def test_the_renewal_is_explained_with_the_tokens_own_numbers(lab: Lab) -> None:
    lab.recreate_pod(pod_mutation.mypod_manifest())
    with pytest.raises(Unavailable, match="wall clock"):
        lab.control.advance_clock(60)
    later = the_token.renew_token(lab)
    assert isinstance(later, the_token.RenewalLater)
    _, claims = decode_unverified(lab.read_token())
    assert later.issued_at == claims["iat"] and later.expires_at == claims["exp"]
    assert later.renew_at == pytest.approx(claims["iat"] + 0.8 * (claims["exp"] - claims["iat"]))
    assert "renew_token(lab, live=True)" in later.text()


def test_the_node_metadata_options_are_set_and_enforced(lab: Lab) -> None:
    lab.recreate_pod(without_irsa.POD_WITHOUT_ROLE)
    name = without_irsa.POD_WITHOUT_ROLE["metadata"]["name"]
    assert without_irsa.who_am_i(lab, name).role == C.NODE_ROLE_NAME
    with without_irsa.imds_settings(lab, http_tokens="required", hop_limit=1):
        assert without_irsa.who_am_i(lab, name).role is None
    assert lab.control.metadata_options() == {
        "HttpTokens": "optional",
        "HttpPutResponseHopLimit": 2,
    }


def test_the_recorded_run_shows_sts_fetching_the_real_api_servers_keys(lab: Lab) -> None:
    lab.recreate_pod(pod_mutation.mypod_manifest())
    run = sts_call.recorded_run(lab, ["aws", "sts", "get-caller-identity"])
    assert run.returncode == 0, run.stderr
    assert run.identity["Arn"].startswith(
        f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/{C.ROLE_NAME}/"
    )
    calls = [(e.target, e.call) for e in run.events]
    assert any("jwks" in call.lower() for _, call in calls), calls


def test_sts_started_for_a_real_clusters_issuer_fetches_its_keys(lab: Lab, tmp_path: Path) -> None:
    """Issue 15, defect 1: the kind backend's AWS side (``start_aws_for_issuer``) is
    given the issuer URL with its ``/id/...`` path; STS must find the discovery document
    on the real API server under it, or every AssumeRoleWithWebIdentity fails with
    IDPCommunicationError."""
    stack: Any = lab.owned
    handle = start_aws_for_issuer(
        state_dir=tmp_path,
        issuer=lab.endpoints["issuer"],
        discovery_url=lab.endpoints["apiserver"] + "/.well-known/openid-configuration",
        ca_pem_for_discovery=stack.ca.cert_pem,
    )
    try:
        token = lab.core.create_namespaced_service_account_token(
            C.SERVICE_ACCOUNT,
            C.NAMESPACE,
            {"spec": {"audiences": [C.DEFAULT_AUDIENCE], "expirationSeconds": 3600}},
        ).status.token
        ep = handle.endpoints
        sts = boto3.session.Session(region_name=ep["region"]).client(
            "sts", endpoint_url=ep["sts"], verify=ep["ca_bundle"]
        )
        got = sts.assume_role_with_web_identity(
            RoleArn=C.ROLE_ARN, RoleSessionName="defect-1", WebIdentityToken=token
        )
        assert got["AssumedRoleUser"]["Arn"].endswith(f":assumed-role/{C.ROLE_NAME}/defect-1")
        assert got["Provider"].startswith("arn:aws:iam::")
    finally:
        handle.stop()


def test_the_control_of_a_k8s_lab_is_its_own_stack(lab: Lab) -> None:
    control = lab.control
    assert isinstance(control, StackControl) and control.backend == "k8s"
