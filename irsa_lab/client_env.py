"""The environment that points kubectl, boto3 and the aws CLI at a running lab.

One list, read from the lab's ``endpoints.json``: ``irsa-lab env`` prints it as
``export`` lines for a shell, and :func:`irsa_lab.lab` sets it in a notebook's kernel
(:meth:`irsa_lab.session.Lab.set_environment`), so ``!kubectl …`` and ``!aws …`` reach
the lab. Kept free of heavy imports: the command line reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["lab_environment"]


def lab_environment(endpoints: Mapping[str, Any], *, admin: bool = True) -> dict[str, str]:
    """The variables that point kubectl, boto3 and the aws CLI at a lab, from its
    ``endpoints.json``.

    ``admin``: add the account administrator's keys, as a learner has on a real
    account (IAM and S3 calls made outside a pod are signed with them).
    """
    ep = endpoints
    env = {
        "KUBECONFIG": str(ep["kubeconfig"]),
        "AWS_ENDPOINT_URL_STS": str(ep["sts"]),
        "AWS_ENDPOINT_URL_IAM": str(ep["iam"]),
        "AWS_ENDPOINT_URL_S3": str(ep["s3"]),
        "AWS_ENDPOINT_URL_EC2": str(ep["ec2"]),
        **({"AWS_ENDPOINT_URL_EKS": str(ep["eks"])} if ep.get("eks") else {}),
        **({"AWS_ENDPOINT_URL_EKS_AUTH": str(ep["eks_auth"])} if ep.get("eks_auth") else {}),
        "AWS_CA_BUNDLE": str(ep["ca_bundle"]),
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": str(ep["imds"]),
        "AWS_DEFAULT_REGION": str(ep["region"]),
    }
    if admin:
        env["AWS_ACCESS_KEY_ID"] = str(ep["admin_access_key_id"])
        env["AWS_SECRET_ACCESS_KEY"] = str(ep["admin_secret_access_key"])
    return env
