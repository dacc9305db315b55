"""The query-protocol service STS and IAM share: dispatch, error XML, trace, the catch-all.

A bug in an operation (here an operation patched to raise ``KeyError``) must reach
boto3 as AWS's own ``InternalFailure`` (HTTP 500, the ``ErrorResponse`` shape), be
recorded in the trace, and leave the server answering the next request.
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import http.client
import xml.etree.ElementTree as ET
from contextlib import closing
from typing import Any

import boto3
import pytest
from aws_fixtures import StsLab, sts_lab, sts_servers  # noqa: F401 - fixtures
from botocore.config import Config
from botocore.exceptions import ClientError
from iam_s3_fixtures import IamS3Lab, iam_s3_lab_fixture, raw_request  # noqa: F401 - fixtures

from irsa_lab.aws import iam as iam_api
from irsa_lab.aws.errors import INTERNAL_FAILURE_MESSAGE
from irsa_lab.aws.query import element
from irsa_lab.aws.query_service import QueryCall, QueryService
from irsa_lab.aws.sts import service as sts_service
from irsa_lab.constants import IAM_NS, ROLE_NAME
from irsa_lab.httpd import ServerLoop
from irsa_lab.ids import Ids
from irsa_lab.trace import Trace

# botocore retries a 500; one attempt keeps one trace record per call.
NO_RETRIES = {"retries": {"total_max_attempts": 1, "mode": "standard"}}


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    r = exc.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def _boom(*args: Any, **kwargs: Any) -> Any:
    raise KeyError("a bug in an operation")


def _failures(trace: Trace, target: str) -> list[Any]:
    return [e for e in trace.events() if e.target == target and e.outcome == "InternalFailure"]


# --- in-process: the service on its own --------------------------------------------------
def _serve(service: QueryService, body: bytes) -> tuple[int, bytes]:
    """One POST to the service's app, served on loopback by the lab's own server."""
    loop = ServerLoop("query-service-test").start()
    try:
        port = loop.serve("toy", service.app()).port
        with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
            conn.request("POST", "/", body, {"Content-Type": "application/x-www-form-urlencoded"})
            resp = conn.getresponse()
            return resp.status, resp.read()
    finally:
        loop.stop()


def _toy(trace: Trace, *, record_calls: bool = False) -> QueryService:
    async def echo(call: QueryCall) -> str:
        return element("Said", call.params.get("Word", ""))

    async def broken(call: QueryCall) -> str:
        return {"present": "x"}["absent"]

    return QueryService(
        "toy",
        IAM_NS,
        "2010-05-08",
        {"Echo": echo, "Broken": broken},
        Ids(seed=3),
        trace,
        record_calls=record_calls,
    )


def test_a_bug_in_an_operation_is_internal_failure_in_the_error_response_shape():
    trace = Trace()
    status, body = _serve(_toy(trace), b"Action=Broken&Version=2010-05-08")
    assert status == 500
    root = ET.fromstring(body)  # noqa: S314 - the service's own reply
    assert root.tag == f"{{{IAM_NS}}}ErrorResponse"
    assert root.findtext("{*}Error/{*}Type") == "Receiver"
    assert root.findtext("{*}Error/{*}Code") == "InternalFailure"
    assert root.findtext("{*}Error/{*}Message") == INTERNAL_FAILURE_MESSAGE
    assert root.findtext("{*}RequestId")
    [event] = _failures(trace, "toy")
    assert event.call == "Broken"
    assert "KeyError" in event.detail["explanation"]
    assert event.detail["message"] == INTERNAL_FAILURE_MESSAGE


def test_a_service_that_does_not_record_calls_still_records_a_bug_and_nothing_else():
    trace = Trace()
    service = _toy(trace)
    assert _serve(service, b"Action=Echo&Word=hi")[0] == 200
    assert _serve(service, b"Action=Nope")[0] == 400
    assert trace.events() == []
    assert _serve(service, b"Action=Broken")[0] == 500
    assert [e.call for e in trace.events()] == ["Broken"]


def test_a_recording_service_records_every_call_with_its_outcome():
    trace = Trace()
    service = _toy(trace, record_calls=True)
    for body in (b"Action=Echo&Word=hi", b"Action=Nope", b"Version=x", b"Action=Broken"):
        _serve(service, body)
    got = [(e.call, e.outcome) for e in trace.events()]
    assert got == [
        ("Echo", "ok"),
        ("Nope", "InvalidAction"),
        ("?", "MissingAction"),
        ("Broken", "InternalFailure"),
    ]


def test_the_success_document_wraps_the_operations_result():
    status, body = _serve(_toy(Trace()), b"Action=Echo&Word=a%26b")
    assert status == 200
    root = ET.fromstring(body)  # noqa: S314 - the service's own reply
    assert root.tag == f"{{{IAM_NS}}}EchoResponse"
    assert root.findtext("{*}EchoResult/{*}Said") == "a&b"


def test_another_version_is_invalid_action_naming_that_version():
    status, body = _serve(_toy(Trace()), b"Action=Echo&Version=2099-01-01")
    root = ET.fromstring(body)  # noqa: S314 - the service's own reply
    assert status == 400
    assert root.findtext("{*}Error/{*}Code") == "InvalidAction"
    assert root.findtext("{*}Error/{*}Message") == (
        "Could not find operation Echo for version 2099-01-01"
    )


# --- STS, through boto3 --------------------------------------------------------------------
def test_a_bug_in_assume_role_with_web_identity_reaches_boto3_as_internal_failure(
    sts_lab: StsLab, monkeypatch: pytest.MonkeyPatch
):
    sts = sts_lab.sts(**NO_RETRIES)
    monkeypatch.setattr(sts_service, "_issue", _boom)
    before = len(_failures(sts_lab.trace, "sts"))
    with pytest.raises(ClientError) as exc:
        sts_lab.assume(sts=sts)
    assert _error(exc) == ("InternalFailure", 500, INTERNAL_FAILURE_MESSAGE)
    failures = _failures(sts_lab.trace, "sts")
    assert len(failures) == before + 1
    assert failures[-1].call == "AssumeRoleWithWebIdentity"
    assert "KeyError" in failures[-1].detail["explanation"]
    monkeypatch.undo()
    assert sts_lab.assume(sts=sts)["AssumedRoleUser"]["Arn"].endswith(
        "/botocore-session-1711548000"
    )


def test_a_bug_in_get_caller_identity_names_the_signed_caller_in_the_trace(
    sts_lab: StsLab, monkeypatch: pytest.MonkeyPatch
):
    admin = sts_lab.scenario.admin
    sts = boto3.client(
        "sts",
        endpoint_url=sts_lab.sts_url,
        verify=str(sts_lab.ca_file),
        region_name="eu-west-1",
        aws_access_key_id=admin.access_key_id,
        aws_secret_access_key=admin.secret_access_key,
        config=Config(**NO_RETRIES),
    )
    try:
        monkeypatch.setattr(sts_service, "get_caller_identity", _boom)
        with pytest.raises(ClientError) as exc:
            sts.get_caller_identity()
        assert _error(exc) == ("InternalFailure", 500, INTERNAL_FAILURE_MESSAGE)
        event = _failures(sts_lab.trace, "sts")[-1]
        assert (event.source, event.call, event.detail["caller"]) == (
            "learner",
            "GetCallerIdentity",
            admin.arn,
        )
        monkeypatch.undo()
        assert sts.get_caller_identity()["Arn"] == admin.arn
    finally:
        sts.close()


# --- IAM, through boto3 --------------------------------------------------------------------
def test_a_bug_in_an_iam_operation_reaches_boto3_as_internal_failure(
    iam_s3_lab: IamS3Lab, monkeypatch: pytest.MonkeyPatch
):
    iam = iam_s3_lab.client("iam")
    monkeypatch.setitem(iam_api.ACTIONS, "GetRole", _boom)
    with pytest.raises(ClientError) as exc:
        iam.get_role(RoleName=ROLE_NAME)
    assert _error(exc) == ("InternalFailure", 500, INTERNAL_FAILURE_MESSAGE)
    event = _failures(iam_s3_lab.trace, "iam")[-1]
    assert (event.source, event.call, event.detail["caller"]) == (
        "learner",
        "GetRole",
        iam_s3_lab.admin.arn,
    )
    assert "KeyError" in event.detail["explanation"]
    assert event.detail["request_id"] == exc.value.response["ResponseMetadata"]["RequestId"]
    # The server goes on: another operation now, the same one once the bug is gone.
    assert any(r["RoleName"] == ROLE_NAME for r in iam.list_roles()["Roles"])
    monkeypatch.undo()
    assert iam.get_role(RoleName=ROLE_NAME)["Role"]["RoleName"] == ROLE_NAME


def test_iams_internal_failure_is_the_query_error_response_on_the_wire(
    iam_s3_lab: IamS3Lab, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setitem(iam_api.ACTIONS, "ListRoles", _boom)
    status, headers, payload = raw_request(
        iam_s3_lab,
        "iam",
        "POST",
        "/",
        b"Action=ListRoles&Version=2010-05-08",
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
    )
    assert status == 500
    root = ET.fromstring(payload)  # noqa: S314 - the lab's own reply
    assert root.tag == f"{{{IAM_NS}}}ErrorResponse"
    assert root.findtext("{*}Error/{*}Type") == "Receiver"
    assert root.findtext("{*}Error/{*}Code") == "InternalFailure"
    assert root.findtext("{*}RequestId") == headers["x-amzn-requestid"]
