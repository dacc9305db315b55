"""Fixtures for the session tests: STS, IAM and S3 on one account, reached with real boto3.

``session_lab`` (function scope) is :func:`aws_fixtures.sts_lab` (the default scenario,
the test issuer, STS) plus the IAM and S3 stand-ins served once per test session on the
same loop and account, so credentials that STS issues are the ones IAM and S3 judge.
Everything a test does goes through boto3: the administrator's IAM client changes the
role's policies, ``AssumeRoleWithWebIdentity`` issues the session, and the session's own
S3 and IAM clients make the calls whose authorization is under test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from aws_fixtures import StsLab, StsServers
from botocore.config import Config
from botocore.exceptions import ClientError

from irsa_lab.aws import iam as iam_api
from irsa_lab.aws import s3 as s3_api
from irsa_lab.clock import SystemClock
from irsa_lab.constants import REGION, ROLE_NAME

__all__ = ["SessionLab", "denial", "iam_s3_urls", "session_lab"]


@dataclass
class SessionLab:
    """One test's STS + IAM + S3, with boto3 clients for the administrator and for sessions."""

    sts_lab: StsLab
    iam_url: str
    s3_url: str
    clients: list[Any] = field(default_factory=list)

    @property
    def account_id(self) -> str:
        return str(self.sts_lab.account.account_id)

    def client(self, service: str, creds: dict[str, str]) -> Any:
        client = boto3.session.Session(region_name=REGION).client(
            service,
            endpoint_url=self.iam_url if service == "iam" else self.s3_url,
            verify=str(self.sts_lab.ca_file),
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds.get("SessionToken"),
            config=Config(retries={"max_attempts": 1, "mode": "standard"}),
        )
        self.clients.append(client)
        return client

    def admin(self, service: str = "iam") -> Any:
        """A client signed with the administrator's long-term keys."""
        cred = self.sts_lab.scenario.admin
        return self.client(
            service,
            {"AccessKeyId": cred.access_key_id, "SecretAccessKey": cred.secret_access_key},
        )

    def session(self, service: str, **params: Any) -> Any:
        """A client signed with fresh AssumeRoleWithWebIdentity credentials (``params`` added)."""
        return self.client(service, self.sts_lab.assume(**params)["Credentials"])

    def put_role_policy(self, statements: list[dict[str, Any]], role: str = ROLE_NAME) -> None:
        """Add an inline policy to ``role`` through IAM, as the administrator."""
        document = {"Version": "2012-10-17", "Statement": statements}
        self.admin().put_role_policy(
            RoleName=role, PolicyName="under-test", PolicyDocument=json.dumps(document)
        )

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()


def denial(call: Any, *args: Any, **kwargs: Any) -> ClientError:
    """The ``AccessDenied`` a boto3 call raises (fails the test when it succeeds)."""
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    assert info.value.response["Error"]["Code"] == "AccessDenied", info.value.response
    return info.value


@pytest.fixture(scope="session")
def iam_s3_urls(sts_servers: StsServers) -> tuple[str, str]:
    """IAM and S3 served on the STS tests' loop, for the same account."""
    s = sts_servers
    wall = SystemClock()
    iam = s.loop.serve(
        "iam-sessions",
        iam_api.make_app(s.account, trace=s.trace, wall_clock=wall),
        tls=s.ca.issue().server_context(),
    )
    s3 = s.loop.serve(
        "s3-sessions",
        s3_api.make_app(s.account, trace=s.trace, wall_clock=wall),
        tls=s.ca.issue().server_context(),
    )
    return iam.url, s3.url


@pytest.fixture
def session_lab(sts_lab: StsLab, iam_s3_urls: tuple[str, str]) -> Iterator[SessionLab]:
    lab = SessionLab(sts_lab, *iam_s3_urls)
    try:
        yield lab
    finally:
        lab.close()
