"""EKS Auth (``AssumeRoleForPodIdentity``) and the Pod Identity agent, through real boto3 and botocore.

The agent signs with the node role's credentials, as on EKS; these tests do the same with
a boto3 ``eks-auth`` client. Session tags reach S3's policy evaluation as
``aws:PrincipalTag/<key>`` (the ABAC prefix per namespace), and a trust policy without
``sts:TagSession`` is refused with EKS Auth's AccessDeniedException (HTTP 400).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from irsa_lab import constants as C
from irsa_lab.aws.arns import role_arn
from irsa_lab.aws.eks import agent as agent_mod
from irsa_lab.aws.eks import trust as T
from irsa_lab.aws.imds import node_credentials
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock

AWS_CLI = Path(sys.executable).with_name("aws")
BUCKET = "team-data"
SESSION_NAME = re.compile(
    r"eks-irsa-lab-([\w+=,.@-]{1,10})-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLab]:
    state = tmp_path_factory.mktemp("eks-auth-lab")
    with EmbeddedLab(state_dir=state, seed=DEFAULT_SEED, clock=lab_clock(True)) as lab:
        yield lab


@pytest.fixture(scope="module")
def lab(stack: EmbeddedLab) -> Lab:
    the_lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    iam, s3 = the_lab.aws_client("iam"), the_lab.aws_client("s3")
    for name, tag_session in (("pi-abac", True), ("pi-no-tags", False)):
        iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=json.dumps(
                T.pod_identity_trust_policy(tag_session=tag_session)
            ),
        )
        iam.put_role_policy(
            RoleName=name,
            PolicyName="abac",
            PolicyDocument=json.dumps(T.abac_prefix_policy(BUCKET)),
        )
    # The S3 stand-in has no CreateBucket (routing.py): the bucket is put in the account.
    stack.account.buckets[BUCKET] = {"created": stack.wall_clock.now(), "objects": {}}
    for key in ("default/hello.txt", "team-b/secret.txt"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    for ns in ("team-b",):
        _kubectl(stack, "create", "namespace", ns)
    for sa in ("abac-sa", "no-tags-sa", "orphan-sa"):
        _kubectl(stack, "create", "serviceaccount", sa)
    return the_lab


def _kubectl(stack: EmbeddedLab, *args: str) -> str:
    env = {**os.environ, "KUBECONFIG": stack.endpoints.kubeconfig}
    done = subprocess.run(["kubectl", *args], env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _pod_token(
    stack: EmbeddedLab, sa: str, pod: str, audience: str = T.POD_IDENTITY_AUDIENCE
) -> str:
    """A token bound to a new pod ``pod`` running as ``sa``, as the kubelet would project it."""
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod},
        "spec": {
            "serviceAccountName": sa,
            "containers": [{"name": "app", "image": "amazon/aws-cli"}],
        },
    }
    env = {**os.environ, "KUBECONFIG": stack.endpoints.kubeconfig}
    subprocess.run(
        ["kubectl", "delete", "pod", pod, "--ignore-not-found"],
        env=env,
        capture_output=True,
        check=True,
    )
    subprocess.run(
        ["kubectl", "create", "-f", "-"],
        input=json.dumps(manifest),
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return _kubectl(
        stack,
        "create",
        "token",
        sa,
        "--audience",
        audience,
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        pod,
    ).strip()


def _node_client(stack: EmbeddedLab) -> Any:
    node = node_credentials(
        stack.account, C.NODE_ROLE_NAME, wall_clock=stack.wall_clock, ids=stack.ids
    )
    ep = stack.endpoints
    return boto3.session.Session(
        aws_access_key_id=node.access_key_id,
        aws_secret_access_key=node.secret_access_key,
        aws_session_token=node.session_token,
        region_name=C.REGION,
    ).client("eks-auth", endpoint_url=ep.eks_auth, verify=ep.ca_bundle)


def _associate(stack: EmbeddedLab, sa: str, role: str, **kw: Any) -> str:
    for old in stack.aws.associations.list(namespace="default", service_account=sa):
        stack.aws.associations.delete(old.association_id)
    return stack.aws.associations.create(
        "default", sa, role_arn(C.ACCOUNT_ID, role), **kw
    ).association_id


def _error(err: pytest.ExceptionInfo[ClientError]) -> tuple[str, int, str]:
    r = err.value.response
    return r["Error"]["Code"], r["ResponseMetadata"]["HTTPStatusCode"], r["Error"]["Message"]


def test_the_node_gets_the_roles_credentials_tagged_with_the_pod(
    lab: Lab, stack: EmbeddedLab
) -> None:
    association = _associate(stack, "abac-sa", "pi-abac")
    token = _pod_token(stack, "abac-sa", "abac-pod-with-a-long-name")
    answer = _node_client(stack).assume_role_for_pod_identity(
        clusterName=C.CLUSTER_NAME, token=token
    )
    assert answer["subject"] == {"namespace": "default", "serviceAccount": "abac-sa"}
    assert answer["audience"] == "pods.eks.amazonaws.com"
    assert answer["podIdentityAssociation"]["associationId"] == association
    arn = answer["assumedRoleUser"]["arn"]
    session = arn.rsplit("/", 1)[-1]
    assert arn.startswith(f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/pi-abac/")
    found = SESSION_NAME.fullmatch(session)
    assert found and found[1] == "abac-pod-w", session  # the pod name cut to 10
    assert len(session) <= 64
    creds = answer["credentials"]
    sts = lab.aws_client(
        "sts",
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
    )
    assert sts.get_caller_identity()["Arn"] == arn
    cred = stack.account.credentials[creds["accessKeyId"]]
    assert cred.session_tags == {
        "eks-cluster-arn": f"arn:aws:eks:{C.REGION}:{C.ACCOUNT_ID}:cluster/{C.CLUSTER_NAME}",
        "eks-cluster-name": C.CLUSTER_NAME,
        "kubernetes-namespace": "default",
        "kubernetes-service-account": "abac-sa",
        "kubernetes-pod-name": "abac-pod-with-a-long-name",
        "kubernetes-pod-uid": json.loads(
            _kubectl(stack, "get", "pod", "abac-pod-with-a-long-name", "-o", "json")
        )["metadata"]["uid"],
    }


def test_the_session_tags_give_each_namespace_its_own_s3_prefix(
    lab: Lab, stack: EmbeddedLab
) -> None:
    _associate(stack, "abac-sa", "pi-abac")
    creds = _node_client(stack).assume_role_for_pod_identity(
        clusterName=C.CLUSTER_NAME, token=_pod_token(stack, "abac-sa", "abac-pod")
    )["credentials"]
    s3 = lab.aws_client(
        "s3",
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
    )
    assert (
        s3.get_object(Bucket=BUCKET, Key="default/hello.txt")["Body"].read() == b"default/hello.txt"
    )
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="default/")
    assert [o["Key"] for o in listed["Contents"]] == ["default/hello.txt"]
    with pytest.raises(ClientError) as denied:
        s3.get_object(Bucket=BUCKET, Key="team-b/secret.txt")
    assert _error(denied)[:2] == ("AccessDenied", 403)
    with pytest.raises(ClientError) as denied:
        s3.list_objects_v2(Bucket=BUCKET, Prefix="team-b/")
    assert _error(denied)[0] == "AccessDenied"


def test_a_trust_policy_without_tag_session_is_refused_with_access_denied(
    lab: Lab, stack: EmbeddedLab
) -> None:
    _associate(stack, "no-tags-sa", "pi-no-tags")
    with pytest.raises(ClientError) as denied:
        _node_client(stack).assume_role_for_pod_identity(
            clusterName=C.CLUSTER_NAME, token=_pod_token(stack, "no-tags-sa", "no-tags-pod")
        )
    code, status, message = _error(denied)
    assert (code, status) == ("AccessDeniedException", 400)
    assert "sts:TagSession" in message and role_arn(C.ACCOUNT_ID, "pi-no-tags") in message
    last = [e for e in stack.trace.events() if e.target == "eks-auth"][-1]
    assert last.detail["step"] == "trust policy" and "sts:TagSession" in last.detail["why"]


def test_without_session_tags_sts_assume_role_alone_is_enough(lab: Lab, stack: EmbeddedLab) -> None:
    _associate(stack, "no-tags-sa", "pi-no-tags", disable_session_tags=True)
    answer = _node_client(stack).assume_role_for_pod_identity(
        clusterName=C.CLUSTER_NAME, token=_pod_token(stack, "no-tags-sa", "no-tags-pod")
    )
    assert stack.account.credentials[answer["credentials"]["accessKeyId"]].session_tags == {}


def test_a_service_account_without_an_association_is_not_found(
    lab: Lab, stack: EmbeddedLab
) -> None:
    with pytest.raises(ClientError) as missing:
        _node_client(stack).assume_role_for_pod_identity(
            clusterName=C.CLUSTER_NAME, token=_pod_token(stack, "orphan-sa", "orphan-pod")
        )
    assert _error(missing)[:2] == ("ResourceNotFoundException", 404)


def test_tokens_for_another_audience_or_no_pod_are_invalid(lab: Lab, stack: EmbeddedLab) -> None:
    _associate(stack, "abac-sa", "pi-abac")
    irsa_token = _pod_token(stack, "abac-sa", "abac-pod", audience="sts.amazonaws.com")
    unbound = _kubectl(
        stack, "create", "token", "abac-sa", "--audience", T.POD_IDENTITY_AUDIENCE
    ).strip()
    forged = irsa_token[: irsa_token.rindex(".")] + ".AAAA"
    client = _node_client(stack)
    for token in (irsa_token, unbound, forged):
        with pytest.raises(ClientError) as bad:
            client.assume_role_for_pod_identity(clusterName=C.CLUSTER_NAME, token=token)
        assert _error(bad)[:2] == ("InvalidTokenException", 400)
    steps = [e.detail.get("step") for e in stack.trace.events() if e.target == "eks-auth"][-3:]
    assert steps == ["audience", "pod", "token"]


def test_an_expired_token_is_refused_as_expired(lab: Lab, stack: EmbeddedLab) -> None:
    _associate(stack, "abac-sa", "pi-abac")
    token = _pod_token(stack, "abac-sa", "abac-pod")
    stack.clock.advance(2 * 3600)  # type: ignore[attr-defined]
    try:
        with pytest.raises(ClientError) as expired:
            _node_client(stack).assume_role_for_pod_identity(
                clusterName=C.CLUSTER_NAME, token=token
            )
    finally:
        stack.clock.advance(-2 * 3600)  # type: ignore[attr-defined]
    assert _error(expired)[:2] == ("ExpiredTokenException", 400)


def test_only_callers_allowed_eks_auth_may_call_it(lab: Lab, stack: EmbeddedLab) -> None:
    token = _pod_token(stack, "abac-sa", "abac-pod")
    with pytest.raises(ClientError) as other_cluster:
        _node_client(stack).assume_role_for_pod_identity(clusterName="other", token=token)
    assert _error(other_cluster) == (
        "ResourceNotFoundException",
        404,
        "No cluster found for name: other.",
    )
    # The IRSA role's session may read S3, not call EKS Auth.
    creds = _node_client(stack).assume_role_for_pod_identity(
        clusterName=C.CLUSTER_NAME, token=token
    )["credentials"]
    session = boto3.session.Session(
        aws_access_key_id=creds["accessKeyId"],
        aws_secret_access_key=creds["secretAccessKey"],
        aws_session_token=creds["sessionToken"],
        region_name=C.REGION,
    ).client("eks-auth", endpoint_url=stack.endpoints.eks_auth, verify=stack.endpoints.ca_bundle)
    with pytest.raises(ClientError) as denied:
        session.assume_role_for_pod_identity(clusterName=C.CLUSTER_NAME, token=token)
    code, status, message = _error(denied)
    assert (code, status) == ("AccessDeniedException", 400)
    assert "eks-auth:AssumeRoleForPodIdentity" in message
    raw = urllib.request.Request(  # noqa: S310 - the lab's EKS Auth
        f"{stack.endpoints.eks_auth}/clusters/{C.CLUSTER_NAME}/assume-role-for-pod-identity",
        data=json.dumps({"token": token}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as unsigned:
        urllib.request.urlopen(  # noqa: S310
            raw, context=ssl.create_default_context(cafile=stack.endpoints.ca_bundle)
        )
    assert unsigned.value.code == 403
    assert unsigned.value.headers["x-amzn-ErrorType"] == "MissingAuthenticationTokenException"
    unsigned.value.close()


def test_the_agent_answers_in_the_container_format_and_caches_per_token(
    lab: Lab, stack: EmbeddedLab
) -> None:
    _associate(stack, "abac-sa", "pi-abac")
    token = _pod_token(stack, "abac-sa", "agent-pod")
    calls = lambda: sum(1 for e in stack.trace.events() if e.target == "eks-auth")  # noqa: E731
    before = calls()
    status, body = _agent_get(stack, token)
    assert status == 200
    answer = json.loads(body)
    assert set(answer) == {"AccessKeyId", "SecretAccessKey", "Token", "AccountId", "Expiration"}
    assert answer["AccountId"] == C.ACCOUNT_ID
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", answer["Expiration"])
    assert _agent_get(stack, token) == (200, body)
    assert calls() == before + 1  # the second answer came from the cache


def _agent_get(
    stack: EmbeddedLab, token: str | None, host: str | None = None, agent: str | None = None
) -> tuple[int, bytes]:
    headers = {} if token is None else {"Authorization": token}
    if host:
        headers["Host"] = host
    try:
        url = agent or stack.endpoints.pod_identity_agent
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 - the lab's agent
        with urllib.request.urlopen(request) as r:  # noqa: S310
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, e.read()


def test_the_agent_keeps_its_connection_to_eks_auth_alive(lab: Lab, stack: EmbeddedLab) -> None:
    """Two pods' first fetches (two tokens, so no cache) reach EKS Auth on one TCP
    connection, as with the real agent's HTTP client: no TLS handshake per pod.

    A second agent, made as the stack makes its own, calls EKS Auth through a proxy on
    loopback that counts the connections it accepts.
    """
    _associate(stack, "abac-sa", "pi-abac")
    eks_auth_port = stack.loop.served()["eks-auth"].port
    accepted: list[int] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", eks_auth_port)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def start_proxy() -> asyncio.Server:
        return await asyncio.start_server(relay, "127.0.0.1", 0)

    proxy = stack.loop.call(start_proxy())
    proxy_port = proxy.sockets[0].getsockname()[1]
    agent = agent_mod.make_app(
        cluster=C.CLUSTER_NAME,
        eks_auth_url=lambda: f"https://127.0.0.1:{proxy_port}",
        node_credentials=lambda: node_credentials(
            stack.account, C.NODE_ROLE_NAME, wall_clock=stack.wall_clock, ids=stack.ids
        ),
        ssl_context=ssl.create_default_context(cafile=stack.endpoints.ca_bundle),
        region=C.REGION,
        clock=stack.clock,
        wall_clock=stack.wall_clock,
        trace=stack.trace,
    )
    url = stack.loop.serve("agent-under-test", agent).url + agent_mod.credentials_path()
    try:
        for pod in ("keepalive-a", "keepalive-b"):
            assert _agent_get(stack, _pod_token(stack, "abac-sa", pod), agent=url)[0] == 200
    finally:
        stack.loop.unserve("agent-under-test")  # closes the agent's client too
        proxy.close()
    assert len(accepted) == 1


def test_the_agent_refuses_what_the_real_one_refuses(lab: Lab, stack: EmbeddedLab) -> None:
    assert _agent_get(stack, None) == (400, b"Service account token cannot be empty\n")
    status, body = _agent_get(stack, "not-a-jwt")
    assert status == 400 and body.startswith(b"Service account token cannot be parsed: ")
    status, body = _agent_get(stack, _pod_token(stack, "abac-sa", "abac-pod"), host="10.0.0.1:80")
    assert status == 403
    assert body == (
        b"Access Denied. Called agent through invalid address, please use either "
        b"[169.254.170.23 fd00:ec2::23] address not 10.0.0.1\n"
    )
    status, body = _agent_get(stack, _pod_token(stack, "orphan-sa", "orphan-pod"))
    assert status == 404
    assert re.fullmatch(
        rb"\[[0-9a-f-]+\]: \(ResourceNotFoundException\): .+, fault: client\n", body
    )


def test_botocore_and_the_aws_cli_get_pod_identity_credentials_from_the_agent(
    lab: Lab, stack: EmbeddedLab, tmp_path: Path
) -> None:
    _associate(stack, "abac-sa", "pi-abac")
    token_file = tmp_path / "eks-pod-identity-token"
    token_file.write_text(
        _pod_token(stack, "abac-sa", "cli-pod")
    )  # no newline, as the kubelet writes it
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": stack.endpoints.pod_identity_agent,
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE": str(token_file),
        "AWS_ENDPOINT_URL_STS": stack.endpoints.sts,
        "AWS_ENDPOINT_URL_S3": stack.endpoints.s3,
        "AWS_CA_BUNDLE": stack.endpoints.ca_bundle,
        "AWS_DEFAULT_REGION": C.REGION,
    }
    who = subprocess.run(
        [str(AWS_CLI), "sts", "get-caller-identity"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert who.returncode == 0, who.stderr
    arn = json.loads(who.stdout)["Arn"]
    assert arn.startswith(f"arn:aws:sts::{C.ACCOUNT_ID}:assumed-role/pi-abac/eks-irsa-lab-cli-pod-")
    read = subprocess.run(
        [str(AWS_CLI), "s3", "cp", f"s3://{BUCKET}/team-b/secret.txt", "-"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert read.returncode != 0 and "(403)" in read.stderr  # HEAD: no body, so "Forbidden"


def test_eks_auth_fetches_the_issuers_keys_itself_with_a_cache_of_its_own(
    lab: Lab, stack: EmbeddedLab
) -> None:
    _associate(stack, "abac-sa", "pi-abac")
    token = _pod_token(stack, "abac-sa", "keys-pod")
    stack.aws.fetcher.invalidate()
    stack.aws.eks_auth_fetcher.invalidate()
    mark = stack.trace.mark()
    _node_client(stack).assume_role_for_pod_identity(clusterName=C.CLUSTER_NAME, token=token)
    fetched = [(e.source, e.call) for e in stack.trace.since(mark) if e.target == "oidc"]
    assert ("eks-auth", "GET jwks") in fetched
    assert all(source == "eks-auth" for source, _ in fetched), fetched
    assert stack.aws.eks_auth_fetcher.cached(stack.issuer_url)
    assert stack.aws.fetcher.cached(stack.issuer_url) is None  # STS's cache is its own
