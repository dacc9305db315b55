"""The IMDS stand-in: botocore's instance-role provider, IMDSv2 and the hop limit."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from typing import Any

import boto3
import pytest
from aws_fixtures import StsLab, only_env, sts_lab, sts_servers  # noqa: F401 - fixtures
from botocore.exceptions import NoCredentialsError

from irsa_lab.constants import (
    ACCOUNT_ID,
    IMDS_TOKEN_HEADER,
    IMDS_TOKEN_TTL_HEADER,
    NODE_INSTANCE_ID,
    NODE_ROLE_NAME,
    REGION,
)

NODE_ARN = f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{NODE_ROLE_NAME}/{NODE_INSTANCE_ID}"


def imds_session(sts_lab: StsLab, monkeypatch, tmp_path, endpoint: str) -> boto3.Session:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    only_env(
        monkeypatch,
        {
            "HOME": str(home),
            "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoint,
            "AWS_METADATA_SERVICE_TIMEOUT": "1",  # whole seconds only
            "AWS_METADATA_SERVICE_NUM_ATTEMPTS": "1",
            "AWS_ENDPOINT_URL_STS": sts_lab.sts_url,
            "AWS_CA_BUNDLE": str(sts_lab.ca_file),
            "AWS_DEFAULT_REGION": REGION,
        },
    )
    return boto3.Session()


def call(url: str, method: str = "GET", **headers: str) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback test server
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, ""


def test_boto3_on_the_node_gets_the_node_role_from_imds(sts_lab: StsLab, monkeypatch, tmp_path):
    session = imds_session(sts_lab, monkeypatch, tmp_path, sts_lab.imds_node_url)
    creds = session.get_credentials()
    assert creds is not None and creds.method == "iam-role"
    ident = session.client("sts").get_caller_identity()
    assert ident["Arn"] == NODE_ARN
    calls = [e.call for e in sts_lab.trace.events() if e.target == "imds"]
    assert calls[:3] == [
        "PUT /latest/api/token",
        "GET /latest/meta-data/iam/security-credentials/",
        f"GET /latest/meta-data/iam/security-credentials/{NODE_ROLE_NAME}",
    ]


def test_a_pod_gets_no_credentials_with_imdsv2_required_and_hop_limit_one(
    sts_lab: StsLab, monkeypatch, tmp_path
):
    sts_lab.imds_settings.http_tokens = "required"
    sts_lab.imds_settings.hop_limit = 1
    session = imds_session(sts_lab, monkeypatch, tmp_path, sts_lab.imds_pod_url)
    started = time.monotonic()
    with pytest.raises(NoCredentialsError):
        session.client("sts").get_caller_identity()
    assert time.monotonic() - started < 3
    outcomes = {(e.call, e.outcome) for e in sts_lab.trace.events() if e.target == "imds"}
    assert ("PUT /latest/api/token", "dropped") in outcomes
    assert not [c for c in sts_lab.account.credentials.values() if c.source == "imds"]


def test_a_pod_gets_the_node_role_when_the_hop_limit_is_two(sts_lab: StsLab, monkeypatch, tmp_path):
    sts_lab.imds_settings.http_tokens = "required"
    sts_lab.imds_settings.hop_limit = 2
    session = imds_session(sts_lab, monkeypatch, tmp_path, sts_lab.imds_pod_url)
    assert session.client("sts").get_caller_identity()["Arn"] == NODE_ARN


def test_hop_limit_one_alone_does_not_protect_when_imdsv1_is_allowed(
    sts_lab: StsLab, monkeypatch, tmp_path
):
    sts_lab.imds_settings.http_tokens = "optional"
    sts_lab.imds_settings.hop_limit = 1
    session = imds_session(sts_lab, monkeypatch, tmp_path, sts_lab.imds_pod_url)
    assert session.client("sts").get_caller_identity()["Arn"] == NODE_ARN
    v1 = [e for e in sts_lab.trace.events() if e.detail.get("imds") == "v1"]
    assert v1, "botocore fell back to IMDSv1 after the token request timed out"


def test_the_node_view_and_the_pod_view_share_one_set_of_credentials(sts_lab: StsLab):
    def fetch(base: str) -> dict[str, Any]:
        _, token = call(f"{base}/latest/api/token", "PUT", **{IMDS_TOKEN_TTL_HEADER: "60"})
        status, body = call(
            f"{base}/latest/meta-data/iam/security-credentials/{NODE_ROLE_NAME}",
            **{IMDS_TOKEN_HEADER: token},
        )
        assert status == 200
        return dict(json.loads(body))

    node, pod = fetch(sts_lab.imds_node_url), fetch(sts_lab.imds_pod_url)
    assert node["AccessKeyId"] == pod["AccessKeyId"]
    assert node["Code"] == "Success" and node["Type"] == "AWS-HMAC"
    assert set(node) == {
        "Code",
        "LastUpdated",
        "Type",
        "AccessKeyId",
        "SecretAccessKey",
        "Token",
        "Expiration",
    }


@pytest.mark.parametrize("ttl", [None, "0", "21601", "abc"])
def test_a_token_request_without_a_valid_ttl_is_a_bad_request(sts_lab: StsLab, ttl):
    headers = {} if ttl is None else {IMDS_TOKEN_TTL_HEADER: ttl}
    assert call(f"{sts_lab.imds_node_url}/latest/api/token", "PUT", **headers)[0] == 400


def test_imdsv1_is_refused_when_tokens_are_required(sts_lab: StsLab):
    url = f"{sts_lab.imds_node_url}/latest/meta-data/iam/security-credentials/"
    assert call(url) == (200, NODE_ROLE_NAME)
    sts_lab.imds_settings.http_tokens = "required"
    assert call(url)[0] == 401


def test_an_unknown_or_expired_session_token_is_unauthorized(sts_lab: StsLab):
    base = sts_lab.imds_node_url
    url = f"{base}/latest/meta-data/iam/security-credentials/"
    assert call(url, **{IMDS_TOKEN_HEADER: "made-up"})[0] == 401
    _, token = call(f"{base}/latest/api/token", "PUT", **{IMDS_TOKEN_TTL_HEADER: "60"})
    assert call(url, **{IMDS_TOKEN_HEADER: token})[0] == 200
    sts_lab.clock.advance(61)
    assert call(url, **{IMDS_TOKEN_HEADER: token})[0] == 401


def test_a_token_request_through_a_proxy_is_forbidden(sts_lab: StsLab):
    status, _ = call(
        f"{sts_lab.imds_node_url}/latest/api/token",
        "PUT",
        **{IMDS_TOKEN_TTL_HEADER: "60", "X-Forwarded-For": "10.0.0.1"},
    )
    assert status == 403


def _token(base: str) -> str:
    status, token = call(f"{base}/latest/api/token", "PUT", **{IMDS_TOKEN_TTL_HEADER: "60"})
    assert status == 200 and token
    return token


def test_a_session_token_is_the_instances_and_works_from_either_view(sts_lab: StsLab):
    # The hop limit decides whether the PUT's answer arrives, nothing more: once a
    # token exists, any caller on the instance may present it.
    sts_lab.imds_settings.http_tokens = "required"
    path = "/latest/meta-data/iam/security-credentials/"
    node, pod = sts_lab.imds_node_url, sts_lab.imds_pod_url
    from_node, from_pod = _token(node), _token(pod)
    for base in (node, pod):
        for token in (from_node, from_pod):
            assert call(f"{base}{path}", **{IMDS_TOKEN_HEADER: token}) == (200, NODE_ROLE_NAME)


def test_with_hop_limit_one_a_pod_cannot_get_a_token_but_a_nodes_token_still_works_there(
    sts_lab: StsLab,
):
    sts_lab.imds_settings.http_tokens = "required"
    sts_lab.imds_settings.hop_limit = 1
    from_node = _token(sts_lab.imds_node_url)  # the node is one hop away: its answer arrives
    url = f"{sts_lab.imds_pod_url}/latest/meta-data/iam/security-credentials/"
    assert call(url, **{IMDS_TOKEN_HEADER: from_node}) == (200, NODE_ROLE_NAME)
    assert call(url)[0] == 401  # and without one, IMDSv1 stays refused


def test_the_instance_profile_id_is_a_base32_unique_id(sts_lab: StsLab):
    status, body = call(f"{sts_lab.imds_node_url}/latest/meta-data/iam/info")
    assert status == 200
    info = json.loads(body)
    assert re.fullmatch(r"AIPA[A-Z2-7]{17}", info["InstanceProfileId"])
    assert call(f"{sts_lab.imds_pod_url}/latest/meta-data/iam/info") == (200, body)
