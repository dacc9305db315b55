"""Presigned URLs: SigV4 in the query string, for S3 and for STS.

S3 honours ``X-Amz-Expires`` (``AccessDenied``, "Request has expired", once past).
STS does not: a presigned ``GetCallerIdentity`` lives for the 15 minutes any
signature lives (aws/aws-sdk-go#2167; aws-iam-authenticator refreshes its tokens
after 14 minutes for that reason, kubernetes-sigs/aws-iam-authenticator#160). That
presigned call is what ``aws eks get-token`` hands to the cluster.
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import base64
import datetime
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import botocore.auth
import pytest
from aws_fixtures import StsLab, sts_lab, sts_servers  # noqa: F401 - fixtures
from botocore.config import Config
from iam_s3_fixtures import IamS3Lab, iam_s3_lab_fixture  # noqa: F401 - fixtures
from signed_requests import get

from irsa_lab.constants import BUCKET, NODE_ROLE_NAME, REGION

AWS_CLI = Path(sys.executable).with_name("aws")
CLUSTER = "irsa-lab"


@pytest.fixture
def signed_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[float], None]]:
    """Make botocore sign as if it were ``minutes`` from now."""
    real = botocore.auth.get_current_datetime

    def shift(minutes: float) -> None:
        def shifted(remove_tzinfo: bool = True) -> datetime.datetime:
            return real(remove_tzinfo) + datetime.timedelta(minutes=minutes)

        monkeypatch.setattr(botocore.auth, "get_current_datetime", shifted)

    yield shift


def _s3(lab: IamS3Lab, **kw: Any) -> Any:
    return lab.client("s3", lab.assumed_role_credential(**kw), signature_version="s3v4")


# --- S3 ------------------------------------------------------------------------------------------
def test_a_presigned_s3_get_fetches_the_object(iam_s3_lab: IamS3Lab) -> None:
    s3 = _s3(iam_s3_lab)
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "README.txt"}, ExpiresIn=60
    )
    reply = get(url, iam_s3_lab.ca_file)
    assert reply.status == 200, reply.body
    assert reply.body == iam_s3_lab.account.buckets[BUCKET]["objects"]["README.txt"][0]


def test_a_presigned_s3_listing_lists_the_bucket(iam_s3_lab: IamS3Lab) -> None:
    s3 = _s3(iam_s3_lab)
    url = s3.generate_presigned_url("list_objects_v2", Params={"Bucket": BUCKET}, ExpiresIn=60)
    reply = get(url, iam_s3_lab.ca_file)
    assert reply.status == 200, reply.body
    assert b"<Key>README.txt</Key>" in reply.body


def test_aws_s3_presign_gives_a_url_that_works(iam_s3_lab: IamS3Lab, tmp_path: Path) -> None:
    cred = iam_s3_lab.assumed_role_credential()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": cred.access_key_id,
        "AWS_SECRET_ACCESS_KEY": cred.secret_access_key,
        "AWS_SESSION_TOKEN": cred.session_token or "",
        "AWS_ENDPOINT_URL_S3": iam_s3_lab.s3_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }
    done = subprocess.run(
        [str(AWS_CLI), "s3", "presign", f"s3://{BUCKET}/README.txt", "--expires-in", "60"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip()
    assert "AWSAccessKeyId=" in url  # botocore presigns S3 with SigV2 where the region allows
    reply = get(url, iam_s3_lab.ca_file)
    assert reply.status == 200, reply.body


def test_boto3s_default_presigned_url_signature_version_2_works(iam_s3_lab: IamS3Lab) -> None:
    s3 = iam_s3_lab.client("s3", iam_s3_lab.assumed_role_credential())
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "README.txt"}, ExpiresIn=60
    )
    assert "Signature=" in url and "X-Amz-Signature" not in url
    assert get(url, iam_s3_lab.ca_file).status == 200
    reply = get(url.replace("README.txt", "other.txt", 1), iam_s3_lab.ca_file)
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")


def test_an_expired_signature_version_2_url_is_request_has_expired(
    iam_s3_lab: IamS3Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = iam_s3_lab.client("s3", iam_s3_lab.assumed_role_credential())
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 120)  # HmacV1QueryAuth reads time.time
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "README.txt"}, ExpiresIn=60
    )
    monkeypatch.setattr(time, "time", real)
    reply = get(url, iam_s3_lab.ca_file)
    assert (reply.status, reply.code, reply.message) == (403, "AccessDenied", "Request has expired")
    expires = int(parse_qs(urlsplit(url).query)["Expires"][0])
    assert reply.error("Expires") == datetime.datetime.fromtimestamp(
        expires, tz=datetime.UTC
    ).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert reply.error("ServerTime")


def test_an_expired_presigned_s3_url_is_request_has_expired(
    iam_s3_lab: IamS3Lab, signed_at: Callable[[float], None]
) -> None:
    signed_at(-2)
    url = _s3(iam_s3_lab).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "README.txt"}, ExpiresIn=60
    )
    reply = get(url, iam_s3_lab.ca_file)
    assert (reply.status, reply.code, reply.message) == (403, "AccessDenied", "Request has expired")
    assert reply.error("X-Amz-Expires") == "60"
    amz_date = parse_qs(urlsplit(url).query)["X-Amz-Date"][0]
    signed = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ")
    assert reply.error("Expires") == (signed + datetime.timedelta(seconds=60)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    assert reply.error("ServerTime")


def test_a_presigned_s3_url_for_another_key_is_signature_does_not_match(
    iam_s3_lab: IamS3Lab,
) -> None:
    url = _s3(iam_s3_lab).generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "README.txt"}, ExpiresIn=60
    )
    reply = get(url.replace("README.txt", "other.txt", 1), iam_s3_lab.ca_file)
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")


def test_a_presigned_url_grants_no_more_than_its_signers_role(iam_s3_lab: IamS3Lab) -> None:
    s3 = _s3(iam_s3_lab, role_name=NODE_ROLE_NAME)  # the node role has no S3 permission
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "README.txt"}, ExpiresIn=60
    )
    reply = get(url, iam_s3_lab.ca_file)
    assert (reply.status, reply.code) == (403, "AccessDenied")
    assert "s3:GetObject" in (reply.message or "")


def test_a_week_is_the_longest_a_presigned_s3_url_may_ask_for(iam_s3_lab: IamS3Lab) -> None:
    client = boto3.client(
        "s3",
        region_name=REGION,
        endpoint_url=iam_s3_lab.s3_url,
        aws_access_key_id=iam_s3_lab.admin.access_key_id,
        aws_secret_access_key=iam_s3_lab.admin.secret_access_key,
        config=Config(signature_version="s3v4"),
    )
    iam_s3_lab.clients.append(client)
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "README.txt"}, ExpiresIn=604801
    )
    reply = get(url, iam_s3_lab.ca_file)
    assert (reply.status, reply.code, reply.message) == (
        400,
        "AuthorizationQueryParametersError",
        "X-Amz-Expires must be less than a week (in seconds) that is 604800",
    )


# --- STS: GetCallerIdentity, as aws eks get-token presigns it ------------------------------------
def _eks_token(sts_lab: StsLab) -> str:
    """A token as ``aws eks get-token`` and aws-iam-authenticator make it: a presigned
    GetCallerIdentity URL with the cluster's name in the signed ``x-k8s-aws-id`` header."""
    creds = sts_lab.assume()["Credentials"]
    sts = boto3.client(
        "sts",
        region_name=REGION,
        endpoint_url=sts_lab.sts_url,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )

    def add_cluster_id(request: Any, **kwargs: Any) -> None:
        request.headers["x-k8s-aws-id"] = CLUSTER  # as awscli's eks get-token does

    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_cluster_id)
    url = sts.generate_presigned_url(
        "get_caller_identity", Params={}, ExpiresIn=60, HttpMethod="GET"
    )
    sts.close()
    return "k8s-aws-v1." + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def _url_of(token: str) -> str:
    """What the cluster's authenticator does with the token: the URL it will GET."""
    encoded = token.removeprefix("k8s-aws-v1.")
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()


def test_a_presigned_get_caller_identity_names_the_pods_role(sts_lab: StsLab) -> None:
    url = _url_of(_eks_token(sts_lab))
    assert "X-Amz-Signature=" in url and "x-k8s-aws-id" in url
    reply = get(url, sts_lab.ca_file, headers={"x-k8s-aws-id": CLUSTER})
    assert reply.status == 200, reply.body
    assert ":assumed-role/" in (reply.error("Arn") or "")


def test_aws_eks_get_token_gives_a_token_the_sts_stand_in_accepts(
    sts_lab: StsLab, tmp_path: Path
) -> None:
    creds = sts_lab.assume()["Credentials"]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_ENDPOINT_URL_STS": sts_lab.sts_url,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }
    done = subprocess.run(
        [str(AWS_CLI), "eks", "get-token", "--cluster-name", CLUSTER],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    token = json.loads(done.stdout)["status"]["token"]
    reply = get(_url_of(token), sts_lab.ca_file, headers={"x-k8s-aws-id": CLUSTER})
    assert reply.status == 200, reply.body
    assert reply.error("Arn") == sts_lab.assume()["AssumedRoleUser"]["Arn"]


def test_a_presigned_get_caller_identity_without_its_signed_header_is_refused(
    sts_lab: StsLab,
) -> None:
    reply = get(_url_of(_eks_token(sts_lab)), sts_lab.ca_file)
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")


def test_sts_ignores_x_amz_expires_and_honours_a_presigned_url_for_15_minutes(
    sts_lab: StsLab, signed_at: Callable[[float], None]
) -> None:
    signed_at(-5)  # signed 5 minutes ago with X-Amz-Expires=60: still good at STS
    reply = get(_url_of(_eks_token(sts_lab)), sts_lab.ca_file, headers={"x-k8s-aws-id": CLUSTER})
    assert reply.status == 200, reply.body


def test_a_presigned_get_caller_identity_older_than_15_minutes_is_signature_expired(
    sts_lab: StsLab, signed_at: Callable[[float], None]
) -> None:
    signed_at(-20)
    reply = get(_url_of(_eks_token(sts_lab)), sts_lab.ca_file, headers={"x-k8s-aws-id": CLUSTER})
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")
    assert (reply.message or "").startswith("Signature expired: ")
    assert (reply.message or "").endswith(" - 15 min.)")
