"""The IAM stand-in, driven by boto3's real ``iam`` client and by its pure operations."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from iam_s3_fixtures import ISSUER, IamS3Lab, iam_s3_lab_fixture, raw_request, scratch_lab_fixture  # noqa: F401 - fixtures

from irsa_lab.aws import iam as iam_api
from irsa_lab.aws.arns import irsa_trust_policy
from irsa_lab.aws.errors import AwsError
from irsa_lab.aws.managed import AWS_MANAGED_POLICIES
from irsa_lab.aws.model import Account
from irsa_lab.aws.policy import evaluate, oidc_trust_context
from irsa_lab.aws.scenario import seed_default
from irsa_lab.constants import (
    EKS_OIDC_THUMBPRINT,
    NODE_ROLE_MANAGED_POLICY_ARNS,
    NODE_ROLE_NAME,
    ROLE_NAME,
    S3_READ_ONLY_POLICY_ARN,
)

HOST_PATH = ISSUER.removeprefix("https://")
PROVIDER_ARN = f"arn:aws:iam::123456789012:oidc-provider/{HOST_PATH}"
READ_BUCKET = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}],
}


def code_of(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def irsa_claims(sa: str = "s3-readonly-sa", ns: str = "default") -> dict[str, object]:
    return {"iss": ISSUER, "sub": f"system:serviceaccount:{ns}:{sa}", "aud": ["sts.amazonaws.com"]}


# --- the seeded scenario, read back through boto3 ---------------------------------------
def test_get_role_returns_the_seeded_irsa_trust_policy_as_a_dict(iam_s3_lab: IamS3Lab):
    role = iam_s3_lab.client("iam").get_role(RoleName=ROLE_NAME)["Role"]
    assert role["Arn"] == f"arn:aws:iam::123456789012:role/{ROLE_NAME}"
    assert role["RoleId"].startswith("AROA") and len(role["RoleId"]) == 21
    assert role["AssumeRolePolicyDocument"] == irsa_trust_policy(PROVIDER_ARN, ISSUER)


def test_the_seeded_roles_carry_their_managed_policies(iam_s3_lab: IamS3Lab):
    iam = iam_s3_lab.client("iam")
    pod = iam.list_attached_role_policies(RoleName=ROLE_NAME)["AttachedPolicies"]
    assert pod == [{"PolicyName": "AmazonS3ReadOnlyAccess", "PolicyArn": S3_READ_ONLY_POLICY_ARN}]
    node = iam.list_attached_role_policies(RoleName=NODE_ROLE_NAME)["AttachedPolicies"]
    assert [p["PolicyArn"] for p in node] == list(NODE_ROLE_MANAGED_POLICY_ARNS)


def test_get_policy_and_version_show_the_real_s3_read_only_document(iam_s3_lab: IamS3Lab):
    iam = iam_s3_lab.client("iam")
    policy = iam.get_policy(PolicyArn=S3_READ_ONLY_POLICY_ARN)["Policy"]
    assert policy["PolicyId"] == "ANPAIZTJ4DXE7G6AGAE6M"
    assert policy["DefaultVersionId"] == "v3"
    assert policy["AttachmentCount"] == 1
    version = iam.get_policy_version(PolicyArn=S3_READ_ONLY_POLICY_ARN, VersionId="v3")
    assert (
        version["PolicyVersion"]["Document"]
        == AWS_MANAGED_POLICIES[S3_READ_ONLY_POLICY_ARN].document
    )
    assert "s3:Get*" in version["PolicyVersion"]["Document"]["Statement"][0]["Action"]
    with pytest.raises(ClientError) as exc:
        iam.get_policy_version(PolicyArn=S3_READ_ONLY_POLICY_ARN, VersionId="v1")
    assert code_of(exc) == "NoSuchEntity"


def test_the_oidc_provider_is_registered_with_the_sts_audience_and_a_thumbprint(
    iam_s3_lab: IamS3Lab,
):
    iam = iam_s3_lab.client("iam")
    arns = [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
    assert arns == [PROVIDER_ARN]
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=PROVIDER_ARN)
    assert provider["Url"] == HOST_PATH
    assert provider["ClientIDList"] == ["sts.amazonaws.com"]
    assert provider["ThumbprintList"] == [EKS_OIDC_THUMBPRINT]


# --- a role's life cycle ----------------------------------------------------------------
def test_a_role_goes_through_its_whole_life_cycle_with_boto3(iam_s3_lab: IamS3Lab):
    iam = iam_s3_lab.client("iam")
    trust = irsa_trust_policy(PROVIDER_ARN, ISSUER, service_account="other-sa")
    created = iam.create_role(
        RoleName="LifeCycleRole",
        AssumeRolePolicyDocument=json.dumps(trust),
        Description="made by a test",
        Tags=[{"Key": "team", "Value": "lab"}],
    )["Role"]
    assert created["AssumeRolePolicyDocument"] == trust
    assert iam.get_role(RoleName="LifeCycleRole")["Role"]["Tags"] == [
        {"Key": "team", "Value": "lab"}
    ]

    iam.update_role(RoleName="LifeCycleRole", MaxSessionDuration=7200, Description="longer")
    role = iam.get_role(RoleName="LifeCycleRole")["Role"]
    assert (role["MaxSessionDuration"], role["Description"]) == (7200, "longer")

    iam.put_role_policy(
        RoleName="LifeCycleRole", PolicyName="read-b", PolicyDocument=json.dumps(READ_BUCKET)
    )
    assert iam.list_role_policies(RoleName="LifeCycleRole")["PolicyNames"] == ["read-b"]
    got = iam.get_role_policy(RoleName="LifeCycleRole", PolicyName="read-b")
    assert got["PolicyDocument"] == READ_BUCKET

    iam.attach_role_policy(RoleName="LifeCycleRole", PolicyArn=S3_READ_ONLY_POLICY_ARN)
    with pytest.raises(ClientError) as exc:
        iam.delete_role(RoleName="LifeCycleRole")
    assert code_of(exc) == "DeleteConflict"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409

    iam.detach_role_policy(RoleName="LifeCycleRole", PolicyArn=S3_READ_ONLY_POLICY_ARN)
    with pytest.raises(ClientError) as exc:
        iam.delete_role(RoleName="LifeCycleRole")
    assert (
        exc.value.response["Error"]["Message"]
        == "Cannot delete entity, must delete policies first."
    )
    iam.delete_role_policy(RoleName="LifeCycleRole", PolicyName="read-b")
    iam.delete_role(RoleName="LifeCycleRole")
    names = [r["RoleName"] for r in iam.list_roles()["Roles"]]
    assert "LifeCycleRole" not in names and ROLE_NAME in names


def test_list_roles_pages_with_marker_and_the_boto3_paginator(iam_s3_lab: IamS3Lab):
    iam = iam_s3_lab.client("iam")
    first = iam.list_roles(MaxItems=1)
    assert first["IsTruncated"] is True and len(first["Roles"]) == 1
    pages = iam.get_paginator("list_roles").paginate(PaginationConfig={"PageSize": 1})
    names = [r["RoleName"] for page in pages for r in page["Roles"]]
    assert sorted(names, key=str.lower) == names and {ROLE_NAME, NODE_ROLE_NAME} <= set(names)


def test_an_oidc_provider_can_be_created_changed_and_deleted(iam_s3_lab: IamS3Lab):
    iam = iam_s3_lab.client("iam")
    url = "https://oidc.eks.eu-west-1.amazonaws.com/id/FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
    arn = iam.create_open_id_connect_provider(
        Url=url, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["A" * 40]
    )["OpenIDConnectProviderArn"]
    assert arn.endswith(":oidc-provider/" + url.removeprefix("https://"))
    with pytest.raises(ClientError) as exc:
        iam.create_open_id_connect_provider(Url=url, ClientIDList=["sts.amazonaws.com"])
    assert code_of(exc) == "EntityAlreadyExists"
    assert exc.value.response["Error"]["Message"] == f"Provider with url {url} already exists."

    iam.add_client_id_to_open_id_connect_provider(OpenIDConnectProviderArn=arn, ClientID="other")
    iam.remove_client_id_from_open_id_connect_provider(
        OpenIDConnectProviderArn=arn, ClientID="sts.amazonaws.com"
    )
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert provider["ClientIDList"] == ["other"] and provider["ThumbprintList"] == ["a" * 40]
    iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    with pytest.raises(ClientError) as exc:
        iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    assert code_of(exc) == "NoSuchEntity"


# --- errors -------------------------------------------------------------------------------
def test_a_missing_role_is_no_such_entity_with_iams_message(iam_s3_lab: IamS3Lab):
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam").get_role(RoleName="NoSuchRole")
    assert exc.value.response["Error"] == {
        "Type": "Sender",
        "Code": "NoSuchEntity",
        "Message": "The role with name NoSuchRole cannot be found.",
    }
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def test_creating_an_existing_role_is_entity_already_exists_even_in_another_case(
    iam_s3_lab: IamS3Lab,
):
    iam = iam_s3_lab.client("iam")
    doc = json.dumps(irsa_trust_policy(PROVIDER_ARN, ISSUER))
    with pytest.raises(ClientError) as exc:
        iam.create_role(RoleName=ROLE_NAME.lower(), AssumeRolePolicyDocument=doc)
    assert code_of(exc) == "EntityAlreadyExists"
    assert (
        exc.value.response["Error"]["Message"]
        == f"Role with name {ROLE_NAME.lower()} already exists."
    )


@pytest.mark.parametrize(
    "document",
    [
        "{not json",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity"}],
            }
        ),
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": PROVIDER_ARN},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Resource": "*",
                    }
                ],
            }
        ),
    ],
    ids=["invalid-json", "no-principal", "resource-in-trust-policy"],
)
def test_a_malformed_trust_policy_is_refused_with_malformed_policy_document(
    iam_s3_lab: IamS3Lab, document: str
):
    iam = iam_s3_lab.client("iam")
    with pytest.raises(ClientError) as exc:
        iam.create_role(RoleName="MalformedTrust", AssumeRolePolicyDocument=document)
    assert code_of(exc) == "MalformedPolicyDocument"
    with pytest.raises(ClientError) as exc:
        iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=document)
    assert code_of(exc) == "MalformedPolicyDocument"
    assert "MalformedTrust" not in iam_s3_lab.account.roles


def test_a_permission_policy_without_resource_is_malformed(iam_s3_lab: IamS3Lab):
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam").put_role_policy(
            RoleName=ROLE_NAME, PolicyName="p", PolicyDocument=json.dumps(doc)
        )
    assert code_of(exc) == "MalformedPolicyDocument"


def test_invalid_names_and_durations_are_validation_errors(iam_s3_lab: IamS3Lab):
    iam = iam_s3_lab.client("iam")
    with pytest.raises(ClientError) as exc:
        iam.get_role(RoleName="has space")
    assert code_of(exc) == "ValidationError"
    assert "at 'roleName' failed to satisfy constraint" in exc.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as exc:
        iam.update_role(RoleName=ROLE_NAME, MaxSessionDuration=50000)
    assert code_of(exc) == "ValidationError"
    assert exc.value.response["Error"]["Message"].endswith("less than or equal to 43200")


def test_an_oidc_url_without_https_is_invalid_input(iam_s3_lab: IamS3Lab):
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam").create_open_id_connect_provider(
            Url="http://issuer.example", ClientIDList=["sts.amazonaws.com"]
        )
    assert code_of(exc) == "InvalidInput"


def test_attaching_an_unknown_policy_is_no_such_entity(iam_s3_lab: IamS3Lab):
    arn = "arn:aws:iam::aws:policy/NoSuchPolicy"
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam").attach_role_policy(RoleName=ROLE_NAME, PolicyArn=arn)
    assert code_of(exc) == "NoSuchEntity"
    assert (
        exc.value.response["Error"]["Message"]
        == f"Policy {arn} does not exist or is not attachable."
    )


def test_a_trust_policy_over_2048_characters_is_limit_exceeded(iam_s3_lab: IamS3Lab):
    trust = irsa_trust_policy(PROVIDER_ARN, ISSUER)
    trust["Statement"] = trust["Statement"] * 8
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam").update_assume_role_policy(
            RoleName=ROLE_NAME, PolicyDocument=json.dumps(trust)
        )
    assert code_of(exc) == "LimitExceeded"
    assert exc.value.response["Error"]["Message"] == "Cannot exceed quota for ACLSizePerRole: 2048"


# --- who may call IAM -------------------------------------------------------------------------
def test_assumed_role_credentials_get_access_denied_naming_the_action(iam_s3_lab: IamS3Lab):
    cred = iam_s3_lab.assumed_role_credential()
    mark = iam_s3_lab.trace.mark()
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam", cred).get_role(RoleName=ROLE_NAME)
    assert code_of(exc) == "AccessDenied"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    message = exc.value.response["Error"]["Message"]
    assert message.startswith(f"User: {cred.arn} is not authorized to perform: iam:GetRole")
    event = iam_s3_lab.trace.since(mark)[-1]
    assert (event.source, event.target, event.call, event.outcome) == (
        "pod",
        "iam",
        "GetRole",
        "AccessDenied",
    )
    assert event.detail["decision"] == "denied"


def test_a_wrong_secret_is_signature_does_not_match_and_an_unknown_key_is_invalid(
    iam_s3_lab: IamS3Lab,
):
    admin = iam_s3_lab.admin
    from dataclasses import replace

    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam", replace(admin, secret_access_key="x" * 40)).list_roles()
    assert code_of(exc) == "SignatureDoesNotMatch"
    with pytest.raises(ClientError) as exc:
        iam_s3_lab.client("iam", replace(admin, access_key_id="AKIAUNKNOWNUNKNOWN00")).list_roles()
    assert code_of(exc) == "InvalidClientTokenId"


def test_an_unsigned_request_is_missing_authentication_token(iam_s3_lab: IamS3Lab):
    status, _, body = raw_request(
        iam_s3_lab, "iam", "POST", "/", b"Action=ListRoles&Version=2010-05-08", sign=False
    )
    assert status == 403
    assert ET.fromstring(body).findtext("{*}Error/{*}Code") == "MissingAuthenticationToken"  # noqa: S314 - the lab's own reply


def test_every_admin_call_is_recorded_in_the_trace(iam_s3_lab: IamS3Lab):
    mark = iam_s3_lab.trace.mark()
    iam_s3_lab.client("iam").list_role_policies(RoleName=ROLE_NAME)
    (event,) = iam_s3_lab.trace.since(mark)
    assert (event.source, event.target, event.call, event.outcome) == (
        "learner",
        "iam",
        "ListRolePolicies",
        "ok",
    )
    assert event.detail["caller"] == iam_s3_lab.admin.arn


# --- trust policy changes change the verdict ----------------------------------------------------
def test_update_assume_role_policy_changes_what_the_evaluator_says_for_irsa(iam_s3_lab: IamS3Lab):
    account = iam_s3_lab.account
    iam = iam_s3_lab.client("iam")
    ctx = oidc_trust_context(PROVIDER_ARN, irsa_claims())

    def verdict() -> bool:
        return evaluate([("trust", account.roles[ROLE_NAME].trust_policy)], ctx).allowed

    original = iam.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"]
    assert verdict() is True
    try:
        wrong_sa = irsa_trust_policy(PROVIDER_ARN, ISSUER, service_account="someone-else")
        iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(wrong_sa))
        assert verdict() is False
        assert iam.get_role(RoleName=ROLE_NAME)["Role"]["AssumeRolePolicyDocument"] == wrong_sa
    finally:
        iam.update_assume_role_policy(RoleName=ROLE_NAME, PolicyDocument=json.dumps(original))
    assert verdict() is True


# --- the pure operations ---------------------------------------------------------------------------
def test_pure_operations_work_without_a_server():
    account = Account()
    seed_default(account, issuer=ISSUER)
    role = iam_api.create_role(
        account,
        role_name="Pure",
        assume_role_policy_document=json.dumps(irsa_trust_policy(PROVIDER_ARN, ISSUER)),
    )
    assert role.arn == "arn:aws:iam::123456789012:role/Pure"
    iam_api.attach_role_policy(account, "Pure", S3_READ_ONLY_POLICY_ARN)
    iam_api.attach_role_policy(account, "Pure", S3_READ_ONLY_POLICY_ARN)  # twice is a no-op
    assert account.policies_of_role("Pure")[0][0] == S3_READ_ONLY_POLICY_ARN
    with pytest.raises(AwsError) as exc:
        iam_api.delete_role(account, "Pure")
    assert exc.value.code == "DeleteConflict"


def test_seeding_twice_keeps_the_same_admin_keys():
    account = Account()
    first = seed_default(account, issuer=ISSUER)
    second = seed_default(account, issuer=ISSUER)
    assert first.admin == second.admin
    assert first.admin.access_key_id.startswith("AKIA") and len(first.admin.secret_access_key) == 40
    assert first.admin.arn == "arn:aws:iam::123456789012:user/admin"


# --- fuzz ----------------------------------------------------------------------------------------------
_PARAM_NAMES = [
    "RoleName",
    "AssumeRolePolicyDocument",
    "PolicyDocument",
    "PolicyName",
    "PolicyArn",
    "Path",
    "Description",
    "MaxSessionDuration",
    "Marker",
    "MaxItems",
    "PathPrefix",
    "VersionId",
    "Url",
    "ClientIDList.member.1",
    "ThumbprintList.member.1",
    "OpenIDConnectProviderArn",
    "ClientID",
    "Tags.member.1.Key",
    "Tags.member.1.Value",
    "Version",
]
_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        [
            ROLE_NAME,
            NODE_ROLE_NAME,
            S3_READ_ONLY_POLICY_ARN,
            PROVIDER_ARN,
            "v3",
            "3600",
            "0",
            "-1",
            "{}",
            "https://x",
        ]
    ),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    action=st.one_of(st.sampled_from(sorted(iam_api.ACTIONS)), st.text(max_size=20)),
    params=st.dictionaries(st.sampled_from(_PARAM_NAMES), _values, max_size=6),
    junk=st.binary(max_size=40),
    signed=st.booleans(),
)
def test_random_iam_requests_never_get_a_5xx_and_always_get_parseable_xml(
    scratch_lab: IamS3Lab, action: str, params: dict[str, str], junk: bytes, signed: bool
):
    body = urlencode({"Action": action, **params}).encode() + (b"&" + junk if junk else b"")
    status, headers, payload = raw_request(
        scratch_lab,
        "iam",
        "POST",
        "/",
        body,
        {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
        sign=signed,
    )
    assert status < 500
    root = ET.fromstring(payload)  # noqa: S314 - the lab's own reply
    if status >= 400:
        assert root.tag.endswith("ErrorResponse")
        assert root.findtext("{*}Error/{*}Code")
    assert headers["x-amzn-requestid"]
