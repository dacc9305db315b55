"""The EC2 stand-in, through real boto3 and the aws CLI, against a running embedded stack.

``DescribeInstances`` shows the node instance and its metadata options;
``ModifyInstanceMetadataOptions`` changes what the IMDS enforces (one truth with the
lab's control); errors come back in EC2's own document and codes.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from aws_fixtures import admin_cli_env
from botocore.exceptions import ClientError

from irsa_lab import constants as C
from irsa_lab.aws.ec2 import EC2_NS, ip_of_dns_name
from irsa_lab.aws.imds import node_credentials
from irsa_lab.session import Lab, LabError
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock

AWS_CLI = Path(sys.executable).with_name("aws")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLab]:
    state = tmp_path_factory.mktemp("ec2-lab")
    with EmbeddedLab(state_dir=state, seed=DEFAULT_SEED, clock=lab_clock(True)) as lab:
        yield lab


@pytest.fixture
def lab(stack: EmbeddedLab) -> Iterator[Lab]:
    the_lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    before = (stack.imds_settings.http_tokens, stack.imds_settings.hop_limit)
    yield the_lab
    s = stack.imds_settings
    s.http_tokens, s.hop_limit = before
    s.http_endpoint = "enabled"


def _code(err: pytest.ExceptionInfo[ClientError]) -> str:
    return str(err.value.response["Error"]["Code"])


def test_endpoints_json_names_the_ec2_endpoint(stack: EmbeddedLab) -> None:
    written = json.loads((stack.state_dir / "endpoints.json").read_text())
    assert written["ec2"].startswith("https://127.0.0.1:")
    assert stack.endpoints.aws_env()["AWS_ENDPOINT_URL_EC2"] == written["ec2"]


def test_describe_instances_shows_the_node_and_its_metadata_options(lab: Lab) -> None:
    answer = lab.aws_client("ec2").describe_instances()
    [reservation] = answer["Reservations"]
    [instance] = reservation["Instances"]
    assert reservation["OwnerId"] == C.ACCOUNT_ID
    assert instance["InstanceId"] == C.NODE_INSTANCE_ID
    assert instance["PrivateDnsName"] == C.NODE_NAME
    assert instance["PrivateIpAddress"] == ip_of_dns_name(C.NODE_NAME) == "192.168.12.34"
    assert instance["State"] == {"Code": 16, "Name": "running"}
    assert instance["IamInstanceProfile"]["Arn"].endswith(f":instance-profile/{C.NODE_ROLE_NAME}")
    assert instance["MetadataOptions"] == {
        "State": "applied",
        "HttpTokens": "optional",
        "HttpPutResponseHopLimit": 2,
        "HttpEndpoint": "enabled",
        "HttpProtocolIpv6": "disabled",
        "InstanceMetadataTags": "disabled",
    }


def test_describe_instances_by_id_and_by_filter(lab: Lab) -> None:
    ec2 = lab.aws_client("ec2")
    by_id = ec2.describe_instances(InstanceIds=[C.NODE_INSTANCE_ID])
    assert by_id["Reservations"][0]["Instances"][0]["InstanceId"] == C.NODE_INSTANCE_ID
    running = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["running"]}]
    )
    assert len(running["Reservations"]) == 1
    none = ec2.describe_instances(
        Filters=[{"Name": "metadata-options.http-tokens", "Values": ["required"]}]
    )
    assert none["Reservations"] == []
    with pytest.raises(ClientError) as bad_filter:
        ec2.describe_instances(Filters=[{"Name": "no-such-filter", "Values": ["x"]}])
    assert _code(bad_filter) == "InvalidParameterValue"


def test_modify_instance_metadata_options_changes_what_the_imds_enforces(
    lab: Lab, stack: EmbeddedLab
) -> None:
    ec2 = lab.aws_client("ec2")
    imds = stack.endpoints.imds
    # IMDSv1 works while HttpTokens is optional...
    with urllib.request.urlopen(f"{imds}/latest/meta-data/instance-id", timeout=5) as resp:  # noqa: S310 - the lab's IMDS
        assert resp.read().decode() == C.NODE_INSTANCE_ID

    answer = ec2.modify_instance_metadata_options(
        InstanceId=C.NODE_INSTANCE_ID, HttpTokens="required", HttpPutResponseHopLimit=1
    )
    assert answer["InstanceId"] == C.NODE_INSTANCE_ID
    assert answer["InstanceMetadataOptions"]["State"] == "pending"
    assert answer["InstanceMetadataOptions"]["HttpTokens"] == "required"

    # ...and is refused (401) once it is required: the same settings the IMDS reads.
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{imds}/latest/meta-data/instance-id", timeout=5)  # noqa: S310
    assert refused.value.code == 401
    refused.value.close()
    assert lab.control.metadata_options() == {
        "HttpTokens": "required",
        "HttpPutResponseHopLimit": 1,
    }
    options = ec2.describe_instances()["Reservations"][0]["Instances"][0]["MetadataOptions"]
    assert (options["State"], options["HttpTokens"], options["HttpPutResponseHopLimit"]) == (
        "applied",
        "required",
        1,
    )


def test_the_control_and_ec2_share_one_truth(lab: Lab) -> None:
    lab.control.modify_metadata_options(http_tokens="required", hop_limit=3)
    options = lab.aws_client("ec2").describe_instances()["Reservations"][0]["Instances"][0][
        "MetadataOptions"
    ]
    assert (options["HttpTokens"], options["HttpPutResponseHopLimit"]) == ("required", 3)


def test_a_disabled_http_endpoint_turns_the_imds_off_with_403(lab: Lab, stack: EmbeddedLab) -> None:
    lab.aws_client("ec2").modify_instance_metadata_options(
        InstanceId=C.NODE_INSTANCE_ID, HttpEndpoint="disabled"
    )
    request = urllib.request.Request(  # noqa: S310 - the lab's IMDS
        f"{stack.endpoints.imds}/latest/api/token",
        method="PUT",
        headers={"x-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    with pytest.raises(urllib.error.HTTPError) as off:
        urllib.request.urlopen(request, timeout=5)  # noqa: S310 - the lab's IMDS
    assert off.value.code == 403
    off.value.close()


@pytest.mark.parametrize(
    ("instance_id", "code", "message"),
    [
        (
            "i-0123456789abcdef0",
            "InvalidInstanceID.NotFound",
            "The instance ID 'i-0123456789abcdef0' does not exist",
        ),
        ("node-1", "InvalidInstanceID.Malformed", 'Invalid id: "node-1"'),
    ],
)
def test_an_unknown_or_malformed_instance_id_is_refused_as_ec2_refuses_it(
    lab: Lab, instance_id: str, code: str, message: str
) -> None:
    ec2 = lab.aws_client("ec2")
    with pytest.raises(ClientError) as modify:
        ec2.modify_instance_metadata_options(InstanceId=instance_id, HttpPutResponseHopLimit=1)
    assert (_code(modify), modify.value.response["Error"]["Message"]) == (code, message)
    assert modify.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(ClientError) as describe:
        ec2.describe_instances(InstanceIds=[instance_id])
    assert _code(describe) == code
    assert lab.control.metadata_options()["HttpPutResponseHopLimit"] == 2  # unchanged


def test_an_out_of_range_hop_limit_is_invalid_parameter_value(lab: Lab) -> None:
    with pytest.raises(ClientError) as err:
        lab.aws_client("ec2").modify_instance_metadata_options(
            InstanceId=C.NODE_INSTANCE_ID, HttpPutResponseHopLimit=65
        )
    assert _code(err) == "InvalidParameterValue"


def test_errors_use_ec2s_response_document(stack: EmbeddedLab) -> None:
    """An unsigned call: ``<Response><Errors><Error>`` with ``RequestID``, EC2's shape."""
    request = urllib.request.Request(  # noqa: S310 - https, the lab
        stack.endpoints.ec2,
        data=b"Action=DescribeInstances&Version=2016-11-15",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    ctx = ssl.create_default_context(cafile=stack.endpoints.ca_bundle)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=ctx, timeout=5)  # noqa: S310 - https, the lab
    root = ET.fromstring(refused.value.read())  # noqa: S314 - the lab's own reply
    refused.value.close()
    assert root.tag == "Response"
    assert root.findtext("Errors/Error/Code") == "AuthFailure"
    assert root.findtext("RequestID")
    assert refused.value.code == 401


def test_a_success_document_is_in_the_ec2_namespace_without_a_result_wrapper(
    stack: EmbeddedLab, lab: Lab
) -> None:
    ec2 = lab.aws_client("ec2")
    seen: list[bytes] = []
    ec2.meta.events.register(
        "after-call.ec2.DescribeInstances", lambda **kw: seen.append(kw["http_response"].content)
    )
    ec2.describe_instances()
    root = ET.fromstring(seen[0])  # noqa: S314 - the lab's own reply
    assert root.tag == f"{{{EC2_NS}}}DescribeInstancesResponse"
    assert [child.tag.split("}")[1] for child in root] == ["requestId", "reservationSet"]


def test_an_unknown_access_key_is_auth_failure(stack: EmbeddedLab) -> None:
    stranger = boto3.session.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="x" * 40,
        region_name=C.REGION,
    ).client("ec2", endpoint_url=stack.endpoints.ec2, verify=stack.endpoints.ca_bundle)
    with pytest.raises(ClientError) as err:
        stranger.describe_instances()
    assert _code(err) == "AuthFailure"


def test_the_node_role_may_describe_but_not_modify_the_instance(
    lab: Lab, stack: EmbeddedLab
) -> None:
    """AmazonEKSWorkerNodePolicy allows ec2:DescribeInstances only: a pod that borrowed
    the node's credentials cannot lift the IMDS protections itself."""
    cred = node_credentials(
        stack.account, C.NODE_ROLE_NAME, wall_clock=stack.wall_clock, ids=stack.ids
    )
    node = boto3.session.Session(
        aws_access_key_id=cred.access_key_id,
        aws_secret_access_key=cred.secret_access_key,
        aws_session_token=cred.session_token,
        region_name=C.REGION,
    ).client("ec2", endpoint_url=stack.endpoints.ec2, verify=stack.endpoints.ca_bundle)
    assert node.describe_instances()["Reservations"][0]["Instances"][0]["InstanceId"] == (
        C.NODE_INSTANCE_ID
    )
    with pytest.raises(ClientError) as err:
        node.modify_instance_metadata_options(InstanceId=C.NODE_INSTANCE_ID, HttpTokens="optional")
    assert _code(err) == "UnauthorizedOperation"
    assert err.value.response["Error"]["Message"].startswith(
        "You are not authorized to perform this operation."
    )
    assert "ec2:ModifyInstanceMetadataOptions" in err.value.response["Error"]["Message"]


def test_an_unknown_service_name_is_a_lab_error_naming_the_known_ones(lab: Lab) -> None:
    with pytest.raises(LabError, match="it has: sts, iam, s3, ec2, eks, eks-auth"):
        lab.aws_client("lambda")


def test_the_aws_cli_describes_the_instance_and_reports_errors(
    stack: EmbeddedLab, tmp_path: Path
) -> None:
    env = admin_cli_env(stack.endpoints, tmp_path)
    query = "Reservations[].Instances[].MetadataOptions"
    done = subprocess.run(
        [str(AWS_CLI), "ec2", "describe-instances", "--query", query, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    [options] = json.loads(done.stdout)
    assert options["HttpTokens"] == "optional" and options["HttpPutResponseHopLimit"] == 2
    missing = subprocess.run(
        [
            str(AWS_CLI),
            "ec2",
            "modify-instance-metadata-options",
            "--instance-id",
            "i-0123456789abcdef0",
            "--http-put-response-hop-limit",
            "1",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode != 0
    assert (
        "An error occurred (InvalidInstanceID.NotFound) when calling the "
        "ModifyInstanceMetadataOptions operation: The instance ID 'i-0123456789abcdef0' "
        "does not exist"
    ) in missing.stderr


def test_a_dry_run_answers_dry_run_operation_and_changes_nothing(lab: Lab) -> None:
    with pytest.raises(ClientError) as err:
        lab.aws_client("ec2").modify_instance_metadata_options(
            InstanceId=C.NODE_INSTANCE_ID, HttpTokens="required", DryRun=True
        )
    assert _code(err) == "DryRunOperation"
    assert lab.control.metadata_options()["HttpTokens"] == "optional"


def test_pods_and_the_kind_exec_get_aws_endpoint_url_ec2_when_the_lab_has_ec2(
    stack: EmbeddedLab,
) -> None:
    from irsa_lab.in_pod import pod_aws_env
    from irsa_lab.kind.exec import pod_env

    ep = stack.endpoints.as_dict()
    assert pod_aws_env(ep)["AWS_ENDPOINT_URL_EC2"] == ep["ec2"]
    older = {k: v for k, v in ep.items() if k != "ec2"}  # an endpoints.json from before EC2
    assert "AWS_ENDPOINT_URL_EC2" not in pod_aws_env(older)
    kind = {"sts_pod": "https://172.18.0.1:1", "ec2_pod": "https://172.18.0.1:2"}
    assert pod_env(kind)["AWS_ENDPOINT_URL_EC2"] == "https://172.18.0.1:2"
