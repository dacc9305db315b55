"""SigV4 verification against requests signed by botocore's own signer."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from irsa_lab.aws.model import Account, Credential
from irsa_lab.aws.sigv4 import SigV4Failure, to_aws_error, verify

AK = "ASIAEXAMPLEEXAMPLE01"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLETOKEN" * 20
USER_AK = "AKIAEXAMPLEEXAMPLE02"


@pytest.fixture
def account() -> Account:
    acct = Account()
    acct.credentials[AK] = Credential(
        AK,
        SECRET,
        "assumed-role",
        "arn:aws:sts::123456789012:assumed-role/R/s",
        "AROAX:s",
        session_token=TOKEN,
        expiration=time.time() + 3600,
    )
    acct.credentials[USER_AK] = Credential(
        USER_AK, SECRET, "user", "arn:aws:iam::123456789012:user/admin", "AIDAX", source="admin"
    )
    return acct


def signed(
    method: str,
    url: str,
    *,
    service: str = "sts",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    ak: str = AK,
    secret: str = SECRET,
    token: str | None = TOKEN,
    s3: bool = False,
) -> AWSRequest:
    req = AWSRequest(method=method, url=url, data=body, headers=headers or {})
    creds = Credentials(ak, secret, token)
    signer = (S3SigV4Auth if s3 else SigV4Auth)(creds, service, "eu-west-1")
    signer.add_auth(req)
    return req


def check(account: Account, req: AWSRequest, now: float | None = None) -> Credential:
    parts = urlsplit(req.url)
    headers = {k: v for k, v in req.headers.items()}
    headers.setdefault("Host", parts.netloc)
    body = req.body if isinstance(req.body, bytes) else (req.body or "").encode()
    return verify(
        account,
        method=req.method,
        path=parts.path,
        query=parts.query,
        headers=headers,
        body=body,
        now=time.time() if now is None else now,
    ).credential


FORM = b"Action=GetCallerIdentity&Version=2011-06-15"
STS_HEADERS = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


def test_a_botocore_signed_sts_post_is_accepted_and_names_its_credential(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM, headers=STS_HEADERS)
    assert check(account, req).access_key_id == AK


def test_long_term_user_keys_without_a_session_token_are_accepted(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM, ak=USER_AK, token=None)
    assert check(account, req).kind == "user"


def test_a_non_s3_path_is_double_encoded_as_botocore_signs_it(account):
    req = signed("GET", "https://127.0.0.1:4443/a%20b/./c//d?x=1&a=b%2Fc", service="iam")
    assert check(account, req).access_key_id == AK


def test_s3_paths_and_queries_are_signed_as_sent(account):
    url = "https://127.0.0.1:4443/bkt/dir/a%20b%2Bc.txt"
    req = signed("PUT", url, service="s3", body=b"hello", s3=True)
    assert check(account, req).access_key_id == AK
    q = "https://127.0.0.1:4443/bkt?list-type=2&prefix=dir%2Fa%20b&max-keys=5&encoding-type=url"
    assert check(account, signed("GET", q, service="s3", s3=True)).access_key_id == AK


def test_s3_unsigned_payload_is_accepted(account):
    req = signed(
        "PUT",
        "https://127.0.0.1:4443/bkt/k",
        service="s3",
        body=b"data",
        headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"},
    )
    assert check(account, req).access_key_id == AK


def test_a_tampered_body_is_a_signature_mismatch(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM, headers=STS_HEADERS)
    req.data = FORM + b"&x=1"
    with pytest.raises(SigV4Failure) as exc:
        check(account, req)
    assert exc.value.kind == "bad_signature"
    err = to_aws_error(exc.value, "sts")
    assert (err.code, err.status) == ("SignatureDoesNotMatch", 403)


def test_an_s3_body_that_differs_from_its_declared_hash_is_refused(account):
    req = signed("PUT", "https://127.0.0.1:4443/bkt/k", service="s3", body=b"abc", s3=True)
    req.data = b"abd"
    with pytest.raises(SigV4Failure) as exc:
        check(account, req)
    assert exc.value.kind == "content_mismatch"
    assert to_aws_error(exc.value, "s3").code == "XAmzContentSHA256Mismatch"


def test_a_wrong_secret_is_a_signature_mismatch(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM, secret="x" * 40)
    with pytest.raises(SigV4Failure) as exc:
        check(account, req)
    assert exc.value.kind == "bad_signature"


def test_an_unknown_key_is_invalid_client_token_id_for_sts_and_invalid_access_key_for_s3(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM, ak="ASIANOTKNOWN00000000")
    with pytest.raises(SigV4Failure) as exc:
        check(account, req)
    assert exc.value.kind == "unknown_key"
    sts = to_aws_error(exc.value, "sts")
    assert (sts.code, sts.status, sts.message) == (
        "InvalidClientTokenId",
        403,
        "The security token included in the request is invalid.",
    )
    s3 = to_aws_error(exc.value, "s3")
    assert (s3.code, s3.status) == ("InvalidAccessKeyId", 403)


def test_a_session_token_that_is_not_the_issued_one_is_refused(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM, token="forged")
    with pytest.raises(SigV4Failure) as exc:
        check(account, req)
    assert exc.value.kind == "invalid_token"
    assert to_aws_error(exc.value, "s3").code == "InvalidToken"


def test_temporary_keys_without_their_session_token_are_refused(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM, token=None)
    with pytest.raises(SigV4Failure) as exc:
        check(account, req)
    assert exc.value.kind == "invalid_token"


def test_an_expired_session_is_expired_token(account):
    account.credentials[AK].expiration = time.time() - 1
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM)
    with pytest.raises(SigV4Failure) as exc:
        check(account, req)
    err = to_aws_error(exc.value, "sts")
    assert (err.code, err.status, err.message) == (
        "ExpiredToken",
        403,
        "The security token included in the request is expired",
    )
    s3 = to_aws_error(exc.value, "s3")
    assert (s3.code, s3.status) == ("ExpiredToken", 400)


def test_a_request_signed_twenty_minutes_ago_is_signature_expired(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM)
    with pytest.raises(SigV4Failure) as exc:
        check(account, req, now=time.time() + 20 * 60)
    err = to_aws_error(exc.value, "sts")
    assert err.code == "SignatureDoesNotMatch"
    assert err.message.startswith("Signature expired: ")
    assert err.message.endswith(" - 15 min.)")
    assert to_aws_error(exc.value, "s3").code == "RequestTimeTooSkewed"


def test_an_unsigned_request_is_missing_authentication_token(account):
    with pytest.raises(SigV4Failure) as exc:
        verify(account, method="POST", path="/", query="", headers={}, body=FORM, now=time.time())
    assert to_aws_error(exc.value, "sts").code == "MissingAuthenticationToken"
    assert to_aws_error(exc.value, "s3").code == "AccessDenied"


@pytest.mark.parametrize(
    "header",
    ["Basic abc", "AWS4-HMAC-SHA256 Credential=AK/2024", "AWS4-HMAC-SHA256 SignedHeaders=host"],
)
def test_a_malformed_authorization_header_is_refused_as_malformed(account, header):
    with pytest.raises(SigV4Failure) as exc:
        verify(
            account,
            method="POST",
            path="/",
            query="",
            headers={"Authorization": header, "X-Amz-Date": "20240101T000000Z"},
            body=b"",
            now=time.time(),
        )
    assert exc.value.kind in {"malformed", "unknown_key"}
    assert to_aws_error(exc.value, "sts").status in {400, 403}


def test_a_scope_for_another_service_is_refused_when_the_service_is_known(account):
    req = signed("POST", "https://127.0.0.1:4443/", body=FORM, service="s3")
    parts = urlsplit(req.url)
    with pytest.raises(SigV4Failure) as exc:
        verify(
            account,
            method="POST",
            path=parts.path,
            query="",
            headers={**dict(req.headers.items()), "Host": parts.netloc},
            body=FORM,
            now=time.time(),
            service="sts",
        )
    assert "scoped to correct service: 'sts'" in to_aws_error(exc.value, "sts").message
