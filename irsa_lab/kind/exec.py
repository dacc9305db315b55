"""Run a command inside a kind pod's real container, as ``kubectl exec`` does.

On kind the kubelet writes the projected token inside the node container, so the
host has no file at the pod's paths (defect 2 of issue 15). ``irsa-lab exec`` on kind
therefore runs the command in the container itself, through ``kubectl exec``, with
the lab's endpoint settings added as the pod reaches the stand-ins
(:mod:`irsa_lab.kind.network`): the pod-side STS, IAM and S3 URLs, the CA as mounted
from the ``irsa-lab-ca`` ConfigMap, and IMDS at the kind network's gateway.

The settings go in through ``env K=V ... ARGV``: ``kubectl exec`` has no way to set
the environment, so the container's image needs an ``env`` program (every image with
a shell has one; a distroless image does not).
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

from .network import POD_CA_BUNDLE

__all__ = ["kind_exec_argv", "exec_in_kind_pod", "pod_env", "read_pod_file"]

# endpoints.json key (pod side) -> the variable botocore and the aws CLI read.
_POD_ENV = (
    ("sts_pod", "AWS_ENDPOINT_URL_STS"),
    ("iam_pod", "AWS_ENDPOINT_URL_IAM"),
    ("s3_pod", "AWS_ENDPOINT_URL_S3"),
    ("ec2_pod", "AWS_ENDPOINT_URL_EC2"),
    ("ca_bundle_pod", "AWS_CA_BUNDLE"),
    ("imds_pod", "AWS_EC2_METADATA_SERVICE_ENDPOINT"),
)


def pod_env(endpoints: Mapping[str, Any]) -> dict[str, str]:
    """The lab's endpoint settings as a pod of the kind cluster reaches them.

    Only the pod-side keys of ``endpoints.json`` are used: the host's 127.0.0.1 URLs
    mean the pod itself inside a container. A key that is missing (an ``endpoints.json``
    written before the pod-side fields existed) is left out rather than guessed.
    """
    env: dict[str, str] = {}
    for key, name in _POD_ENV:
        value = endpoints.get(key)
        if key == "ca_bundle_pod" and not value and endpoints.get("sts_pod"):
            value = POD_CA_BUNDLE
        if value:
            env[name] = str(value)
    return env


def kind_exec_argv(
    endpoints: Mapping[str, Any],
    *,
    namespace: str,
    pod: str,
    container: str | None,
    argv: Sequence[str],
    extra_env: Mapping[str, str] | None = None,
    with_lab_env: bool = True,
) -> list[str]:
    """The ``kubectl exec`` command line :func:`exec_in_kind_pod` runs."""
    if not argv:
        raise ValueError("no command to run in the pod")
    cmd = ["kubectl", "--kubeconfig", str(endpoints["kubeconfig"]), "exec"]
    cmd += ["-n", namespace, pod]
    if container:
        cmd += ["-c", container]
    env = pod_env(endpoints) if with_lab_env else {}
    env.update(extra_env or {})
    cmd.append("--")
    if env:
        cmd += ["env", *(f"{k}={v}" for k, v in env.items())]
    return [*cmd, *argv]


def exec_in_kind_pod(
    endpoints: Mapping[str, Any],
    *,
    namespace: str,
    pod: str,
    container: str | None,
    argv: Sequence[str],
    capture: bool = True,
    timeout: float | None = 120,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in the pod's real container with the lab's endpoint settings added.

    ``extra_env`` wins over the lab's settings. The result is the ``kubectl exec``
    process's: its exit code is the command's (``kubectl`` exits 1 with its own
    message on stderr when the pod or container does not exist).
    """
    cmd = kind_exec_argv(
        endpoints,
        namespace=namespace,
        pod=pod,
        container=container,
        argv=argv,
        extra_env=extra_env,
    )
    return subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, check=False)


def read_pod_file(
    endpoints: Mapping[str, Any],
    *,
    namespace: str,
    pod: str,
    path: str,
    container: str | None = None,
) -> str:
    """A file's text as the container sees it (``kubectl exec ... -- cat PATH``).

    Raises :class:`FileNotFoundError` naming the pod and the command's stderr when
    ``cat`` (or ``kubectl``) fails.
    """
    cmd = kind_exec_argv(
        endpoints,
        namespace=namespace,
        pod=pod,
        container=container,
        argv=["cat", path],
        with_lab_env=False,
    )
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    if p.returncode != 0:
        detail = (p.stderr or p.stdout).strip()
        raise FileNotFoundError(f"{path} in pod {namespace}/{pod}: {detail}")
    return p.stdout
