"""IAM's unique ids and access key ids, as boto3 receives them: AWS's prefixes and
lengths, written in the base32 alphabet (A-Z, 2-7) as real ones are."""

# ruff: noqa: F811  (pytest fixtures are imported, then named as parameters)

from __future__ import annotations

import json
import re

import boto3
from aws_fixtures import StsLab, sts_lab, sts_servers  # noqa: F401 - fixtures
from iam_s3_fixtures import IamS3Lab, iam_s3_lab_fixture  # noqa: F401 - fixtures

from irsa_lab.constants import REGION
from irsa_lab.ids import Ids

ROLE_ID = re.compile(r"AROA[A-Z2-7]{17}")
USER_ID = re.compile(r"AIDA[A-Z2-7]{17}")
TEMPORARY_KEY = re.compile(r"ASIA[A-Z2-7]{16}")
LONG_TERM_KEY = re.compile(r"AKIA[A-Z2-7]{16}")
TRUST = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "*"}
        ],
    }
)


def test_role_ids_are_aroa_and_seventeen_base32_characters(iam_s3_lab: IamS3Lab):
    iam = iam_s3_lab.client("iam")
    names = [f"IdsRole{i}" for i in range(12)]
    try:
        made = [iam.create_role(RoleName=n, AssumeRolePolicyDocument=TRUST) for n in names]
        ids = [m["Role"]["RoleId"] for m in made]
        ids += [r["RoleId"] for r in iam.list_roles()["Roles"]]
    finally:
        for n in names:
            iam.delete_role(RoleName=n)
    assert [i for i in ids if not ROLE_ID.fullmatch(i)] == []


def test_sts_keys_and_assumed_role_ids_are_base32(sts_lab: StsLab):
    results = [sts_lab.assume(RoleSessionName=f"s{i}") for i in range(8)]
    keys = [r["Credentials"]["AccessKeyId"] for r in results]
    assert [k for k in keys if not TEMPORARY_KEY.fullmatch(k)] == []
    role_ids = {r["AssumedRoleUser"]["AssumedRoleId"].split(":")[0] for r in results}
    assert len(role_ids) == 1 and ROLE_ID.fullmatch(role_ids.pop())


def test_the_administrators_user_id_and_key_are_aida_and_akia(sts_lab: StsLab):
    admin = sts_lab.scenario.admin
    sts = boto3.session.Session(region_name=REGION).client(
        "sts",
        endpoint_url=sts_lab.sts_url,
        verify=str(sts_lab.ca_file),
        aws_access_key_id=admin.access_key_id,
        aws_secret_access_key=admin.secret_access_key,
    )
    try:
        assert USER_ID.fullmatch(sts.get_caller_identity()["UserId"])
    finally:
        sts.close()
    assert LONG_TERM_KEY.fullmatch(admin.access_key_id)


def test_a_seeded_source_gives_the_same_ids_every_time():
    def draw(ids: Ids) -> list[str]:
        return [ids.aws_unique_id("AROA"), ids.access_key_id("ASIA"), ids.uuid4()]

    assert draw(Ids(seed=3)) == draw(Ids(seed=3))
    assert draw(Ids(seed=3)) != draw(Ids(seed=4))
