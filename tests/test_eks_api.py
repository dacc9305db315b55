"""The EKS API stand-in (Pod Identity associations, DescribeCluster), through real clients.

boto3's ``eks`` client and the aws CLI v1 against a running embedded stack: the wire is
rest-json as botocore's model describes it, the errors are EKS's codes and statuses
(docs/reference/pod-identity.md §1.4), and role sessions are judged by their policies.
"""

from __future__ import annotations

import base64
import json
import re
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_fixtures import admin_cli_env, cli_env
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from irsa_lab import constants as C
from irsa_lab.aws.arns import role_arn
from irsa_lab.aws.eks import trust as T
from irsa_lab.aws.imds import node_credentials
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock

AWS_CLI = Path(sys.executable).with_name("aws")
ROLE = "pi-app"
ROLE_ARN = role_arn(C.ACCOUNT_ID, ROLE)
ASSOCIATION_ID = r"a-[0-9a-z]{17}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLab]:
    state = tmp_path_factory.mktemp("eks-api-lab")
    with EmbeddedLab(state_dir=state, seed=DEFAULT_SEED, clock=lab_clock(True)) as lab:
        yield lab


@pytest.fixture(scope="module")
def the_lab(stack: EmbeddedLab) -> Lab:
    the_lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    the_lab.aws_client("iam").create_role(
        RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(T.pod_identity_trust_policy())
    )
    return the_lab


@pytest.fixture
def lab(the_lab: Lab, stack: EmbeddedLab) -> Iterator[Lab]:
    yield the_lab
    for association in stack.aws.associations.list():
        stack.aws.associations.delete(association.association_id)


@pytest.fixture
def eks(lab: Lab) -> Any:
    return lab.aws_client("eks")


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, str, int]:
    response = err.value.response
    return (
        str(response["Error"]["Code"]),
        str(response["Error"]["Message"]),
        int(response["ResponseMetadata"]["HTTPStatusCode"]),
    )


def _create(eks: Any, sa: str, namespace: str = "default", **more: Any) -> dict[str, Any]:
    answer = eks.create_pod_identity_association(
        clusterName=C.CLUSTER_NAME, namespace=namespace, serviceAccount=sa, roleArn=ROLE_ARN, **more
    )
    return dict(answer["association"])


def _node_client(stack: EmbeddedLab) -> Any:
    cred = node_credentials(
        stack.account, C.NODE_ROLE_NAME, wall_clock=stack.wall_clock, ids=stack.ids
    )
    return boto3.session.Session(
        aws_access_key_id=cred.access_key_id,
        aws_secret_access_key=cred.secret_access_key,
        aws_session_token=cred.session_token,
        region_name=C.REGION,
    ).client("eks", endpoint_url=stack.endpoints.eks, verify=stack.endpoints.ca_bundle)


def _signed(
    stack: EmbeddedLab, method: str, path: str, body: bytes = b""
) -> urllib.request.Request:
    """A request signed as botocore signs it, for what botocore would not send."""
    ep = stack.endpoints
    url = ep.eks + path
    request = AWSRequest(method=method, url=url, data=body, headers={})
    if body:
        request.headers["Content-Type"] = "application/json"
    creds = Credentials(ep.admin_access_key_id, ep.admin_secret_access_key)
    SigV4Auth(creds, "eks", C.REGION).add_auth(request)
    return urllib.request.Request(  # noqa: S310 - https, the lab
        url, data=body or None, method=method, headers=dict(request.headers.items())
    )


def _refused(
    stack: EmbeddedLab, request: urllib.request.Request
) -> tuple[int, dict[str, str], Any]:
    ctx = ssl.create_default_context(cafile=stack.endpoints.ca_bundle)
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, context=ctx, timeout=10)  # noqa: S310 - https, the lab
    body = json.loads(refused.value.read())
    headers = dict(refused.value.headers.items())
    refused.value.close()
    return refused.value.code, headers, body


def test_endpoints_json_and_the_environment_name_the_eks_endpoint(stack: EmbeddedLab) -> None:
    written = json.loads((stack.state_dir / "endpoints.json").read_text())
    assert written["eks"].startswith("https://127.0.0.1:")
    assert written["eks"] != written["eks_auth"]
    assert stack.endpoints.aws_env()["AWS_ENDPOINT_URL_EKS"] == written["eks"]


def test_create_describe_list_and_delete_an_association(eks: Any, stack: EmbeddedLab) -> None:
    created = _create(eks, "app-sa")
    association_id = created["associationId"]
    assert created["clusterName"] == C.CLUSTER_NAME
    assert (created["namespace"], created["serviceAccount"]) == ("default", "app-sa")
    assert created["roleArn"] == ROLE_ARN
    assert created["associationArn"] == (
        f"arn:aws:eks:{C.REGION}:{C.ACCOUNT_ID}:podidentityassociation/"
        f"{C.CLUSTER_NAME}/{association_id}"
    )
    assert created["tags"] == {} and created["disableSessionTags"] is False
    assert created["createdAt"] == created["modifiedAt"]
    assert re.fullmatch(ASSOCIATION_ID, association_id)

    described = eks.describe_pod_identity_association(
        clusterName=C.CLUSTER_NAME, associationId=association_id
    )["association"]
    assert described == created

    listed = eks.list_pod_identity_associations(clusterName=C.CLUSTER_NAME)["associations"]
    assert listed == [
        {
            "clusterName": C.CLUSTER_NAME,
            "namespace": "default",
            "serviceAccount": "app-sa",
            "associationArn": created["associationArn"],
            "associationId": association_id,
        }
    ]
    # The model behind the API is the one EKS Auth and the webhook read.
    assert stack.aws.associations.identities() == [("default", "app-sa")]

    deleted = eks.delete_pod_identity_association(
        clusterName=C.CLUSTER_NAME, associationId=association_id
    )["association"]
    assert deleted == created  # Delete answers the association as it was (§1.3)
    with pytest.raises(ClientError) as gone:
        eks.describe_pod_identity_association(
            clusterName=C.CLUSTER_NAME, associationId=association_id
        )
    code, message, status = _error(gone)
    assert (code, status) == ("ResourceNotFoundException", 404)
    assert association_id in message
    assert eks.list_pod_identity_associations(clusterName=C.CLUSTER_NAME)["associations"] == []


def test_list_filters_by_namespace_and_service_account(eks: Any) -> None:
    first = _create(eks, "one")
    second = _create(eks, "two")
    third = _create(eks, "one", namespace="team-b")

    def ids(**query: str) -> list[str]:
        answer = eks.list_pod_identity_associations(clusterName=C.CLUSTER_NAME, **query)
        return [a["associationId"] for a in answer["associations"]]

    assert ids() == [first["associationId"], second["associationId"], third["associationId"]]
    assert ids(namespace="default") == [first["associationId"], second["associationId"]]
    assert ids(serviceAccount="one") == [first["associationId"], third["associationId"]]
    assert ids(namespace="team-b", serviceAccount="one") == [third["associationId"]]
    assert ids(namespace="nowhere") == []


def test_max_results_pages_with_next_token_as_botocore_s_paginator_follows_it(eks: Any) -> None:
    made = [_create(eks, f"sa-{i}")["associationId"] for i in range(5)]
    page = eks.list_pod_identity_associations(clusterName=C.CLUSTER_NAME, maxResults=2)
    assert [a["associationId"] for a in page["associations"]] == made[:2]
    assert page["nextToken"]
    paginator = eks.get_paginator("list_pod_identity_associations")
    pages = list(paginator.paginate(clusterName=C.CLUSTER_NAME, PaginationConfig={"PageSize": 2}))
    assert [len(p["associations"]) for p in pages] == [2, 2, 1]
    assert [a["associationId"] for p in pages for a in p["associations"]] == made
    assert "nextToken" not in pages[-1]


def test_a_second_association_for_the_same_service_account_is_resource_in_use(eks: Any) -> None:
    first = _create(eks, "app-sa")
    with pytest.raises(ClientError) as again:
        _create(eks, "app-sa")
    assert _error(again) == (
        "ResourceInUseException",
        f"Association already exists: {first['associationId']}",
        409,
    )
    # Another namespace is another ServiceAccount.
    assert _create(eks, "app-sa", namespace="team-b")["namespace"] == "team-b"


@pytest.mark.parametrize(
    "role",
    [
        role_arn(C.ACCOUNT_ID, "no-such-role"),
        role_arn("999999999999", ROLE),  # another account's role
        "not-an-arn",
    ],
)
def test_a_role_that_does_not_exist_or_a_malformed_arn_is_invalid_parameter(
    eks: Any, stack: EmbeddedLab, role: str
) -> None:
    with pytest.raises(ClientError) as err:
        eks.create_pod_identity_association(
            clusterName=C.CLUSTER_NAME, namespace="default", serviceAccount="x", roleArn=role
        )
    assert _error(err) == (
        "InvalidParameterException",
        "Role provided in the request does not exist",
        400,
    )
    assert stack.aws.associations.list() == []


@pytest.mark.parametrize(
    ("name", "trust"),
    [
        ("pi-assume-only", T.pod_identity_trust_policy(tag_session=False)),
        (
            "pi-irsa-only",
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": f"arn:aws:iam::{C.ACCOUNT_ID}:oidc-provider/x"},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                    }
                ],
            },
        ),
    ],
)
def test_a_role_pod_identity_cannot_assume_and_tag_is_refused_at_create(
    eks: Any, lab: Lab, stack: EmbeddedLab, name: str, trust: dict[str, Any]
) -> None:
    iam = lab.aws_client("iam")
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))
    try:
        with pytest.raises(ClientError) as err:
            eks.create_pod_identity_association(
                clusterName=C.CLUSTER_NAME,
                namespace="default",
                serviceAccount="x",
                roleArn=f"arn:aws:iam::{C.ACCOUNT_ID}:role/{name}",
            )
        assert _error(err) == (
            "InvalidParameterException",
            "Trust policy of the role provided is invalid. Follow the official documentation "
            "to resolve the issue.",
            400,
        )
        assert stack.aws.associations.list() == []
        refused = [e for e in stack.trace.events() if e.target == "eks"][-1]
        wanted = "sts:TagSession" if name == "pi-assume-only" else "sts:AssumeRole"
        assert wanted in str(refused.detail)
        if name == "pi-assume-only":
            # Without session tags, sts:AssumeRole alone is enough (§6.4).
            made = eks.create_pod_identity_association(
                clusterName=C.CLUSTER_NAME,
                namespace="default",
                serviceAccount="x",
                roleArn=f"arn:aws:iam::{C.ACCOUNT_ID}:role/{name}",
                disableSessionTags=True,
            )
            assert made["association"]["disableSessionTags"] is True
    finally:
        iam.delete_role(RoleName=name)


def test_an_unknown_cluster_is_resource_not_found(eks: Any) -> None:
    with pytest.raises(ClientError) as describe:
        eks.describe_cluster(name="other-cluster")
    assert _error(describe) == (
        "ResourceNotFoundException",
        "No cluster found for name: other-cluster.",
        404,
    )
    with pytest.raises(ClientError) as create:
        eks.create_pod_identity_association(
            clusterName="other-cluster", namespace="default", serviceAccount="x", roleArn=ROLE_ARN
        )
    assert _error(create)[0] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as listing:
        eks.list_pod_identity_associations(clusterName="other-cluster")
    assert _error(listing)[0] == "ResourceNotFoundException"


def test_describe_cluster_shows_the_lab_s_issuer_api_server_and_ca(
    eks: Any, stack: EmbeddedLab
) -> None:
    cluster = eks.describe_cluster(name=C.CLUSTER_NAME)["cluster"]
    ep = stack.endpoints
    assert cluster["name"] == C.CLUSTER_NAME
    assert cluster["arn"] == f"arn:aws:eks:{C.REGION}:{C.ACCOUNT_ID}:cluster/{C.CLUSTER_NAME}"
    assert cluster["status"] == "ACTIVE"
    assert cluster["identity"]["oidc"]["issuer"] == ep.issuer == stack.issuer_url
    assert cluster["endpoint"] == ep.apiserver
    ca = base64.b64decode(cluster["certificateAuthority"]["data"])
    assert ca == Path(ep.ca_bundle).read_bytes()
    assert cluster["version"] == "{major}.{minor}".format(**C.KUBERNETES_VERSION)


def test_a_role_session_is_judged_by_its_role_s_policies(lab: Lab, stack: EmbeddedLab) -> None:
    """The node role's AmazonEKSWorkerNodePolicy allows eks:DescribeCluster only."""
    node = _node_client(stack)
    assert node.describe_cluster(name=C.CLUSTER_NAME)["cluster"]["status"] == "ACTIVE"
    with pytest.raises(ClientError) as err:
        _create(node, "app-sa")
    code, message, status = _error(err)
    assert (code, status) == ("AccessDeniedException", 403)
    assert "is not authorized to perform: eks:CreatePodIdentityAssociation" in message
    assert C.NODE_ROLE_NAME in message
    with pytest.raises(ClientError) as listing:
        node.list_pod_identity_associations(clusterName=C.CLUSTER_NAME)
    assert _error(listing)[0] == "AccessDeniedException"
    assert stack.aws.associations.list() == []


def test_every_call_is_recorded_in_the_trace(eks: Any, stack: EmbeddedLab) -> None:
    created = _create(eks, "traced-sa")
    with pytest.raises(ClientError):
        _create(eks, "traced-sa")
    calls = [e for e in stack.trace.events() if e.target == "eks"][-2:]
    assert [(e.call, e.outcome) for e in calls] == [
        ("CreatePodIdentityAssociation", "ok"),
        ("CreatePodIdentityAssociation", "ResourceInUseException"),
    ]
    assert calls[0].detail["association"] == created["associationId"]
    assert calls[0].detail["subject"] == "default/traced-sa"
    assert calls[1].detail["message"] == f"Association already exists: {created['associationId']}"


def test_on_change_callbacks_run_after_create_and_delete_through_the_api(
    eks: Any, stack: EmbeddedLab
) -> None:
    seen: list[list[tuple[str, str]]] = []
    stack.aws.associations.on_change.append(
        lambda: seen.append(stack.aws.associations.identities())
    )
    try:
        created = _create(eks, "watched-sa")
        eks.delete_pod_identity_association(
            clusterName=C.CLUSTER_NAME, associationId=created["associationId"]
        )
    finally:
        stack.aws.associations.on_change.pop()
    assert seen == [[("default", "watched-sa")], []]


def test_a_raw_request_without_a_required_member_gets_invalid_parameter(
    lab: Lab, stack: EmbeddedLab
) -> None:
    body = json.dumps({"namespace": "default", "roleArn": ROLE_ARN}).encode()
    path = f"/clusters/{C.CLUSTER_NAME}/pod-identity-associations"
    status, headers, answer = _refused(stack, _signed(stack, "POST", path, body))
    assert status == 400
    assert headers["x-amzn-ErrorType"] == "InvalidParameterException"
    assert "x-amzn-RequestId" in headers
    assert "'serviceAccount'" in answer["message"]
    assert stack.aws.associations.list() == []


def test_a_raw_request_with_a_bad_max_results_gets_invalid_parameter(stack: EmbeddedLab) -> None:
    path = f"/clusters/{C.CLUSTER_NAME}/pod-identity-associations?maxResults=500"
    status, headers, _ = _refused(stack, _signed(stack, "GET", path))
    assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidParameterException")


def test_an_unknown_key_and_an_unsigned_request_are_refused_as_json_services_refuse_them(
    stack: EmbeddedLab,
) -> None:
    stranger = boto3.session.Session(
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="x" * 40,
        region_name=C.REGION,
    ).client("eks", endpoint_url=stack.endpoints.eks, verify=stack.endpoints.ca_bundle)
    with pytest.raises(ClientError) as err:
        stranger.describe_cluster(name=C.CLUSTER_NAME)
    assert _error(err) == (
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
        403,
    )
    unsigned = urllib.request.Request(  # noqa: S310 - https, the lab
        f"{stack.endpoints.eks}/clusters/{C.CLUSTER_NAME}"
    )
    status, headers, _ = _refused(stack, unsigned)
    assert (status, headers["x-amzn-ErrorType"]) == (403, "MissingAuthenticationTokenException")


def test_the_aws_cli_creates_and_lists_associations(
    lab: Lab, stack: EmbeddedLab, tmp_path: Path
) -> None:
    env = admin_cli_env(stack.endpoints, tmp_path)

    def aws(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(AWS_CLI), "eks", *argv], env=env, capture_output=True, text=True, timeout=60
        )

    create = [
        "create-pod-identity-association",
        "--cluster-name",
        C.CLUSTER_NAME,
        "--namespace",
        "default",
        "--service-account",
        "cli-sa",
        "--role-arn",
        ROLE_ARN,
    ]
    done = aws(*create)
    assert done.returncode == 0, done.stderr
    created = json.loads(done.stdout)["association"]
    assert (created["serviceAccount"], created["roleArn"]) == ("cli-sa", ROLE_ARN)
    listed = aws("list-pod-identity-associations", "--cluster-name", C.CLUSTER_NAME)
    assert listed.returncode == 0, listed.stderr
    assert [a["associationId"] for a in json.loads(listed.stdout)["associations"]] == [
        created["associationId"]
    ]
    again = aws(*create)
    assert again.returncode == 255
    assert (
        "An error occurred (ResourceInUseException) when calling the "
        f"CreatePodIdentityAssociation operation: Association already exists: "
        f"{created['associationId']}"
    ) in again.stderr


def test_what_the_lab_does_not_serve_is_refused_saying_so(eks: Any, stack: EmbeddedLab) -> None:
    created = _create(eks, "app-sa")
    with pytest.raises(ClientError) as update:
        eks.update_pod_identity_association(
            clusterName=C.CLUSTER_NAME, associationId=created["associationId"], roleArn=ROLE_ARN
        )
    assert _error(update)[::2] == ("UnknownOperationException", 404)
    with pytest.raises(ClientError) as target:
        _create(eks, "other-sa", targetRoleArn=ROLE_ARN)
    code, message, status = _error(target)
    assert (code, status) == ("InvalidRequestException", 400)
    assert "targetRoleArn" in message
    assert stack.aws.associations.identities() == [("default", "app-sa")]


def test_a_slow_association_change_does_not_hold_up_the_other_calls(
    lab: Lab, stack: EmbeddedLab, eks: Any
) -> None:
    """The change callbacks (the webhook's identities file; on kind a `docker exec`) run
    off the servers' event loop: while one is held, the EKS API and STS still answer."""
    release = threading.Event()
    held = threading.Event()

    def slow_write() -> None:
        held.set()
        release.wait(30)

    stack.aws.associations.on_change.append(slow_write)
    try:
        with ThreadPoolExecutor(1) as pool:
            creating = pool.submit(_create, lab.aws_client("eks"), "slow-sa")
            assert held.wait(10), "the change callback never ran"
            listed = eks.list_pod_identity_associations(clusterName=C.CLUSTER_NAME)
            assert listed["associations"][0]["serviceAccount"] == "slow-sa"
            who = lab.aws_client("sts").get_caller_identity()
            assert who["Account"] == C.ACCOUNT_ID
            assert not creating.done()
            release.set()
            assert creating.result(10)["serviceAccount"] == "slow-sa"
    finally:
        release.set()
        stack.aws.associations.on_change.remove(slow_write)


def test_list_clusters_names_the_labs_one_cluster(eks: Any, lab: Lab, tmp_path: Path) -> None:
    assert eks.list_clusters()["clusters"] == [C.CLUSTER_NAME]
    assert eks.list_clusters(maxResults=1)["clusters"] == [C.CLUSTER_NAME]
    with pytest.raises(ClientError) as bad:
        eks.list_clusters(maxResults=101)
    assert _error(bad)[0] == "InvalidParameterException"
    done = subprocess.run(
        [str(AWS_CLI), "eks", "list-clusters", "--output", "json"],
        env=cli_env(tmp_path, **lab.aws_env()),  # the account administrator's keys
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"clusters": [C.CLUSTER_NAME]}
