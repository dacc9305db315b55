"""Fixtures for the IAM and S3 stand-ins: a seeded account served over HTTPS on loopback."""

from __future__ import annotations

import gc
import http.client
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from irsa_lab.aws import iam as iam_api
from irsa_lab.aws import s3 as s3_api
from irsa_lab.aws.model import Account, Credential
from irsa_lab.aws.scenario import DefaultScenario, seed_default
from irsa_lab.clock import LAB_EPOCH, ManualClock, SystemClock
from irsa_lab.constants import REGION, ROLE_NAME
from irsa_lab.httpd import ServerLoop
from irsa_lab.ids import Ids
from irsa_lab.pki import LabCA
from irsa_lab.trace import Trace

ISSUER = "https://oidc.eks.eu-west-1.amazonaws.com/id/0123456789ABCDEF0123456789ABCDEF"
ROLE_SESSION = "botocore-session-1711548000"


@dataclass
class IamS3Lab:
    """A seeded account with the IAM and S3 stand-ins running over HTTPS."""

    account: Account
    scenario: DefaultScenario
    trace: Trace
    iam_url: str
    s3_url: str
    ca_file: Path
    clients: list[Any] = field(default_factory=list)

    @property
    def admin(self) -> Credential:
        return self.scenario.admin

    def client(self, service: str, cred: Credential | None = None, **kw: Any) -> Any:
        """A real boto3 client for ``service`` signed with ``cred`` (the admin by default)."""
        cred = cred or self.admin
        url = self.iam_url if service == "iam" else self.s3_url
        client = boto3.client(
            service,
            region_name=REGION,
            endpoint_url=url,
            verify=str(self.ca_file),
            aws_access_key_id=cred.access_key_id,
            aws_secret_access_key=cred.secret_access_key,
            aws_session_token=cred.session_token,
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, **kw),
        )
        self.clients.append(client)
        return client

    def close_clients(self) -> None:
        """Close every client's connections, so no keep-alive socket outlives the servers."""
        for client in self.clients:
            client.close()
        self.clients.clear()

    def assumed_role_credential(
        self, role_name: str = ROLE_NAME, *, expires_in: float = 3600
    ) -> Credential:
        """Register temporary keys for ``role_name`` the way STS would, and return them."""
        ids = self.account.ids
        role = self.account.roles[role_name]
        cred = Credential(
            access_key_id=ids.access_key_id("ASIA"),
            secret_access_key=ids.secret_token(40),
            kind="assumed-role",
            arn=f"arn:aws:sts::{self.account.account_id}:assumed-role/{role_name}/{ROLE_SESSION}",
            user_id=f"{role.role_id}:{ROLE_SESSION}",
            session_token="IQoJb3JpZ2luX2Vj" + ids.secret_token(300),
            expiration=time.time() + expires_in,
            role_name=role_name,
            source="sts:AssumeRoleWithWebIdentity",
        )
        with self.account.lock:
            self.account.credentials[cred.access_key_id] = cred
        return cred


@contextmanager
def running_lab(ca_dir: Path) -> Iterator[IamS3Lab]:
    """Seed an account and serve IAM and S3 for it until the block ends."""
    account = Account(clock=ManualClock(LAB_EPOCH), ids=Ids(seed=7))
    scenario = seed_default(account, issuer=ISSUER)
    trace = Trace(clock=account.clock)
    ca = LabCA.create()
    ca_file = ca_dir / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    tls = ca.issue().server_context()
    loop = ServerLoop("iam-s3-test").start()
    try:
        wall = SystemClock()
        iam = loop.serve("iam", iam_api.make_app(account, trace=trace, wall_clock=wall), tls=tls)
        s3 = loop.serve("s3", s3_api.make_app(account, trace=trace, wall_clock=wall), tls=tls)
        lab = IamS3Lab(account, scenario, trace, iam.url, s3.url, ca_file)
        try:
            yield lab
        finally:
            lab.close_clients()
            # Connections that carried an error reply can outlive close() until they
            # are collected; collect them, then give the servers a moment to see the
            # hang-ups before the loop stops (else asyncio warns of unclosed transports).
            gc.collect()
            time.sleep(0.05)
    finally:
        loop.stop()


@pytest.fixture(scope="module", name="iam_s3_lab")
def iam_s3_lab_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamS3Lab]:
    """One stack per test module: seeding and TLS set-up cost more than a test."""
    with running_lab(tmp_path_factory.mktemp("ca")) as lab:
        yield lab


@pytest.fixture(scope="module", name="scratch_lab")
def scratch_lab_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IamS3Lab]:
    """A second stack that fuzz tests may wreck without disturbing the others."""
    with running_lab(tmp_path_factory.mktemp("ca")) as lab:
        yield lab


def raw_request(
    lab: IamS3Lab,
    service: str,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    cred: Credential | None = None,
    sign: bool = True,
) -> tuple[int, dict[str, str], bytes]:
    """Send a request as-is over HTTPS (signed with botocore's own signer unless told not to)."""
    base = lab.iam_url if service == "iam" else lab.s3_url
    parts = urlsplit(base)
    hdrs = dict(headers or {})
    if sign:
        cred = cred or lab.admin
        req = AWSRequest(method=method, url=base + path, data=body, headers=hdrs)
        signer_cls = S3SigV4Auth if service == "s3" else SigV4Auth
        region = REGION if service == "s3" else "us-east-1"
        signer_cls(
            Credentials(cred.access_key_id, cred.secret_access_key, cred.session_token),
            service,
            region,
        ).add_auth(req)
        hdrs = dict(req.headers.items())
    ctx = ssl.create_default_context(cafile=str(lab.ca_file))
    conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, context=ctx, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for k, v in hdrs.items():
            if k.lower() != "host":
                conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
