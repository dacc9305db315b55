"""The STS stand-in through real clients: boto3's web-identity provider, the aws CLI."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
from aws_fixtures import (  # noqa: F401 - fixtures
    ISSUER,
    SUB,
    StsLab,
    only_env,
    sts_lab,
    sts_servers,
)

from irsa_lab.constants import ACCOUNT_ID, ROLE_NAME

AWS_CLI = Path(sys.executable).with_name("aws")


def test_boto3_with_only_the_pod_settings_gets_credentials(sts_lab: StsLab, monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    only_env(monkeypatch, sts_lab.web_identity_env(sts_lab.token_file(), home))
    creds = boto3.Session().get_credentials()
    assert creds is not None and creds.method == "assume-role-with-web-identity"
    frozen = creds.get_frozen_credentials()
    assert frozen.access_key.startswith("ASIA") and len(frozen.access_key) == 20
    assert len(frozen.secret_key) == 40
    stored = sts_lab.account.credentials[frozen.access_key]
    assert stored.session_token == frozen.token
    assert re.fullmatch(
        rf"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/botocore-session-\d+", stored.arn
    )


def test_the_success_response_carries_every_irsa_field(sts_lab: StsLab):
    out = sts_lab.assume(RoleSessionName="s3access-sa")
    assert out["SubjectFromWebIdentityToken"] == SUB
    assert out["Audience"] == "sts.amazonaws.com"
    assert out["Provider"] == sts_lab.scenario.provider_arn
    user = out["AssumedRoleUser"]
    assert user["Arn"] == f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/s3access-sa"
    role_id = sts_lab.account.roles[ROLE_NAME].role_id
    assert user["AssumedRoleId"] == f"{role_id}:s3access-sa"
    assert re.fullmatch(r"AROA[A-Z0-9]{17}", role_id)
    creds = out["Credentials"]
    assert len(creds["SessionToken"]) > 700
    lifetime = creds["Expiration"].timestamp() - time.time()
    assert 3590 < lifetime <= 3600
    assert "PackedPolicySize" not in out
    assert out["ResponseMetadata"]["HTTPHeaders"]["content-type"] == "text/xml"
    assert out["ResponseMetadata"]["RequestId"]


def test_duration_seconds_sets_the_expiration_up_to_the_role_maximum(sts_lab: StsLab):
    sts_lab.account.roles[ROLE_NAME].max_session_duration = 7200
    out = sts_lab.assume(DurationSeconds=7200)
    lifetime = out["Credentials"]["Expiration"].timestamp() - time.time()
    assert 7190 < lifetime <= 7200


def test_the_aws_cli_prints_the_assumed_role_arn(sts_lab: StsLab, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = sts_lab.web_identity_env(sts_lab.token_file(), home)
    proc = subprocess.run(
        [str(AWS_CLI), "sts", "get-caller-identity", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    ident = json.loads(proc.stdout)
    assert re.fullmatch(
        rf"arn:aws:sts::123456789012:assumed-role/{ROLE_NAME}/botocore-session-\d+",
        ident["Arn"],
    )
    role_id = sts_lab.account.roles[ROLE_NAME].role_id
    assert ident["UserId"].startswith(f"{role_id}:botocore-session-")
    assert ident["Account"] == ACCOUNT_ID


def test_get_caller_identity_names_the_administrator_for_long_term_keys(sts_lab: StsLab):
    admin = sts_lab.scenario.admin
    sts = boto3.client(
        "sts",
        endpoint_url=sts_lab.sts_url,
        verify=str(sts_lab.ca_file),
        region_name="eu-west-1",
        aws_access_key_id=admin.access_key_id,
        aws_secret_access_key=admin.secret_access_key,
    )
    ident = sts.get_caller_identity()
    assert ident["Arn"] == admin.arn
    assert ident["UserId"] == admin.user_id
    assert ident["Account"] == ACCOUNT_ID


def _caller(sts_lab: StsLab, ak: str, secret: str, token: str | None):
    return boto3.client(
        "sts",
        endpoint_url=sts_lab.sts_url,
        verify=str(sts_lab.ca_file),
        region_name="eu-west-1",
        aws_access_key_id=ak,
        aws_secret_access_key=secret,
        aws_session_token=token,
    )


def _error(exc_info) -> tuple[str, int, str]:
    r = exc_info.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def test_get_caller_identity_with_a_wrong_secret_is_signature_does_not_match(sts_lab: StsLab):
    c = sts_lab.assume()["Credentials"]
    sts = _caller(sts_lab, c["AccessKeyId"], "x" * 40, c["SessionToken"])
    with pytest.raises(sts.exceptions.ClientError) as exc:
        sts.get_caller_identity()
    code, status, message = _error(exc)
    assert (code, status) == ("SignatureDoesNotMatch", 403)
    assert message.startswith("The request signature we calculated does not match")


def test_get_caller_identity_with_an_unknown_key_is_invalid_client_token_id(sts_lab: StsLab):
    sts = _caller(sts_lab, "ASIAUNKNOWNUNKNOWN00", "x" * 40, "token")
    with pytest.raises(sts.exceptions.ClientError) as exc:
        sts.get_caller_identity()
    assert _error(exc) == (
        "InvalidClientTokenId",
        403,
        "The security token included in the request is invalid.",
    )


def test_get_caller_identity_with_an_expired_session_is_expired_token(sts_lab: StsLab):
    c = sts_lab.assume()["Credentials"]
    sts_lab.account.credentials[c["AccessKeyId"]].expiration = 1.0
    sts = _caller(sts_lab, c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    with pytest.raises(sts.exceptions.ClientError) as exc:
        sts.get_caller_identity()
    assert _error(exc) == (
        "ExpiredToken",
        403,
        "The security token included in the request is expired",
    )


def test_an_unknown_action_is_invalid_action(sts_lab: StsLab):
    admin = sts_lab.scenario.admin
    sts = _caller(sts_lab, admin.access_key_id, admin.secret_access_key, None)
    with pytest.raises(sts.exceptions.ClientError) as exc:
        sts.get_session_token()
    code, status, message = _error(exc)
    assert (code, status) == ("InvalidAction", 400)
    assert message == "Could not find operation GetSessionToken for version 2011-06-15"


def test_issued_credentials_are_traced_step_by_step_without_secrets(sts_lab: StsLab):
    out = sts_lab.assume()
    calls = [(e.source, e.target, e.call, e.outcome) for e in sts_lab.trace.events()]
    assert calls[0] == ("sdk", "sts", "AssumeRoleWithWebIdentity", "ok")
    assert ("sts", "oidc", "GET openid-configuration", "ok") in calls
    assert ("sts", "oidc", "GET jwks", "ok") in calls
    assert ("sts", "sts", "verify signature", "ok") in calls
    assert ("sts", "iam", "evaluate trust policy", "ok") in calls
    assert calls[-1] == ("sts", "sdk", "AssumeRoleWithWebIdentity reply", "ok")
    dump = repr(sts_lab.trace.events())
    assert out["Credentials"]["SecretAccessKey"] not in dump
    assert out["Credentials"]["SessionToken"] not in dump


def test_keys_are_cached_and_refetched_once_for_an_unknown_kid(sts_lab: StsLab):
    sts_lab.assume()
    sts_lab.assume()
    assert sts_lab.issuer.hits[f"/id/{ISSUER.rsplit('/', 1)[1]}/keys"] == 1
    rotated = sts_lab.other_key
    sts_lab.issuer.published = [sts_lab.issuer.key, rotated]
    sts_lab.assume(sts_lab.token(key=rotated))
    assert sts_lab.issuer.hits[f"/id/{ISSUER.rsplit('/', 1)[1]}/keys"] == 2
