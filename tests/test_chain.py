"""The article's chain end to end on the embedded stack, and the failures learners meet."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from irsa_lab import constants as C
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.session import Lab
from irsa_lab.stack import EmbeddedLab

ROOT = Path(__file__).resolve().parents[1]
MYPOD = yaml.safe_load((ROOT / "examples" / "mypod.yaml").read_text())
# An unmutated pod has no region in its env; the CLI needs one to call STS at all.
FAST_IMDS = {
    "AWS_METADATA_SERVICE_TIMEOUT": "1",
    "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "1",
    "AWS_DEFAULT_REGION": "eu-west-1",
}


@pytest.fixture()
def lab(tmp_path: Path) -> Iterator[Lab]:
    stack = EmbeddedLab(state_dir=tmp_path / "state", seed=7, clock=ManualClock(LAB_EPOCH)).start()
    handle = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    try:
        yield handle
    finally:
        handle.close()


def pod(name: str, **meta: Any) -> dict[str, Any]:
    manifest = json.loads(json.dumps(MYPOD))
    manifest["metadata"]["name"] = name
    manifest["metadata"].update(meta)
    return manifest


def env_of(stored: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in stored["spec"]["containers"][0].get("env", [])}


def test_mypod_gets_exactly_the_articles_env_volumes_and_mounts(lab: Lab) -> None:
    stored = lab.create_pod(MYPOD)
    container = stored["spec"]["containers"][0]
    assert [(e["name"], e["value"]) for e in container["env"]] == [
        ("AWS_STS_REGIONAL_ENDPOINTS", "regional"),
        ("AWS_DEFAULT_REGION", "eu-west-1"),
        ("AWS_REGION", "eu-west-1"),
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/AmazonEKSPodS3ReadOnlyAccessRole"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"),
    ]
    volumes = stored["spec"]["volumes"]
    assert [v["name"] for v in volumes][0] == "aws-iam-token"
    assert volumes[1]["name"].startswith("kube-api-access-") and len(volumes[1]["name"]) == 21
    assert volumes[0]["projected"]["sources"] == [
        {
            "serviceAccountToken": {
                "audience": "sts.amazonaws.com",
                "expirationSeconds": 86400,
                "path": "token",
            }
        }
    ]
    assert container["volumeMounts"] == [
        {
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
            "name": volumes[1]["name"],
            "readOnly": True,
        },
        {
            "mountPath": "/var/run/secrets/eks.amazonaws.com/serviceaccount",
            "name": "aws-iam-token",
            "readOnly": True,
        },
    ]


def test_the_pod_assumes_its_role_and_lists_the_bucket(lab: Lab) -> None:
    lab.create_pod(MYPOD)
    who = lab.exec("mypod", ["aws", "sts", "get-caller-identity"])
    assert who.returncode == 0, who.stderr
    assert json.loads(who.stdout)["Arn"].startswith(
        "arn:aws:sts::123456789012:assumed-role/AmazonEKSPodS3ReadOnlyAccessRole/botocore-session-"
    )
    ls = lab.exec("mypod", ["aws", "s3", "ls"])
    assert ls.stdout == "2024-03-27 13:46:58 aws-codebuild-output-test\n"


def test_the_role_is_read_only_so_an_upload_is_refused(lab: Lab, tmp_path: Path) -> None:
    lab.create_pod(MYPOD)
    (tmp_path / "x.txt").write_text("hello")
    cp = lab.exec("mypod", ["aws", "s3", "cp", str(tmp_path / "x.txt"), f"s3://{C.BUCKET}/x.txt"])
    assert cp.returncode != 0
    assert "AccessDenied" in cp.stderr


def test_with_the_webhook_down_the_pod_is_created_unmutated_and_falls_back_to_imds(
    lab: Lab,
) -> None:
    assert lab.embedded is not None
    lab.embedded.stop_webhook()
    stored = lab.create_pod(pod("nowebhook"))
    assert env_of(stored) == {}
    assert [v["name"] for v in stored["spec"]["volumes"]][0].startswith("kube-api-access-")
    record = lab.embedded.apiserver.last_admission
    assert (
        record is not None and record.outcome != "allowed"
    )  # Ignore: the call failed, the pod passed
    who = lab.exec("nowebhook", ["aws", "sts", "get-caller-identity"], extra_env=FAST_IMDS)
    assert who.returncode == 0, who.stderr
    assert f":assumed-role/{C.NODE_ROLE_NAME}/" in json.loads(who.stdout)["Arn"]
    lab.embedded.start_webhook()
    assert env_of(lab.create_pod(pod("webhookback"))), "the webhook mutates again once it is back"


def test_a_service_account_annotated_after_the_pod_leaves_that_pod_unmutated_until_recreated(
    lab: Lab,
) -> None:
    lab.core.create_namespaced_service_account("default", {"metadata": {"name": "late-sa"}})
    manifest = pod("latepod")
    manifest["spec"]["serviceAccountName"] = "late-sa"
    assert env_of(lab.create_pod(manifest)) == {}
    lab.annotate_service_account("late-sa", {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN})
    assert env_of(lab.get_pod("latepod")) == {}, "admission only runs at creation"
    assert env_of(lab.recreate_pod(manifest))["AWS_ROLE_ARN"] == C.ROLE_ARN


def test_a_pod_labelled_to_skip_the_webhook_is_untouched(lab: Lab) -> None:
    stored = lab.create_pod(pod("skipped", labels={C.SKIP_WEBHOOK_LABEL: "true"}))
    assert env_of(stored) == {}
    assert not any(v["name"] == C.TOKEN_VOLUME_NAME for v in stored["spec"]["volumes"])
    # The API server never called the webhook: the objectSelector excluded the pod.
    assert all(
        r.request["request"]["name"] != "skipped" for r in lab.embedded.apiserver.admission_log
    )  # type: ignore[union-attr]


def test_the_token_file_the_sdk_reads_is_the_one_sts_accepted(lab: Lab) -> None:
    import jwt

    lab.create_pod(MYPOD)
    token = lab.read_token()
    header = jwt.get_unverified_header(token)
    keys = {k["kid"]: k for k in lab.jwks()["keys"]}
    claims = jwt.decode(
        token,
        jwt.PyJWK(keys[header["kid"]]).key,
        algorithms=["RS256"],
        audience="sts.amazonaws.com",
        options={"verify_exp": False},
    )
    assert claims["iss"] == lab.endpoints["issuer"]
    assert claims["kubernetes.io"]["pod"]["name"] == "mypod"
    assert claims["exp"] - claims["iat"] == 86400
