"""Putting the lab back to the article's default scenario, so an exercise can break it anew.

Everything is restored through the same clients a learner uses (the ``kubernetes``
client, boto3's IAM client, EC2's for the node's metadata options and EKS's for Pod
Identity associations), plus the one
knob that has no API in the lab: the webhook being up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import constants as C
from ..aws.arns import irsa_trust_policy
from .probes import ec2 as ec2_client
from .probes import iam as iam_client
from .probes import modify_instance_metadata_options, provider_arn

if TYPE_CHECKING:
    from ..session import Lab

__all__ = ["LAB_NAMESPACES", "default_provider_args", "restore_default"]

# Namespaces the exercises create pods in; everything in them is removed on reset.
LAB_NAMESPACES = (C.NAMESPACE, "analytics")


def restore_default(lab: Lab) -> None:
    """Undo whatever an exercise (or a learner) changed in the default scenario."""
    _restore_node(lab)
    lab.control.start_webhook()
    _restore_kubernetes(lab)
    _restore_iam(lab)
    _restore_pod_identity(lab)
    lab.control.forget_issuer_keys()


def _restore_pod_identity(lab: Lab) -> None:
    """No EKS Pod Identity association, as the lab starts (through boto3's EKS client)."""
    if not lab.endpoints.get("eks"):  # a lab started before it had EKS
        return
    eks = lab.aws_client("eks")
    pages = eks.get_paginator("list_pod_identity_associations").paginate(clusterName=C.CLUSTER_NAME)
    ids = [a["associationId"] for page in pages for a in page["associations"]]
    for association_id in ids:
        eks.delete_pod_identity_association(
            clusterName=C.CLUSTER_NAME, associationId=association_id
        )
    if ids:
        lab.control.wait_for_pod_identity_config()


def _restore_node(lab: Lab) -> None:
    """The node's metadata options as the lab starts: IMDSv1 allowed, hop limit 2, on."""
    if not lab.endpoints.get("ec2"):  # a lab started before it had EC2
        modify_instance_metadata_options(lab, http_tokens="optional", http_put_response_hop_limit=2)
        return
    ec2_client(lab).modify_instance_metadata_options(
        InstanceId=C.NODE_INSTANCE_ID,
        HttpTokens="optional",
        HttpPutResponseHopLimit=2,
        HttpEndpoint="enabled",
    )


def _restore_kubernetes(lab: Lab) -> None:
    from kubernetes.client.rest import ApiException

    core = lab.core
    for ns in LAB_NAMESPACES:
        try:
            pods = core.list_namespaced_pod(ns).items
        except ApiException as err:
            if err.status == 404:
                continue
            raise
        for pod in pods:
            lab.delete_pod(pod.metadata.name, ns)
        if ns != C.NAMESPACE:
            try:
                core.delete_namespaced_service_account(C.SERVICE_ACCOUNT, ns)
            except ApiException as err:
                if err.status != 404:
                    raise
    sa = lab.get_service_account(C.SERVICE_ACCOUNT)
    current = dict(sa.get("metadata", {}).get("annotations") or {})
    wanted: dict[str, str | None] = {
        k: None for k in current if k.startswith(C.ANNOTATION_PREFIX + "/")
    }
    wanted[C.ROLE_ARN_ANNOTATION] = C.ROLE_ARN
    lab.annotate_service_account(C.SERVICE_ACCOUNT, wanted)


def default_provider_args(lab: Lab) -> dict[str, Any]:
    """What ``create_open_id_connect_provider`` takes to register the cluster's issuer."""
    return {
        "Url": lab.endpoints["issuer"],
        "ClientIDList": [C.DEFAULT_AUDIENCE],
        "ThumbprintList": [C.EKS_OIDC_THUMBPRINT],
    }


def _restore_iam(lab: Lab) -> None:
    iam = iam_client(lab)
    arn = provider_arn(lab)
    listed = {p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]}
    if arn in listed:
        got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
        same = got.get("ClientIDList") == [C.DEFAULT_AUDIENCE] and got.get("ThumbprintList") == [
            C.EKS_OIDC_THUMBPRINT
        ]
        if not same:
            iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
            listed.discard(arn)
    if arn not in listed:
        iam.create_open_id_connect_provider(**default_provider_args(lab))
    policy = irsa_trust_policy(arn, lab.endpoints["issuer"])
    import json

    iam.update_assume_role_policy(RoleName=C.ROLE_NAME, PolicyDocument=json.dumps(policy))
