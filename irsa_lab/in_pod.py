"""Running a command as a pod's container would: ``irsa-lab exec`` and ``lab.exec``.

The pod is read from the API server with the official client; its projected volumes
are the host folders the kubelet stand-in wrote (computed from the state directory,
so this works from another process than the one running the stack); its env comes
from the stored spec. The pod's paths resolve to those folders through a mount
namespace, or by rewriting them where user namespaces are refused (docs/in-pod.md).
The AWS endpoint settings of the stack are added, and nothing of the caller's AWS
identity. A pod whose env names no region gets the node's, as IMDS would give it to
the AWS CLI v2 of the ``amazon/aws-cli`` image (:func:`node_region_env`).

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .constants import ENV_DEFAULT_REGION, ENV_REGION
from .kube.container import ExecPlan, container_env, run
from .kube.kubelet import volume_dir
from .trace import facts_path

__all__ = [
    "NOTES_SHOWN_FILE",
    "PodNotFound",
    "exec_in_pod",
    "exec_plan",
    "note_printer",
    "node_region_env",
    "pod_aws_env",
    "read_pod",
]


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
        **({"AWS_ENDPOINT_URL_EC2": endpoints["ec2"]} if endpoints.get("ec2") else {}),
        **({"AWS_ENDPOINT_URL_EKS": endpoints["eks"]} if endpoints.get("eks") else {}),
        "AWS_CA_BUNDLE": endpoints["ca_bundle"],
        "AWS_EC2_METADATA_SERVICE_ENDPOINT": endpoints.get("imds_pod") or endpoints["imds"],
    }


def node_region_env(
    plan: ExecPlan, endpoints: Mapping[str, Any], extra_env: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """``AWS_DEFAULT_REGION`` of the node, and a note, for a pod whose env names no region.

    On EKS the ``amazon/aws-cli`` image (CLI v2) in a pod without a role takes the
    region from IMDS, the node's. The lab's aws CLI is v1, which never asks IMDS for
    the region (aws/aws-cli#6297) and stops with "You must specify a region", so the
    lab supplies what IMDS would answer. A pod the webhook mutated already has both.
    """
    names = (ENV_REGION, ENV_DEFAULT_REGION)
    if any(n in plan.env or n in extra_env for n in names):
        return {}, []
    region = str(endpoints["region"])
    note = (
        f"the pod's env names no region: {ENV_DEFAULT_REGION}={region} added, the node's "
        "region as IMDS gives it (the AWS CLI v2 on EKS reads it there; the lab's CLI v1 "
        "does not)"
    )
    return {ENV_DEFAULT_REGION: region}, [note]


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

    Without ``capture``, the output goes to this process's and the notes (first the
    mechanism that makes the pod's paths resolve, then what was mapped or added) are
    printed to stderr before it, one ``irsa-lab:`` line each, explanations once per
    state directory (:func:`note_printer`); either way they are all in the result's
    ``notes`` (a :class:`~irsa_lab.kube.container.PodProcess` here).
    Reads of the token file are recorded in ``state_dir``'s facts file.
    """
    if endpoints.get("backend") == "kind":
        # The pod runs in a real container: `kubectl exec` into it.
        from .kind.exec import exec_in_kind_pod

        return exec_in_kind_pod(
            endpoints,
            namespace=namespace,
            pod=pod,
            container=container,
            argv=argv,
            capture=capture,
            timeout=timeout,
            extra_env=extra_env,
        )
    stored = read_pod(endpoints["kubeconfig"], namespace, pod)
    root = Path(endpoints.get("kubelet_root") or state_dir / "kubelet")
    plan = exec_plan(stored, root, container)
    region, region_notes = node_region_env(plan, endpoints, extra_env or {})
    plan = replace(plan, notes=[*plan.notes, *region_notes])
    # The lab's own Python environment comes first, so `aws` is the CLI installed with it.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    meta = stored.get("metadata", {})
    return run(
        plan,
        argv,
        extra_env={**pod_aws_env(endpoints), **region, **(extra_env or {})},
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
        notify=None if capture else note_printer(state_dir),
    )


NOTES_SHOWN_FILE = "exec-notes-shown"


def _note_key(note: str) -> str | None:
    """What makes an explanatory note the same as one already shown (the mechanism, where
    a pod path is on the host, the region added), or None for a note that tells of a
    problem with this pod or this run, which is printed every time."""
    problem = ("could not be set up", "not supported", "not available", "not written", "hidden")
    if any(word in note for word in problem):
        return None
    if note.startswith("mechanism: "):
        return "mechanism: " + note.split(" (", 1)[0].split(": ", 2)[1].split(":", 1)[0]
    if note.startswith("the pod's env names no region"):
        return "the pod's env names no region"
    if "the pod's own path" in note or "it now names the host folder" in note:
        return note.split(": ", 1)[0]
    return None


def note_printer(state_dir: Path) -> Callable[[str], None]:
    """How ``irsa-lab exec`` prints its notes on stderr, one ``irsa-lab:`` line each: an
    explanatory note once per state directory (remembered in its ``exec-notes-shown``
    file, since a learner runs exec again and again), a note about a problem every time."""
    marker = state_dir / NOTES_SHOWN_FILE
    try:
        shown = set(marker.read_text().splitlines())
    except OSError:
        shown = set()
    first = not shown

    def notify(note: str) -> None:
        nonlocal first
        key = _note_key(note)
        if key is not None:
            if key in shown:
                return
            shown.add(key)
            try:
                with marker.open("a", encoding="utf-8") as out:
                    out.write(key + "\n")
            except OSError:
                pass  # a read-only state directory: the notes come back next time
        print(f"irsa-lab: {note}", file=sys.stderr, flush=True)
        if first and key is not None:
            first = False
            print(
                f"irsa-lab: (notes like these are printed once per state directory; "
                f"delete {marker} to see them again)",
                file=sys.stderr,
                flush=True,
            )

    return notify
