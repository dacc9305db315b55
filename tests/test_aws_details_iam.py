"""IAM answers in IAM's own words: principals that must exist, principals that may not
appear, and no lab commentary in the wire message. Driven by boto3's ``iam`` client."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from iam_s3_fixtures import IamS3Lab, iam_s3_lab_fixture  # noqa: F401 - fixtures

from irsa_lab.constants import ACCOUNT_ID, NODE_ROLE_NAME, REGION, ROLE_NAME

AWS_CLI = Path(sys.executable).with_name("aws")

MISSING_ROLE = f"arn:aws:iam::{ACCOUNT_ID}:role/NoSuchRoleAnywhere"


def trust_naming(principal: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"AWS": principal}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def error_of(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    r = exc.value.response
    return r["Error"]["Code"], r["Error"]["Message"], r["ResponseMetadata"]["HTTPStatusCode"]


def test_create_role_trusting_a_role_that_does_not_exist_names_the_principal(
    iam_s3_lab: IamS3Lab,
):
    iam = iam_s3_lab.client("iam")
    with pytest.raises(ClientError) as exc:
        iam.create_role(
            RoleName="TrustsAGhost", AssumeRolePolicyDocument=trust_naming(MISSING_ROLE)
        )
    assert error_of(exc) == (
        "MalformedPolicyDocument",
        f'Invalid principal in policy: "AWS":"{MISSING_ROLE}"',
        400,
    )
    with pytest.raises(ClientError) as exc:
        iam.get_role(RoleName="TrustsAGhost")
    assert error_of(exc)[0] == "NoSuchEntity"


def test_update_assume_role_policy_to_a_role_that_does_not_exist_is_refused_and_kept(
    iam_s3_lab: IamS3Lab,
):
    iam = iam_s3_lab.client("iam")
    before = iam.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    with pytest.raises(ClientError) as exc:
        iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=trust_naming(MISSING_ROLE))
    assert error_of(exc) == (
        "MalformedPolicyDocument",
        f'Invalid principal in policy: "AWS":"{MISSING_ROLE}"',
        400,
    )
    assert iam.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"] == before


def test_a_trust_policy_naming_an_existing_role_or_the_account_is_stored(iam_s3_lab: IamS3Lab):
    iam = iam_s3_lab.client("iam")
    node_arn = iam.get_role(RoleName=NODE_ROLE_NAME)["Role"]["Arn"]
    for name, principal in (
        ("TrustsTheNode", node_arn),
        ("TrustsTheAccount", f"arn:aws:iam::{ACCOUNT_ID}:root"),
    ):
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust_naming(principal))
        stored = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        assert stored["Statement"][0]["Principal"] == {"AWS": principal}
        iam.delete_role(RoleName=name)


def test_a_role_that_trusted_itself_before_it_existed_is_refused(iam_s3_lab: IamS3Lab):
    # IAM resolves the principal when the policy is saved: at CreateRole the role is not there.
    own = f"arn:aws:iam::{ACCOUNT_ID}:role/SelfTrusting"
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam").create_role(
            RoleName="SelfTrusting", AssumeRolePolicyDocument=trust_naming(own)
        )
    assert error_of(exc)[1] == f'Invalid principal in policy: "AWS":"{own}"'


@pytest.mark.parametrize("element", ["Principal", "NotPrincipal"])
def test_a_permission_policy_with_a_principal_is_refused_in_iams_words(
    iam_s3_lab: IamS3Lab, element: str
):
    doc = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", element: {"AWS": "*"}, "Action": "s3:GetObject", "Resource": "*"}
        ],
    }
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam").put_role_policy(
            RoleName=ROLE_NAME, PolicyName="with-principal", PolicyDocument=json.dumps(doc)
        )
    assert error_of(exc) == (
        "MalformedPolicyDocument",
        "Policy document should not specify a principal.",
        400,
    )


@pytest.mark.parametrize(
    ("call", "document", "message"),
    [
        (
            "put_role_policy",
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]},
            "Policy statement must contain resources.",
        ),
        (
            "put_role_policy",
            {"Version": "2012-10-17", "Statement": [{"Action": "s3:*", "Resource": "*"}]},
            "Missing required field Effect",
        ),
        (
            "update_assume_role_policy",
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT_ID}:root"},
                        "Action": "sts:AssumeRole",
                        "Resource": "*",
                    }
                ],
            },
            "Has prohibited field Resource",
        ),
        ("update_assume_role_policy", "{not json", "This policy contains invalid Json"),
    ],
    ids=["no-resource", "no-effect", "resource-in-trust", "invalid-json"],
)
def test_malformed_policy_messages_are_iams_text_alone(
    iam_s3_lab: IamS3Lab, call: str, document: object, message: str
):
    # Where the fault is and why ("Statement[0]", the parser's detail) is the lab's
    # explanation: it does not travel in IAM's message.
    text = document if isinstance(document, str) else json.dumps(document)
    iam = iam_s3_lab.client("iam")
    with pytest.raises(ClientError) as exc:
        if call == "put_role_policy":
            iam.put_role_policy(RoleName=ROLE_NAME, PolicyName="p", PolicyDocument=text)
        else:
            iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=text)
    code, wire, status = error_of(exc)
    assert (code, wire, status) == ("MalformedPolicyDocument", message, 400)
    assert not re.search(r"Statement\[|\(|stand-in|lab", wire)


def test_the_aws_cli_prints_iams_text_for_a_trust_policy_naming_a_missing_role(
    iam_s3_lab: IamS3Lab, tmp_path: Path
):
    admin = iam_s3_lab.admin
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(tmp_path),
        "AWS_ACCESS_KEY_ID": admin.access_key_id,
        "AWS_SECRET_ACCESS_KEY": admin.secret_access_key,
        "AWS_ENDPOINT_URL_IAM": iam_s3_lab.iam_url,
        "AWS_CA_BUNDLE": str(iam_s3_lab.ca_file),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }
    args = ["iam", "update-assume-role-policy", "--role-name", ROLE_NAME]
    done = subprocess.run(
        [str(AWS_CLI), *args, "--policy-document", trust_naming(MISSING_ROLE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert done.stderr.strip() == (
        "An error occurred (MalformedPolicyDocument) when calling the UpdateAssumeRolePolicy "
        f'operation: Invalid principal in policy: "AWS":"{MISSING_ROLE}"'
    )
