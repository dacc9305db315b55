"""A signature's credential scope names a region; each stand-in accepts only AWS's.

STS's refusal ends in ". " with a trailing space, as its raw XML shows
(namecheap/node-vault-client#25).

S3 and STS are regional (the lab's region, ``eu-west-1``); IAM is global and accepts
``us-east-1``, plus the lab's region because botocore signs a redirected IAM client
for its configured region.
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import boto3
import pytest
from aws_fixtures import StsLab, sts_lab, sts_servers  # noqa: F401 - fixtures
from botocore.config import Config
from botocore.exceptions import ClientError
from iam_s3_fixtures import IamS3Lab, iam_s3_lab_fixture  # noqa: F401 - fixtures
from signed_requests import get, send, signed

from irsa_lab.constants import BUCKET, REGION


def _s3_list(lab: IamS3Lab, region: str) -> tuple[int, str | None, str | None, str | None]:
    req = signed(
        lab.admin,
        service="s3",
        region=region,
        method="GET",
        url=f"{lab.s3_url}/{BUCKET}?list-type=2",
        s3=True,
    )
    reply = send(req, lab.ca_file)
    return reply.status, reply.code, reply.message, reply.error("Region")


@pytest.mark.parametrize("region", ["us-west-2", "mars-1"])
def test_s3_signed_for_another_region_is_authorization_header_malformed(
    iam_s3_lab: IamS3Lab, region: str
) -> None:
    assert _s3_list(iam_s3_lab, region) == (
        400,
        "AuthorizationHeaderMalformed",
        f"The authorization header is malformed; the region '{region}' is wrong; "
        f"expecting '{REGION}'",
        REGION,
    )


def test_s3_signed_for_the_labs_region_is_served(iam_s3_lab: IamS3Lab) -> None:
    assert _s3_list(iam_s3_lab, REGION)[0] == 200


def test_an_s3_url_presigned_for_another_region_names_the_region_it_expects(
    iam_s3_lab: IamS3Lab,
) -> None:
    other = boto3.client(
        "s3",
        region_name="us-west-2",
        endpoint_url=iam_s3_lab.s3_url,
        aws_access_key_id=iam_s3_lab.admin.access_key_id,
        aws_secret_access_key=iam_s3_lab.admin.secret_access_key,
        config=Config(signature_version="s3v4"),
    )
    iam_s3_lab.clients.append(other)
    url = other.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": "README.txt"}, ExpiresIn=60
    )
    reply = get(url, iam_s3_lab.ca_file)
    assert (reply.status, reply.code, reply.message, reply.error("Region")) == (
        400,
        "AuthorizationQueryParametersError",
        "Error parsing the X-Amz-Credential parameter; the region 'us-west-2' is wrong; "
        f"expecting '{REGION}'",
        REGION,
    )


def _sts_for(sts_lab: StsLab, region: str) -> object:
    creds = sts_lab.assume()["Credentials"]
    return boto3.client(
        "sts",
        endpoint_url=sts_lab.sts_url,
        verify=str(sts_lab.ca_file),
        region_name=region,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.mark.parametrize("region", ["us-west-2", "mars-1"])
def test_sts_signed_for_another_region_is_scoped_to_a_valid_region(
    sts_lab: StsLab, region: str
) -> None:
    sts = _sts_for(sts_lab, region)
    with pytest.raises(ClientError) as exc:
        sts.get_caller_identity()  # type: ignore[attr-defined]
    err = exc.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (
        "SignatureDoesNotMatch",
        403,
    )
    assert err["Error"]["Message"] == "Credential should be scoped to a valid region. "


def test_sts_signed_for_the_labs_region_answers(sts_lab: StsLab) -> None:
    sts = _sts_for(sts_lab, REGION)
    assert ":assumed-role/" in sts.get_caller_identity()["Arn"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("region", ["us-east-1", REGION])
def test_iam_accepts_us_east_1_and_the_region_a_redirected_client_signs_for(
    iam_s3_lab: IamS3Lab, region: str
) -> None:
    client = boto3.client(
        "iam",
        region_name=region,
        endpoint_url=iam_s3_lab.iam_url,
        verify=str(iam_s3_lab.ca_file),
        aws_access_key_id=iam_s3_lab.admin.access_key_id,
        aws_secret_access_key=iam_s3_lab.admin.secret_access_key,
    )
    iam_s3_lab.clients.append(client)
    assert client.list_roles()["Roles"]


@pytest.mark.parametrize("region", ["us-west-2", "mars-1"])
def test_iam_signed_for_any_other_region_is_scoped_to_a_valid_region(
    iam_s3_lab: IamS3Lab, region: str
) -> None:
    client = boto3.client(
        "iam",
        region_name=region,
        endpoint_url=iam_s3_lab.iam_url,
        verify=str(iam_s3_lab.ca_file),
        aws_access_key_id=iam_s3_lab.admin.access_key_id,
        aws_secret_access_key=iam_s3_lab.admin.secret_access_key,
        config=Config(retries={"max_attempts": 1}),
    )
    iam_s3_lab.clients.append(client)
    with pytest.raises(ClientError) as exc:
        client.list_roles()
    err = exc.value.response
    assert (err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]) == (
        "SignatureDoesNotMatch",
        403,
    )
    assert err["Error"]["Message"] == "Credential should be scoped to a valid region. "
