"""Running a command as a pod's container would: ``irsa-lab exec`` and ``lab.exec``.

The pod is read from the API server with the official client; its projected volumes
are the host folders the kubelet stand-in wrote (computed from the state directory,
so this works from another process than the one running the stack); its env comes
from the stored spec, with paths into mounts rewritten to those folders. The AWS
endpoint settings of the stack are added, and nothing of the caller's AWS identity.

:func:`exec_in_pod` only gathers these; the process itself is started by
:func:`irsa_lab.kube.container.run`, the one exec path, which also lets the child record
its reads of the token file into the state directory's facts file
(:func:`irsa_lab.trace.facts_path`) as they happen.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .kube.container import ExecPlan, container_env, run
from .kube.kubelet import volume_dir
from .trace import facts_path

__all__ = ["PodNotFound", "exec_in_pod", "exec_plan", "pod_aws_env", "read_pod"]


class PodNotFound(LookupError):
    """Raised when the pod to exec into does not exist (the API server said 404)."""


def read_pod(kubeconfig: str, namespace: str, name: str) -> dict[str, Any]:
    """The stored pod as a dict, read with the official client."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = config.new_client_from_config(config_file=kubeconfig)
    try:
        core = client.CoreV1Api(api)
        try:
            resp = core.read_namespaced_pod(name, namespace, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                raise PodNotFound(f'pods "{name}" not found in namespace "{namespace}"') from err
            raise
        return dict(json.loads(resp.data))
    finally:
        api.close()


def exec_plan(pod: dict[str, Any], kubelet_root: Path, container: str | None) -> ExecPlan:
    """The env and mounts of ``container`` mapped onto the kubelet's host folders."""
    uid = pod.get("metadata", {}).get("uid", "")
    host_paths = {
        v["name"]: volume_dir(kubelet_root, uid, v["name"])
        for v in pod.get("spec", {}).get("volumes") or []
        if "projected" in v
    }
    return container_env(pod, container, host_paths=host_paths)


def pod_aws_env(endpoints: Mapping[str, str]) -> dict[str, str]:
    """What the lab adds to a pod's env so its SDK reaches the stand-ins.

    These are the only settings that differ from a pod on EKS. The metadata endpoint is
    the one seen from inside a pod (one more network hop than from the node).
    """
    return {
        "AWS_ENDPOINT_URL_STS": endpoints["sts"],
        "AWS_ENDPOINT_URL_IAM": endpoints["iam"],
        "AWS_ENDPOINT_URL_S3": endpoints["s3"],
        "AWS_CA_BUNDLE": endpoints["ca_bundle"],
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoints.get("imds_pod") or endpoints["imds"],
    }


def exec_in_pod(
    endpoints: Mapping[str, Any],
    state_dir: Path,
    *,
    namespace: str,
    pod: str,
    container: str | None,
    argv: Sequence[str],
    capture: bool = True,
    timeout: float | None = 120,
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as ``pod``'s container, through :func:`~irsa_lab.kube.container.run`.

    Without ``capture``, the output goes to this process's and the notes on what was
    mapped are printed to stderr first. Reads of the token file are recorded in
    ``state_dir``'s facts file.
    """
    stored = read_pod(endpoints["kubeconfig"], namespace, pod)
    root = Path(endpoints.get("kubelet_root") or state_dir / "kubelet")
    plan = exec_plan(stored, root, container)
    if not capture:
        for note in plan.notes:
            print(f"irsa-lab: {note}", file=sys.stderr)
    # The lab's own Python environment comes first, so `aws` is the CLI installed with it.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    meta = stored.get("metadata", {})
    return run(
        plan,
        argv,
        extra_env={**pod_aws_env(endpoints), **(extra_env or {})},
        base_env={"PATH": path, "LANG": os.environ.get("LANG", "C.UTF-8")},
        timeout=timeout,
        capture=capture,
        facts=facts_path(state_dir),
        context={
            "pod": str(meta.get("name", pod)),
            "namespace": str(meta.get("namespace", namespace)),
            "uid": str(meta.get("uid", "")),
            "container": plan.container,
        },
    )
