"""The service-account token issuer: claims, header and kid exactly as docs/reference/kubernetes.md §1.2-1.3."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from token_fixtures import (  # noqa: F401 - fixtures
    NODE_UID,
    POD_UID,
    SA_UID,
    OidcHost,
    clock_fixture,
    demo_key_fixture,
    ids_fixture,
    issuer_fixture,
    lab_ca_fixture,
    make_issuer,
    oidc_host_fixture,
)

from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.ids import Ids
from irsa_lab.jose import decode_unverified
from irsa_lab.kube.oidc import local_url
from irsa_lab.kube.tokens import (
    EXTENDED_EXPIRATION_S,
    TokenIssuer,
    eks_issuer,
    expiration_problem,
    validate_expiration,
)
from irsa_lab.pki import SigningKey

STS = "sts.amazonaws.com"
API = "https://kubernetes.default.svc"


def _segment(token: str, i: int) -> bytes:
    part = token.split(".")[i]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _irsa_token(issuer: TokenIssuer, **kw: object):  # type: ignore[no-untyped-def]
    args: dict = dict(
        namespace="default",
        service_account=("s3-readonly-sa", SA_UID),
        audiences=[STS],
        expiration_seconds=86400,
        pod=("mypod", POD_UID),
        node=("node-1", NODE_UID),
    )
    args.update(kw)
    return issuer.issue(**args)


def test_token_verifies_against_the_jwks_found_through_the_served_discovery_document(
    issuer: TokenIssuer, oidc_host: OidcHost
) -> None:
    token = _irsa_token(issuer).token
    local_issuer = local_url(issuer.issuer, issuer.issuer, oidc_host.base)
    status, _, body = oidc_host.get(f"{local_issuer}/.well-known/openid-configuration")
    assert status == 200
    discovery = json.loads(body)
    assert discovery["issuer"] == issuer.issuer
    jwks_url = local_url(discovery["jwks_uri"], issuer.issuer, oidc_host.base)
    assert jwks_url == f"{local_issuer}/keys"

    client = jwt.PyJWKClient(jwks_url, ssl_context=oidc_host.ca.client_context())
    signing_key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        signing_key.key,
        algorithms=discovery["id_token_signing_alg_values_supported"],
        audience=STS,
        issuer=discovery["issuer"],
        options={"verify_exp": False, "verify_iat": False, "verify_nbf": False},
    )
    assert claims["sub"] == "system:serviceaccount:default:s3-readonly-sa"


def test_header_is_alg_and_kid_only_in_that_order(issuer: TokenIssuer) -> None:
    token = _irsa_token(issuer).token
    assert token.startswith("eyJhbGciOiJSUzI1NiIsImtpZCI6")
    assert _segment(token, 0) == b'{"alg":"RS256","kid":"' + issuer.key.kid.encode() + b'"}'


def test_kid_is_sha256_of_the_der_public_key_base64url_without_padding(
    demo_key: SigningKey,
) -> None:
    der = demo_key.private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).decode().rstrip("=")
    assert len(expected) == 43
    assert demo_key.kid == expected
    header, _ = decode_unverified(_irsa_token(make_issuer()[0]).token)
    assert header["kid"] == expected


def test_pod_bound_claims_match_the_api_server_field_by_field(issuer: TokenIssuer) -> None:
    issued = _irsa_token(issuer)
    now = int(LAB_EPOCH)
    raw = _segment(issued.token, 1)
    assert b" " not in raw  # compact JSON, as Go writes it
    claims = json.loads(raw)
    assert list(claims) == ["aud", "exp", "iat", "iss", "jti", "kubernetes.io", "nbf", "sub"]
    assert claims["aud"] == [STS]
    assert claims["iat"] == claims["nbf"] == now
    assert claims["exp"] == now + 86400 == issued.expiration
    assert claims["iss"] == issuer.issuer
    assert uuid.UUID(claims["jti"]).version == 4
    assert claims["kubernetes.io"] == {
        "namespace": "default",
        "node": {"name": "node-1", "uid": NODE_UID},
        "pod": {"name": "mypod", "uid": POD_UID},
        "serviceaccount": {"name": "s3-readonly-sa", "uid": SA_UID},
    }
    assert list(claims["kubernetes.io"]) == ["namespace", "node", "pod", "serviceaccount"]
    assert claims["sub"] == "system:serviceaccount:default:s3-readonly-sa"
    assert issued.claims == claims


def test_unbound_token_carries_only_namespace_and_serviceaccount(issuer: TokenIssuer) -> None:
    claims = _irsa_token(issuer, pod=None, node=None).claims
    assert claims["kubernetes.io"] == {
        "namespace": "default",
        "serviceaccount": {"name": "s3-readonly-sa", "uid": SA_UID},
    }


def test_empty_audiences_become_the_api_audiences_as_an_array(issuer: TokenIssuer) -> None:
    assert _irsa_token(issuer, audiences=[]).claims["aud"] == [API]


def test_node_without_uid_embeds_only_its_name(issuer: TokenIssuer) -> None:
    claims = _irsa_token(issuer, node=("node-1", "")).claims
    assert claims["kubernetes.io"]["node"] == {"name": "node-1"}


def test_pod_bound_3607_seconds_for_api_audiences_gets_a_one_year_exp_and_warnafter(
    issuer: TokenIssuer,
) -> None:
    issued = _irsa_token(issuer, audiences=[], expiration_seconds=3607)
    now = int(LAB_EPOCH)
    assert issued.claims["exp"] == now + EXTENDED_EXPIRATION_S == now + 31536000
    assert issued.claims["kubernetes.io"]["warnafter"] == now + 3607
    assert list(issued.claims["kubernetes.io"])[-1] == "warnafter"
    assert issued.extended


@pytest.mark.parametrize(
    ("audiences", "seconds", "bound"),
    [
        ([STS], 3607, True),  # IRSA audience: never extended
        ([API, STS], 3607, True),  # not all audiences are API audiences
        ([API], 3600, True),  # not exactly 3607
        ([API], 3607, False),  # not pod-bound
    ],
)
def test_other_requests_are_not_extended(
    issuer: TokenIssuer, audiences: list[str], seconds: int, bound: bool
) -> None:
    kw: dict = {"audiences": audiences, "expiration_seconds": seconds}
    if not bound:
        kw.update(pod=None, node=None)
    issued = _irsa_token(issuer, **kw)
    assert issued.claims["exp"] == int(LAB_EPOCH) + seconds
    assert "warnafter" not in issued.claims["kubernetes.io"]
    assert not issued.extended


def test_same_seed_clock_and_key_sign_byte_identical_tokens() -> None:
    first = [_irsa_token(make_issuer()[0]).token for _ in range(2)]
    a, clock_a = make_issuer()
    b, clock_b = make_issuer()
    tokens_a = [_irsa_token(a).token, _irsa_token(a, audiences=[]).token]
    tokens_b = [_irsa_token(b).token, _irsa_token(b, audiences=[]).token]
    assert first[0] == first[1]
    assert tokens_a == tokens_b
    assert tokens_a[0] != tokens_a[1]  # fresh jti each time


def test_a_different_seed_gives_a_different_issuer_and_jti() -> None:
    a = _irsa_token(make_issuer(seed=1)[0])
    b = _irsa_token(make_issuer(seed=2)[0])
    assert a.claims["iss"] != b.claims["iss"]
    assert a.claims["jti"] != b.claims["jti"]


def test_iat_truncates_fractional_seconds() -> None:
    issuer, _ = make_issuer(start=LAB_EPOCH + 0.9)
    assert _irsa_token(issuer).claims["iat"] == int(LAB_EPOCH)


def test_eks_issuer_has_the_eks_shape() -> None:
    url = eks_issuer(Ids(3), "us-west-2")
    prefix = "https://oidc.eks.us-west-2.amazonaws.com/id/"
    assert url.startswith(prefix)
    ident = url[len(prefix) :]
    assert len(ident) == 32 and ident == ident.upper() and int(ident, 16) >= 0


@pytest.mark.parametrize(
    ("seconds", "message"),
    [
        (
            60,
            'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
            "Invalid value: 60: may not specify a duration less than 10 minutes",
        ),
        (
            2**32 + 1,
            'TokenRequest.authentication.k8s.io "" is invalid: spec.expirationSeconds: '
            "Invalid value: 4294967297: may not specify a duration larger than 2^32 seconds",
        ),
        (600, None),
        (2**32, None),
    ],
)
def test_expiration_bounds_give_the_api_server_message(seconds: int, message: str | None) -> None:
    assert validate_expiration(seconds) == message
    assert TokenIssuer.validate_expiration(seconds) == message
    # The reason alone is what the TokenRequest's 422 cause says.
    reason = expiration_problem(seconds)
    assert (reason is None) == (message is None)
    assert message is None or message.endswith(f": {reason}")


def test_discovery_document_has_the_api_server_fields_in_order(issuer: TokenIssuer) -> None:
    doc = issuer.discovery_document()
    assert json.dumps(doc, separators=(",", ":")) == (
        '{"issuer":"' + issuer.issuer + '",'
        '"jwks_uri":"' + issuer.issuer + '/openid/v1/jwks",'
        '"response_types_supported":["id_token"],'
        '"subject_types_supported":["public"],'
        '"id_token_signing_alg_values_supported":["RS256"]}'
    )
    assert issuer.discovery_document("https://127.0.0.1:6443/openid/v1/jwks")["jwks_uri"] == (
        "https://127.0.0.1:6443/openid/v1/jwks"
    )


def test_configured_jwks_uri_wins(demo_key: SigningKey) -> None:
    issuer = TokenIssuer(
        "https://kubernetes.default.svc.cluster.local",
        demo_key,
        clock=ManualClock(LAB_EPOCH),
        ids=Ids(1),
        jwks_uri="https://172.18.0.2:6443/openid/v1/jwks",
    )
    assert issuer.discovery_document()["jwks_uri"] == "https://172.18.0.2:6443/openid/v1/jwks"


def test_jwks_lists_the_key_in_the_api_server_field_order(issuer: TokenIssuer) -> None:
    keys = issuer.jwks()["keys"]
    assert len(keys) == 1
    assert list(keys[0]) == ["use", "kty", "kid", "alg", "n", "e"]
    assert keys[0]["kid"] == issuer.key.kid and keys[0]["e"] == "AQAB"


def test_rotation_signs_with_the_new_kid_and_keeps_the_old_key_published(
    issuer: TokenIssuer,
) -> None:
    old_key = issuer.key
    old_token = _irsa_token(issuer).token
    new_key = SigningKey.generate()
    issuer.rotate(new_key)
    new_token = _irsa_token(issuer).token
    assert decode_unverified(new_token)[0]["kid"] == new_key.kid
    jwks = {k["kid"]: k for k in issuer.jwks()["keys"]}
    assert list(jwks) == [new_key.kid, old_key.kid]
    for token in (old_token, new_token):
        kid = decode_unverified(token)[0]["kid"]
        key = jwt.PyJWK(jwks[kid]).key
        jwt.decode(token, key, algorithms=["RS256"], audience=STS, options={"verify_exp": False})
    issuer.rotate(SigningKey.generate(), keep_old=False)
    assert [k["kid"] for k in issuer.jwks()["keys"]] == [issuer.key.kid, old_key.kid]


def test_rotation_without_keep_old_drops_the_previous_key(issuer: TokenIssuer) -> None:
    old = issuer.key.kid
    issuer.rotate(SigningKey.generate(), keep_old=False)
    assert old not in [k["kid"] for k in issuer.jwks()["keys"]]


def test_decode_unverified_rejects_a_non_jws() -> None:
    with pytest.raises(ValueError, match="three"):
        decode_unverified("not-a-token")
