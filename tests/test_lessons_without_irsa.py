"""Notebook 05's helpers: a pod without a role falls back to the node's IMDS role."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from irsa_lab import constants as C
from irsa_lab.lessons import without_irsa
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock

POD = without_irsa.POD_WITHOUT_ROLE["metadata"]["name"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    stack = EmbeddedLab(
        state_dir=tmp_path_factory.mktemp("imds"), seed=DEFAULT_SEED, clock=lab_clock(True)
    ).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    lab.create_pod(without_irsa.POD_WITHOUT_ROLE)
    yield lab
    lab.close()


def test_the_pod_without_a_role_is_not_mutated(lab: Lab) -> None:
    facts = without_irsa.mutation_facts(lab.get_pod(POD))
    assert "serviceAccountName: default" in facts
    assert "AWS_* env vars:     (none)" in facts


def test_the_chain_falls_through_to_iam_role_and_finds_the_node_role(lab: Lab) -> None:
    chain = without_irsa.credential_chain(lab, POD)
    assert chain.tried[0] == "env"
    assert chain.tried.index("assume-role-with-web-identity") < chain.tried.index("iam-role")
    assert chain.tried[-1] == "iam-role"
    assert chain.identity.role == C.NODE_ROLE_NAME
    assert chain.identity.arn is not None and chain.identity.arn.endswith(C.NODE_INSTANCE_ID)


def test_hop_limit_two_gives_the_pod_the_node_role(lab: Lab) -> None:
    with without_irsa.imds_settings(lab, http_tokens="required", hop_limit=2):
        assert without_irsa.who_am_i(lab, POD).role == C.NODE_ROLE_NAME


def test_hop_limit_one_with_tokens_required_leaves_the_pod_without_credentials(lab: Lab) -> None:
    with without_irsa.imds_settings(lab, http_tokens="required", hop_limit=1):
        pod = without_irsa.who_am_i(lab, POD)
        node = without_irsa.who_am_i(lab)
    assert pod.arn is None and "Unable to locate credentials" in pod.error
    assert node.role == C.NODE_ROLE_NAME
    settings = lab.embedded.imds_settings  # type: ignore[union-attr]
    assert (settings.http_tokens, settings.hop_limit) == ("optional", 2)


def test_the_node_role_allows_what_the_pod_role_does_not(lab: Lab) -> None:
    roles = without_irsa.compare_roles(lab)
    assert "AmazonEC2ContainerRegistryReadOnly" in roles.node_policies
    assert roles.pod_policies == ["AmazonS3ReadOnlyAccess"]
    assert "ecr:GetAuthorizationToken" in roles.node_only()
    assert "ec2:CreateNetworkInterface" in roles.node_only()
    assert "s3:ListAllMyBuckets" not in roles.node_only()


def test_the_hop_path_drops_the_token_before_the_pod_only_with_limit_one() -> None:
    assert [h.arrives for h in without_irsa.hop_path(1)] == [True, True, False, False]
    assert all(h.arrives for h in without_irsa.hop_path(2))
    assert "the pod never does" in without_irsa.hop_path_text(1)
    assert "IMDSv1 is still allowed" in without_irsa.hop_path_text(1, "optional")
    texts = [t.get_text() for ax in without_irsa.hop_figure(1).axes for t in [ax.title, *ax.texts]]
    assert any("dies before the pod" in t for t in texts)
