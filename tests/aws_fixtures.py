"""Fixtures for the STS and IMDS stand-ins: a test OIDC issuer, STS, IMDS, on loopback.

``sts_servers`` (session scope) starts one :class:`ServerLoop` with

* a tiny OIDC issuer over TLS serving ``/id/<32 hex>/.well-known/openid-configuration``
  and ``/id/<32 hex>/keys`` in EKS's shape, standing for
  ``https://oidc.eks.eu-west-1.amazonaws.com/id/<32 hex>``;
* a second issuer whose certificate comes from a CA nobody trusts, standing for
  ``https://oidc.eks.us-east-1.amazonaws.com/id/<32 hex>``;
* the STS app over TLS, and the IMDS app twice over HTTP (node and pod views).

``sts_lab`` (function scope) hands the same servers out with the account re-seeded
with the default scenario, the issuer repaired and the trace emptied, so every test
starts from the article's working set-up.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import jwt
import pytest
from botocore.config import Config

from irsa_lab import web
from irsa_lab.aws import imds as imds_api
from irsa_lab.aws import sts as sts_api
from irsa_lab.aws.model import Account, OidcProvider
from irsa_lab.aws.oidc_client import OidcKeyFetcher
from irsa_lab.aws.scenario import DefaultScenario, seed_default
from irsa_lab.clock import ManualClock, SystemClock
from irsa_lab.constants import DEFAULT_AUDIENCE, NODE_ROLE_NAME, REGION, ROLE_ARN
from irsa_lab.httpd import ServerLoop
from irsa_lab.ids import Ids
from irsa_lab.pki import LabCA, SigningKey
from irsa_lab.trace import Trace

ISSUER_ORIGIN = "https://oidc.eks.eu-west-1.amazonaws.com"
ISSUER_ID = "5C7E4B2A9D1F3E8C6B0A2D4F6E8C0B1D"
ISSUER = f"{ISSUER_ORIGIN}/id/{ISSUER_ID}"
ISSUER_HOST_PATH = ISSUER.removeprefix("https://")
ROGUE_ORIGIN = "https://oidc.eks.us-east-1.amazonaws.com"
ROGUE_ISSUER = f"{ROGUE_ORIGIN}/id/0F1E2D3C4B5A69788796A5B4C3D2E1F0"
SUB = "system:serviceaccount:default:s3-readonly-sa"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TestIssuer:
    """An OIDC issuer for tests: serves discovery and JWKS, mints tokens, breaks on demand.

    ``status`` makes both documents answer that HTTP status; ``advertised_issuer``
    replaces the ``issuer`` field of discovery; ``published`` is the list of keys in
    the JWKS; ``hits`` counts requests per path.
    """

    __test__ = False  # not a pytest test class

    issuer: str
    key: SigningKey
    published: list[SigningKey] = field(default_factory=list)
    status: int = 200
    advertised_issuer: str | None = None
    hits: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.published:
            self.published = [self.key]

    def reset(self) -> None:
        self.published = [self.key]
        self.status = 200
        self.advertised_issuer = None
        self.hits.clear()

    def app(self) -> web.Application:
        base = "/" + self.issuer.split("/", 3)[3]

        def hit(request: web.Request) -> web.Response | None:
            self.hits[request.path] = self.hits.get(request.path, 0) + 1
            if self.status != 200:
                return web.Response(status=self.status, text="broken on purpose")
            return None

        async def discovery(request: web.Request) -> web.Response:
            return hit(request) or web.json_response(
                {
                    "issuer": self.advertised_issuer or self.issuer,
                    "jwks_uri": f"{self.issuer}/keys",
                    "authorization_endpoint": "urn:kubernetes:programmatic_authorization",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "claims_supported": ["sub", "iss"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
            )

        async def keys(request: web.Request) -> web.Response:
            return hit(request) or web.json_response(
                {"keys": [k.public_jwk() for k in self.published]}
            )

        app = web.Application()
        app.router.add_get(f"{base}/.well-known/openid-configuration", discovery)
        app.router.add_get(f"{base}/keys", keys)
        return app

    def claims(self, now: float, **overrides: Any) -> dict[str, Any]:
        """Claims as a Kubernetes API server puts them in a projected IRSA token."""
        t = int(now)
        claims: dict[str, Any] = {
            "aud": [DEFAULT_AUDIENCE],
            "exp": t + 86400,
            "iat": t,
            "iss": self.issuer,
            "kubernetes.io": {
                "namespace": "default",
                "pod": {"name": "mypod", "uid": "5a0f2a4e-0000-4000-8000-000000000001"},
                "serviceaccount": {
                    "name": "s3-readonly-sa",
                    "uid": "5a0f2a4e-0000-4000-8000-000000000002",
                },
            },
            "nbf": t,
            "sub": SUB,
        }
        for name, value in overrides.items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return claims

    def mint(
        self,
        now: float,
        *,
        key: SigningKey | None = None,
        kid: str | None = "",
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """An RS256 token; ``kid=""`` uses the signing key's kid, ``None`` omits it."""
        key = key or self.key
        hdr: dict[str, Any] = dict(headers or {})
        if kid == "":
            hdr["kid"] = key.kid
        elif kid is not None:
            hdr["kid"] = kid
        return jwt.encode(
            self.claims(now, **claims), key.private_key, algorithm="RS256", headers=hdr
        )

    def forge(self, now: float, alg: str, secret: bytes = b"") -> str:
        """A token with ``alg`` (``none`` or ``HS256`` keyed with ``secret``) built by hand."""
        header = b64url(json.dumps({"alg": alg, "kid": self.key.kid}).encode())
        body = b64url(json.dumps(self.claims(now)).encode())
        signing_input = f"{header}.{body}".encode()
        sig = b"" if alg == "none" else hmac.new(secret, signing_input, hashlib.sha256).digest()
        return f"{header}.{body}.{b64url(sig)}"


@dataclass
class StsServers:
    """The long-lived servers and key material, shared by every STS/IMDS test."""

    loop: ServerLoop
    ca: LabCA
    ca_file: Path
    account: Account
    trace: Trace
    clock: ManualClock
    issuer: TestIssuer
    rogue: TestIssuer
    fetcher: OidcKeyFetcher
    imds_settings: imds_api.ImdsSettings
    sts_url: str
    imds_node_url: str
    imds_pod_url: str
    issuer_url: str
    other_key: SigningKey
    clients: dict[str, Any] = field(default_factory=dict)


@dataclass
class StsLab:
    """One test's view: the servers plus the freshly seeded scenario."""

    servers: StsServers
    scenario: DefaultScenario
    tmp: Path

    def __getattr__(self, name: str) -> Any:
        return getattr(self.servers, name)

    @property
    def now(self) -> float:
        return self.servers.clock.now()

    def token(self, **kw: Any) -> str:
        return self.servers.issuer.mint(self.now, **kw)

    def token_file(self, token: str | None = None) -> Path:
        path = self.tmp / "token"
        path.write_text(token if token is not None else self.token())
        return path

    def sts(self, **config: Any) -> Any:
        """A real boto3 STS client on the stand-in (no credentials needed for web identity).

        Clients are kept per configuration for the session: building one costs ~50 ms.
        """
        clients = self.servers.clients
        key = repr(sorted(config.items()))
        if key not in clients:
            clients[key] = boto3.session.Session(region_name=REGION).client(
                "sts",
                endpoint_url=self.servers.sts_url,
                verify=str(self.servers.ca_file),
                config=Config(**config) if config else None,
            )
        return clients[key]

    def assume(self, token: str | None = None, *, sts: Any = None, **params: Any) -> Any:
        """Call AssumeRoleWithWebIdentity directly with boto3 (defaults: the scenario's)."""
        args = {
            "RoleArn": ROLE_ARN,
            "RoleSessionName": "botocore-session-1711548000",
            "WebIdentityToken": token if token is not None else self.token(),
        }
        args.update(params)
        return (sts or self.sts()).assume_role_with_web_identity(**args)

    def web_identity_env(self, token_file: Path, home: Path) -> dict[str, str]:
        """Exactly the settings a pod gets, plus where the lab's STS and CA are."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "AWS_ROLE_ARN": ROLE_ARN,
            "AWS_WEB_IDENTITY_TOKEN_FILE": str(token_file),
            "AWS_ENDPOINT_URL_STS": self.servers.sts_url,
            "AWS_CA_BUNDLE": str(self.servers.ca_file),
            "AWS_DEFAULT_REGION": REGION,
        }


def cli_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of an aws CLI run in a subprocess: this ``PATH``, a ``HOME`` and
    config files of its own (nothing of the developer's), then ``settings``."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        **settings,
    }


def admin_cli_env(endpoints: Any, home: Path) -> dict[str, str]:
    """:func:`cli_env` pointed at a lab's ``Endpoints``, as its account administrator."""
    return cli_env(
        home,
        **endpoints.aws_env(),
        AWS_ACCESS_KEY_ID=endpoints.admin_access_key_id,
        AWS_SECRET_ACCESS_KEY=endpoints.admin_secret_access_key,
    )


def only_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Make ``env`` the whole AWS configuration of this process (others removed)."""
    for key in list(os.environ):
        if key.startswith("AWS_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def sts_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StsServers]:
    loop = ServerLoop("sts-tests").start()
    servers = _start(loop, tmp_path_factory)
    try:
        yield servers
    finally:
        for client in servers.clients.values():
            client.close()
        _let_clients_go()
        loop.stop()


def _start(loop: ServerLoop, tmp_path_factory: pytest.TempPathFactory) -> StsServers:
    ca = LabCA.create()
    ca_file = tmp_path_factory.mktemp("ca") / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    trace = Trace()
    clock = ManualClock(time.time())
    account = Account(clock=clock, ids=Ids(7))

    key = SigningKey.generate()
    issuer = TestIssuer(ISSUER, key)
    oidc = loop.serve("oidc", issuer.app(), tls=ca.issue().server_context())
    rogue = TestIssuer(ROGUE_ISSUER, key)
    rogue_ca = LabCA.create("a CA nobody trusts")
    bad = loop.serve("oidc-rogue", rogue.app(), tls=rogue_ca.issue().server_context())

    fetcher = OidcKeyFetcher(
        {ISSUER_ORIGIN: oidc.url, ROGUE_ORIGIN: bad.url},
        ca.client_context(),
        clock,
        trace,
        timeout=1.0,
    )
    sts = loop.serve(
        "sts",
        sts_api.make_app(
            account,
            fetcher=fetcher,
            clock=clock,
            wall_clock=SystemClock(),
            trace=trace,
            region=REGION,
        ),
        tls=ca.issue().server_context(),
    )
    settings = imds_api.ImdsSettings()
    common: dict[str, Any] = dict(
        node_role=NODE_ROLE_NAME,
        settings=settings,
        clock=clock,
        wall_clock=SystemClock(),
        ids=account.ids,
        trace=trace,
    )
    node = loop.serve("imds", imds_api.make_app(account, position="node", **common))
    pod = loop.serve("imds-pod", imds_api.make_app(account, position="pod", **common))
    return StsServers(
        loop,
        ca,
        ca_file,
        account,
        trace,
        clock,
        issuer,
        rogue,
        fetcher,
        settings,
        sts.url,
        node.url,
        pod.url,
        oidc.url,
        SigningKey.generate(),
    )


def _let_clients_go() -> None:
    # A boto3 client kept alive by a stored traceback holds a keep-alive TLS connection;
    # if the loop stops first, the server side of it is never closed (ResourceWarning,
    # an error here). Collecting the cycles closes the clients, and the servers follow.
    gc.collect()
    time.sleep(0.1)


@pytest.fixture
def sts_lab(sts_servers: StsServers, tmp_path: Path) -> StsLab:
    s = sts_servers
    acct = s.account
    with acct.lock:
        acct.roles.clear()
        acct.oidc_providers.clear()
        acct.managed_policies.clear()
        acct.credentials.clear()
        acct.buckets.clear()
    s.clock.set(time.time())
    scenario = seed_default(acct, issuer=ISSUER)
    with acct.lock:
        rogue_host_path = ROGUE_ISSUER.removeprefix("https://")
        arn = f"arn:aws:iam::{acct.account_id}:oidc-provider/{rogue_host_path}"
        acct.oidc_providers[arn] = OidcProvider(
            rogue_host_path, arn, [DEFAULT_AUDIENCE], ["0" * 40], s.clock.now()
        )
    s.issuer.reset()
    s.rogue.reset()
    s.fetcher.invalidate()
    s.imds_settings.http_tokens = "optional"
    s.imds_settings.hop_limit = 2
    s.trace.clear()
    return StsLab(s, scenario, tmp_path)
