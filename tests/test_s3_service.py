"""The S3 endpoint's catch-all: a bug answers S3's ``InternalError`` and the server goes on."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from botocore.exceptions import ClientError
from iam_s3_fixtures import IamS3Lab, iam_s3_lab_fixture, raw_request  # noqa: F401 - fixtures

from irsa_lab.aws.errors import S3_INTERNAL_ERROR_MESSAGE
from irsa_lab.aws.s3 import service as s3_service
from irsa_lab.constants import BUCKET


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise KeyError("a bug in an operation")


def test_a_bug_in_an_s3_operation_reaches_boto3_as_internal_error(
    iam_s3_lab: IamS3Lab, monkeypatch: pytest.MonkeyPatch
):
    s3 = iam_s3_lab.client("s3")  # botocore retries a 500 once: one call, two attempts
    monkeypatch.setattr(s3_service, "list_buckets_xml", _boom)
    with pytest.raises(ClientError) as exc:
        s3.list_buckets()
    r = exc.value.response
    assert (r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"]) == ("InternalError", 500)
    assert r["Error"]["Message"] == S3_INTERNAL_ERROR_MESSAGE
    failures = [
        e for e in iam_s3_lab.trace.events() if e.target == "s3" and e.outcome == "InternalError"
    ]
    assert len(failures) == 2
    event = failures[-1]
    assert (event.source, event.call, event.detail["caller"]) == (
        "learner",
        "ListBuckets",
        iam_s3_lab.admin.arn,
    )
    assert "KeyError" in event.detail["explanation"]
    # The server goes on: another operation now, the same one once the bug is gone.
    assert s3.list_objects_v2(Bucket=BUCKET)["Name"] == BUCKET
    monkeypatch.undo()
    assert BUCKET in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_s3s_internal_error_is_the_s3_error_document_on_the_wire(
    iam_s3_lab: IamS3Lab, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(s3_service, "list_objects_xml", _boom)
    status, headers, payload = raw_request(iam_s3_lab, "s3", "GET", f"/{BUCKET}?list-type=2")
    assert status == 500
    root = ET.fromstring(payload)  # noqa: S314 - the lab's own reply
    assert root.tag == "Error"
    assert root.findtext("Code") == "InternalError"
    assert root.findtext("Message") == S3_INTERNAL_ERROR_MESSAGE
    assert root.findtext("Resource") == f"/{BUCKET}"
    assert root.findtext("RequestId") == headers["x-amz-request-id"]
