"""S3's error documents element by element, as boto3 and a raw signed request see them."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET

import botocore.auth
import pytest
from botocore.exceptions import ClientError
from iam_s3_fixtures import IamS3Lab, iam_s3_lab_fixture, raw_request  # noqa: F401 - fixtures

from irsa_lab.constants import BUCKET


def error_xml(payload: bytes) -> dict[str, str]:
    root = ET.fromstring(payload)  # noqa: S314 - the lab's own reply
    assert root.tag == "Error"
    return {child.tag: child.text or "" for child in root}


def test_no_such_key_names_the_key_in_a_key_element(iam_s3_lab: IamS3Lab):
    status, headers, payload = raw_request(iam_s3_lab, "s3", "GET", f"/{BUCKET}/logs/nope.txt")
    assert status == 404
    err = error_xml(payload)
    assert list(err) == ["Code", "Message", "Key", "RequestId", "HostId"]
    assert (err["Code"], err["Message"], err["Key"]) == (
        "NoSuchKey",
        "The specified key does not exist.",
        "logs/nope.txt",
    )
    assert err["RequestId"] == headers["x-amz-request-id"]


def test_boto3_sees_the_key_of_a_missing_object(iam_s3_lab: IamS3Lab):
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("s3").get_object(Bucket=BUCKET, Key="nope.txt")
    assert exc.value.response["Error"]["Key"] == "nope.txt"
    assert "Resource" not in exc.value.response["Error"]


def test_no_such_bucket_names_the_bucket_in_a_bucket_name_element(iam_s3_lab: IamS3Lab):
    status, _, payload = raw_request(iam_s3_lab, "s3", "GET", "/no-such-bucket?list-type=2")
    assert status == 404
    err = error_xml(payload)
    assert list(err) == ["Code", "Message", "BucketName", "RequestId", "HostId"]
    assert (err["Code"], err["Message"], err["BucketName"]) == (
        "NoSuchBucket",
        "The specified bucket does not exist",
        "no-such-bucket",
    )


@pytest.mark.parametrize(
    "name",
    ["ab", "Upper-Case", "under_score", "192.168.5.4", "a..b", "-dash-first", "xn--punycode"],
)
def test_a_name_s3_could_never_have_given_a_bucket_is_invalid_bucket_name(
    iam_s3_lab: IamS3Lab, name: str
):
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("s3").list_objects_v2(Bucket=name)
    r = exc.value.response
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert r["Error"]["Code"] == "InvalidBucketName"
    assert r["Error"]["Message"] == "The specified bucket is not valid."
    assert r["Error"]["BucketName"] == name


def test_an_invalid_bucket_name_is_refused_for_objects_too(iam_s3_lab: IamS3Lab):
    status, _, payload = raw_request(iam_s3_lab, "s3", "GET", "/ab/some-key")
    assert status == 400
    err = error_xml(payload)
    assert (err["Code"], err["BucketName"]) == ("InvalidBucketName", "ab")


def test_a_request_signed_twenty_minutes_ago_is_request_time_too_skewed_with_both_times(
    iam_s3_lab: IamS3Lab, monkeypatch: pytest.MonkeyPatch
):
    signed_at = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0) - dt.timedelta(
        minutes=20
    )
    s3 = iam_s3_lab.client("s3")
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: signed_at)
    with pytest.raises(ClientError) as exc:
        s3.list_objects_v2(Bucket=BUCKET)
    r = exc.value.response
    assert (r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]) == (
        "RequestTimeTooSkewed",
        403,
    )
    assert r["Error"]["Message"] == (
        "The difference between the request time and the current time is too large."
    )
    assert r["Error"]["RequestTime"] == signed_at.strftime("%Y%m%dT%H%M%SZ")
    server = dt.datetime.strptime(r["Error"]["ServerTime"], "%Y-%m-%dT%H:%M:%SZ")
    assert dt.timedelta(minutes=19) < server - signed_at < dt.timedelta(minutes=21)
    assert r["Error"]["MaxAllowedSkewMilliseconds"] == "900000"


def test_an_api_the_stand_in_lacks_is_not_implemented_without_lab_words_on_the_wire(
    iam_s3_lab: IamS3Lab,
):
    status, _, payload = raw_request(iam_s3_lab, "s3", "GET", f"/{BUCKET}?acl")
    assert status == 501
    err = error_xml(payload)
    assert err["Code"] == "NotImplemented"
    assert err["Message"] == "A header you provided implies functionality that is not implemented."
