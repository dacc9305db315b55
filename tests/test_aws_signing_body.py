"""The body is bound to the signature.

STS and IAM hash the body they received, so a body swapped after signing fails
whatever ``X-Amz-Content-SHA256`` claims. S3 checks the hash it is given, and the
chunk signatures of an ``aws-chunked`` upload, which are tested here against the
worked example of the S3 API Reference ("Signature Calculations for the
Authorization Header: Transferring Payload in Multiple Chunks (Chunked Upload)").
"""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import pytest
from aws_fixtures import StsLab, sts_lab, sts_servers  # noqa: F401 - fixtures
from iam_s3_fixtures import IamS3Lab, iam_s3_lab_fixture  # noqa: F401 - fixtures
from signed_requests import Reply, send, signed, signed_chunks

from irsa_lab.aws.errors import AwsError
from irsa_lab.aws.model import Account, Credential
from irsa_lab.aws.s3.uploads import ChunkSigning, decode_upload
from irsa_lab.aws.sigv4 import signing_key, verify
from irsa_lab.constants import BUCKET, REGION, ROLE_NAME

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
UNSIGNED = {**FORM, "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}


# --- STS and IAM: the body they received is the body that was signed ---------------------------
def test_an_iam_body_swapped_under_unsigned_payload_is_refused_and_nothing_runs(
    iam_s3_lab: IamS3Lab,
) -> None:
    iam = iam_s3_lab.client("iam")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="keep", PolicyDocument=json.dumps(policy))
    req = signed(
        iam_s3_lab.admin,
        service="iam",
        region="us-east-1",
        method="POST",
        url=f"{iam_s3_lab.iam_url}/",
        body=b"Action=ListRoles&Version=2010-05-08",
        headers=UNSIGNED,
    )
    swapped = (
        f"Action=DeleteRolePolicy&Version=2010-05-08&RoleName={ROLE_NAME}&PolicyName=keep"
    ).encode()
    reply = send(req, iam_s3_lab.ca_file, body=swapped)
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")
    assert iam.get_role_policy(RoleName=ROLE_NAME, PolicyName="keep")["PolicyName"] == "keep"
    iam.delete_role_policy(RoleName=ROLE_NAME, PolicyName="keep")


def test_an_iam_request_signed_with_unsigned_payload_is_a_signature_mismatch(
    iam_s3_lab: IamS3Lab,
) -> None:
    # IAM hashes the body itself: the client's UNSIGNED-PAYLOAD is not what IAM signs.
    req = signed(
        iam_s3_lab.admin,
        service="iam",
        region="us-east-1",
        method="POST",
        url=f"{iam_s3_lab.iam_url}/",
        body=b"Action=ListRoles&Version=2010-05-08",
        headers=UNSIGNED,
    )
    reply = send(req, iam_s3_lab.ca_file)
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")


def test_an_sts_body_changed_under_unsigned_payload_is_a_signature_mismatch(
    sts_lab: StsLab,
) -> None:
    creds = sts_lab.assume()["Credentials"]
    cred = Credential(
        creds["AccessKeyId"],
        creds["SecretAccessKey"],
        "assumed-role",
        "",
        "",
        creds["SessionToken"],
    )
    req = signed(
        cred,
        service="sts",
        region=REGION,
        method="POST",
        url=f"{sts_lab.sts_url}/",
        body=b"Action=GetCallerIdentity&Version=2011-06-15",
        headers=UNSIGNED,
    )
    reply = send(req, sts_lab.ca_file, body=b"Action=GetCallerIdentity&Version=2011-06-15&x=1")
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")


# --- S3: the hash it is given ----------------------------------------------------------------------
def _put(lab: IamS3Lab, key: str, content_sha: str, body: bytes) -> Reply:
    req = signed(
        lab.admin,
        service="s3",
        region=REGION,
        method="PUT",
        url=f"{lab.s3_url}/{BUCKET}/{key}",
        body=body,
        headers={"X-Amz-Content-SHA256": content_sha},
    )
    return send(req, lab.ca_file)


def _stored(lab: IamS3Lab, key: str) -> bool:
    return key in lab.account.buckets[BUCKET]["objects"]


def test_s3_refuses_an_x_amz_content_sha256_that_is_no_hash(iam_s3_lab: IamS3Lab) -> None:
    reply = _put(iam_s3_lab, "not-a-hash.txt", "NOT-A-HASH", b"data")
    assert (reply.status, reply.code, reply.message) == (
        400,
        "InvalidArgument",
        "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD, "
        "or a valid sha256 value.",
    )
    assert reply.error("ArgumentName") == "x-amz-content-sha256"
    assert reply.error("ArgumentValue") == "NOT-A-HASH"
    assert not _stored(iam_s3_lab, "not-a-hash.txt")


def test_s3_refuses_a_body_whose_hash_is_not_the_signed_one_and_names_both(
    iam_s3_lab: IamS3Lab,
) -> None:
    req = signed(
        iam_s3_lab.admin,
        service="s3",
        region=REGION,
        method="PUT",
        url=f"{iam_s3_lab.s3_url}/{BUCKET}/swapped.txt",
        body=b"abc",
        s3=True,
    )
    reply = send(req, iam_s3_lab.ca_file, body=b"abd")
    assert (reply.status, reply.code) == (400, "XAmzContentSHA256Mismatch")
    assert reply.message == (
        "The provided 'x-amz-content-sha256' header does not match what was computed."
    )
    assert reply.error("ClientComputedContentSHA256") == hashlib.sha256(b"abc").hexdigest()
    assert reply.error("S3ComputedContentSHA256") == hashlib.sha256(b"abd").hexdigest()
    assert not _stored(iam_s3_lab, "swapped.txt")


def test_s3_signed_chunks_are_stored_when_every_signature_chains(iam_s3_lab: IamS3Lab) -> None:
    url = f"{iam_s3_lab.s3_url}/{BUCKET}/chunked.txt"
    req, body = signed_chunks(
        iam_s3_lab.admin, region=REGION, url=url, chunks=[b"a" * 8192, b"b" * 100]
    )
    reply = send(req, iam_s3_lab.ca_file, body=body)
    assert reply.status == 200, reply.body
    stored = iam_s3_lab.account.buckets[BUCKET]["objects"]["chunked.txt"]
    assert stored[0] == b"a" * 8192 + b"b" * 100


@pytest.mark.parametrize("forged", ["zeros", "swapped"])
def test_s3_chunks_with_forged_or_reordered_signatures_are_signature_does_not_match(
    iam_s3_lab: IamS3Lab, forged: str
) -> None:
    url = f"{iam_s3_lab.s3_url}/{BUCKET}/forged-{forged}.txt"
    chunks = [b"a" * 8192, b"b" * 100]
    if forged == "zeros":
        req, body = signed_chunks(
            iam_s3_lab.admin, region=REGION, url=url, chunks=chunks, signatures=["0" * 64] * 3
        )
    else:
        req, body = signed_chunks(iam_s3_lab.admin, region=REGION, url=url, chunks=chunks)
        body = body.replace(b"b" * 100, b"c" * 100)  # the data changed, its signature did not
    reply = send(req, iam_s3_lab.ca_file, body=body)
    assert (reply.status, reply.code) == (403, "SignatureDoesNotMatch")
    assert not _stored(iam_s3_lab, f"forged-{forged}.txt")


def test_boto3_put_object_with_a_trailing_checksum_still_works(iam_s3_lab: IamS3Lab) -> None:
    # botocore >= 1.36 sends STREAMING-UNSIGNED-PAYLOAD-TRAILER over HTTPS.
    s3 = iam_s3_lab.client("s3")
    s3.put_object(Bucket=BUCKET, Key="trailer.txt", Body=b"hello")
    assert s3.get_object(Bucket=BUCKET, Key="trailer.txt")["Body"].read() == b"hello"


# --- the published example ------------------------------------------------------------------------
# S3 API Reference, "Signature Calculations for the Authorization Header: Transferring
# Payload in Multiple Chunks (Chunked Upload)", Example: PUT Object (65 KB of 'a').
EXAMPLE_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
EXAMPLE_SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
EXAMPLE_CHUNKS = [
    (b"a" * 65536, "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"),
    (b"a" * 1024, "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"),
    (b"", "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"),
]
EXAMPLE_SIGNED_HEADERS = (
    "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
    "x-amz-decoded-content-length;x-amz-storage-class"
)
EXAMPLE_HEADERS = {
    "Host": "s3.amazonaws.com",
    "x-amz-date": "20130524T000000Z",
    "x-amz-storage-class": "REDUCED_REDUNDANCY",
    "Authorization": (
        f"AWS4-HMAC-SHA256 Credential={EXAMPLE_KEY_ID}/20130524/us-east-1/s3/aws4_request,"
        f"SignedHeaders={EXAMPLE_SIGNED_HEADERS},Signature={EXAMPLE_SEED}"
    ),
    "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "Content-Encoding": "aws-chunked",
    "x-amz-decoded-content-length": "66560",
    "Content-Length": "66824",
}
EXAMPLE_TIME = datetime(2013, 5, 24, tzinfo=UTC).timestamp()


def _example_body(chunks: list[tuple[bytes, str]]) -> bytes:
    return b"".join(
        f"{len(data):x};chunk-signature={sig}\r\n".encode() + data + b"\r\n" for data, sig in chunks
    )


def _example_signing() -> ChunkSigning:
    account = Account()
    account.credentials[EXAMPLE_KEY_ID] = Credential(
        EXAMPLE_KEY_ID, EXAMPLE_SECRET, "user", "arn:aws:iam::111122223333:user/example", "AIDA"
    )
    checked = verify(
        account,
        method="PUT",
        path="/examplebucket/chunkObject.txt",
        query="",
        headers=EXAMPLE_HEADERS,
        body=_example_body(EXAMPLE_CHUNKS),
        now=EXAMPLE_TIME,
        service="s3",
        regions=("us-east-1",),
    )
    return ChunkSigning(checked.signature, checked.signing_key(), checked.amz_date, checked.scope)


def test_the_published_seed_signature_verifies_with_botocores_signer() -> None:
    signing = _example_signing()
    assert signing.seed == EXAMPLE_SEED
    assert signing.scope == "20130524/us-east-1/s3/aws4_request"


def test_the_published_chunk_signatures_verify_and_the_object_is_65_kb_of_a() -> None:
    body = _example_body(EXAMPLE_CHUNKS)
    assert len(body) == 66824  # the example's Content-Length
    assert decode_upload(EXAMPLE_HEADERS, body, _example_signing()) == b"a" * 66560


@pytest.mark.parametrize("which", [0, 1, 2])
def test_any_published_chunk_signature_changed_is_signature_does_not_match(which: int) -> None:
    chunks = list(EXAMPLE_CHUNKS)
    data, sig = chunks[which]
    chunks[which] = (data, sig[:-1] + ("0" if sig[-1] != "0" else "1"))
    with pytest.raises(AwsError) as exc:
        decode_upload(EXAMPLE_HEADERS, _example_body(chunks), _example_signing())
    assert exc.value.code == "SignatureDoesNotMatch"


def test_the_published_trailer_example_verifies_its_trailer_signature() -> None:
    # S3 API Reference, "Signature calculations for trailing headers (chunked uploads)".
    chunks = [
        (b"a" * 65536, "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2"),
        (b"a" * 1024, "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7"),
        (b"", "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992"),
    ]
    trailer_sig = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
    body = (
        _example_body(chunks)[:-2]
        + (
            f"x-amz-checksum-crc32c:sOO8/Q==\r\nx-amz-trailer-signature:{trailer_sig}\r\n\r\n"
        ).encode()
    )
    headers = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "Content-Encoding": "aws-chunked",
    }
    signing = ChunkSigning(
        "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e",
        signing_key(EXAMPLE_SECRET, "20130524", "us-east-1", "s3"),
        "20130524T000000Z",
        "20130524/us-east-1/s3/aws4_request",
    )
    assert decode_upload(headers, body, signing) == b"a" * 66560
    with pytest.raises(AwsError) as exc:
        decode_upload(headers, body.replace(b"sOO8/Q==", b"AAAAAA=="), signing)
    assert exc.value.code == "SignatureDoesNotMatch"
