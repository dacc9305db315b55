"""The EKS-shaped OIDC host: discovery and JWKS at /id/<ID>/ over HTTPS, as EKS serves them."""

from __future__ import annotations

import json

import pytest
from token_fixtures import (  # noqa: F401 - fixtures
    OidcHost,
    clock_fixture,
    demo_key_fixture,
    ids_fixture,
    issuer_fixture,
    lab_ca_fixture,
    oidc_host_fixture,
)

from irsa_lab.kube.oidc import eks_discovery_document, issuer_path, local_url
from irsa_lab.kube.tokens import TokenIssuer
from irsa_lab.pki import SigningKey
from irsa_lab.trace import TraceEvent


def test_eks_discovery_document_has_the_eks_fields_in_eks_order(issuer: TokenIssuer) -> None:
    doc = eks_discovery_document(issuer)
    assert list(doc) == [
        "issuer",
        "jwks_uri",
        "authorization_endpoint",
        "response_types_supported",
        "subject_types_supported",
        "claims_supported",
        "id_token_signing_alg_values_supported",
    ]
    assert doc["issuer"] == issuer.issuer
    assert doc["jwks_uri"] == issuer.issuer + "/keys"
    assert doc["authorization_endpoint"] == "urn:kubernetes:programmatic_authorization"
    assert doc["claims_supported"] == ["sub", "iss"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]


def test_discovery_is_served_over_https_under_the_issuer_path(
    issuer: TokenIssuer, oidc_host: OidcHost
) -> None:
    path = issuer_path(issuer.issuer)
    assert path.startswith("/id/") and len(path) == len("/id/") + 32
    status, headers, body = oidc_host.get(
        f"{oidc_host.base}{path}/.well-known/openid-configuration"
    )
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert headers["Cache-Control"] == "public, max-age=3600"
    assert body == json.dumps(eks_discovery_document(issuer), separators=(",", ":")).encode()


@pytest.mark.parametrize("accept", [None, "application/json", "application/jwk-set+json"])
def test_keys_are_served_as_json_whatever_the_accept_header(
    issuer: TokenIssuer, oidc_host: OidcHost, accept: str | None
) -> None:
    url = f"{oidc_host.base}{issuer_path(issuer.issuer)}/keys"
    status, headers, body = oidc_host.get(url, accept=accept)
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == issuer.jwks()


def test_unknown_paths_answer_404_json(issuer: TokenIssuer, oidc_host: OidcHost) -> None:
    for path in ("/", "/id/OTHER/keys", "/openid/v1/jwks", issuer_path(issuer.issuer) + "/x"):
        status, headers, body = oidc_host.get(oidc_host.base + path)
        assert status == 404, path
        assert headers["Content-Type"] == "application/json"
        assert json.loads(body) == {"message": "Not Found"}


def test_fetches_are_recorded_in_the_trace(issuer: TokenIssuer, oidc_host: OidcHost) -> None:
    base = oidc_host.base + issuer_path(issuer.issuer)
    oidc_host.get(base + "/.well-known/openid-configuration")
    oidc_host.get(base + "/keys")
    oidc_host.get(oidc_host.base + "/nope")
    events = oidc_host.trace.events()
    # urllib names no caller the host knows: recorded as unknown, never guessed as sts.
    assert [(e.source, e.target, e.call, e.outcome) for e in events] == [
        ("unknown", "oidc", "GET openid-configuration", "ok"),
        ("unknown", "oidc", "GET keys", "ok"),
        ("unknown", "oidc", "GET /nope", "NotFound"),
    ]
    assert events[1].detail["kids"] == [issuer.key.kid]


def test_a_rotated_key_shows_in_the_served_keys_at_once(
    issuer: TokenIssuer, oidc_host: OidcHost
) -> None:
    old = issuer.key.kid
    issuer.rotate(SigningKey.generate())
    _, _, body = oidc_host.get(f"{oidc_host.base}{issuer_path(issuer.issuer)}/keys")
    assert [k["kid"] for k in json.loads(body)["keys"]] == [issuer.key.kid, old]


def test_local_url_swaps_only_the_issuer_origin() -> None:
    iss = "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC"
    base = "https://127.0.0.1:8443"
    assert local_url(iss + "/keys", iss, base) == base + "/id/ABC/keys"
    assert local_url(iss, iss, base + "/") == base + "/id/ABC"
    other = "https://evil.example.com/id/ABC/keys"
    assert local_url(other, iss, base) == other


def test_the_caller_header_names_the_trace_source(issuer: TokenIssuer) -> None:
    from irsa_lab.kube.oidc import CALLER_HEADER

    event = _served(issuer, {CALLER_HEADER: "notebook"}, "/keys")
    assert event.source == "notebook"


def test_a_whole_issuer_url_maps_to_a_server_that_serves_discovery_at_its_root() -> None:
    # A real API server (kind, the k8s backend) serves discovery at its root, whatever
    # the issuer's path is; the issuer URL, path included, must map to that root.
    from irsa_lab.aws.errors import AwsError
    from irsa_lab.aws.oidc_client import OidcKeyFetcher
    from irsa_lab.clock import ManualClock
    from irsa_lab.trace import Trace

    issuer = "https://oidc.eks.eu-west-1.amazonaws.com/id/9F9455D9904B43490B195254C7B341E0"
    clock = ManualClock(0)
    fetcher = OidcKeyFetcher({issuer: "https://127.0.0.1:6443"}, None, clock, Trace(clock))
    assert (
        fetcher.local_url(issuer + "/.well-known/openid-configuration")
        == "https://127.0.0.1:6443/.well-known/openid-configuration"
    )
    # A prefix matches on a path boundary only, and an origin key still works.
    with pytest.raises(AwsError, match="IDPCommunicationError"):
        fetcher.local_url(issuer + "X/.well-known/openid-configuration")
    by_origin = OidcKeyFetcher(
        {"https://oidc.eks.eu-west-1.amazonaws.com": "https://127.0.0.1:4000"},
        None,
        clock,
        Trace(clock),
    )
    assert (
        by_origin.local_url(issuer + "/keys")
        == "https://127.0.0.1:4000/id/9F9455D9904B43490B195254C7B341E0/keys"
    )


def _served(
    issuer: TokenIssuer, headers: dict[str, str], path: str = "/.well-known/openid-configuration"
) -> TraceEvent:
    """One GET to the OIDC host's app, served on loopback by the lab's own server."""
    import http.client
    from contextlib import closing

    from irsa_lab.httpd import ServerLoop
    from irsa_lab.kube.oidc import make_app
    from irsa_lab.trace import Trace

    trace = Trace()
    loop = ServerLoop("oidc-test").start()
    try:
        port = loop.serve("oidc", make_app(issuer, trace=trace)).port
        with closing(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) as conn:
            conn.request("GET", issuer_path(issuer.issuer) + path, headers=headers)
            assert conn.getresponse().read()
    finally:
        loop.stop()
    [event] = trace.events()
    return event


def test_the_oidc_host_never_records_a_guessed_caller(issuer: TokenIssuer) -> None:
    from irsa_lab.kube.oidc import UNKNOWN_CALLER

    for headers in (
        {},
        {"User-Agent": "Python/3.11 aiohttp/3.9.5"},
        {"User-Agent": "curl/8.5.0"},
        {"User-Agent": "sts"},
        {"User-Agent": "Python-urllib/3.11"},
    ):
        event = _served(issuer, headers)
        assert event.source == UNKNOWN_CALLER, headers
        assert event.recorder == "oidc"
        assert event.detail["user_agent"] == headers.get("User-Agent", "")


def test_sts_is_named_only_by_its_fetchers_user_agent(issuer: TokenIssuer) -> None:
    from irsa_lab.kube.oidc import CALLER_HEADER, STS_USER_AGENT, caller_of

    assert _served(issuer, {"User-Agent": STS_USER_AGENT}).source == "sts"
    assert caller_of({"User-Agent": f"{STS_USER_AGENT} (OIDC key fetcher)"}) == "sts"
    assert caller_of({CALLER_HEADER: "notebook", "User-Agent": STS_USER_AGENT}) == "notebook"
