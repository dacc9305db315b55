"""Where a learner's pod, and the record of what happened to it, differ from EKS.

The suites measure the stand-ins against the real programs; this list is what no suite
can measure, because it is how the lab reaches into a pod and reads a real server's
records. Each entry: what, the lab, EKS, why it is acceptable. ``docs/fidelity.md``
shows them (``make fidelity``); ``docs/in-pod.md`` and ``docs/kind.md`` explain them.
"""

from __future__ import annotations

__all__ = ["LAB_DIFFERENCES"]

LAB_DIFFERENCES: tuple[tuple[str, str, str, str], ...] = (
    (
        "a pod's commands (embedded, k8s)",
        "`irsa-lab exec` runs on this machine with the pod's env and its projected volumes "
        "bind-mounted at their mountPaths in a user+mount namespace; no image, no container",
        "the container's own filesystem, network and processes",
        "the IRSA chain needs the pod's env and token files, which are the pod's own; "
        "docs/in-pod.md",
    ),
    (
        "pod paths without user namespaces",
        "macOS, Ubuntu 24.04's default or `IRSA_LAB_EXEC_MOUNTS=0`: pod paths are rewritten "
        "in the arguments and env; a path a command builds itself does not resolve",
        "every path resolves in the container",
        "the SDK reads the token path from the env, which is rewritten; the note says so",
    ),
    (
        "the EC2 API (lab 09)",
        "a stand-in with `DescribeInstances` and `ModifyInstanceMetadataOptions` only, for "
        "the one node instance; a change answers `pending` and the next describe shows "
        "`applied`",
        "the whole EC2 API, every instance of the account; a change applies within seconds",
        "the lab needs only the node's metadata options, and the stand-in changes the same "
        "settings its IMDS enforces; no suite runs real EC2 here",
    ),
    (
        "region of a pod without a role",
        "`irsa-lab exec` adds `AWS_DEFAULT_REGION` (the node's region) when the pod's env "
        "names none",
        "the amazon/aws-cli image (CLI v2) reads the region from IMDS",
        "the lab's aws CLI is v1, which never reads it from IMDS (aws/aws-cli#6297)",
    ),
    (
        "endpoints seen from a kind pod",
        "STS, IAM, S3 and IMDS at the kind network's gateway (Linux) or "
        "host.docker.internal (Docker Desktop), set by `irsa-lab exec` through `env`; the "
        "lab CA from the ConfigMap `irsa-lab-ca`",
        "regional public endpoints, Amazon's public CAs, IMDS at 169.254.169.254",
        "only where the requests go changes, not what they carry; docs/kind.md",
    ),
    (
        "the admission record on a real API server (k8s, kind)",
        "rebuilt from the Request-level audit event: the patch and the outcome are the "
        "server's; the AdmissionReview's uid, the response body and the call's duration "
        "are not in the log and are shown as missing",
        "the same audit annotations (EKS sends the audit log to CloudWatch when enabled)",
        "the patch, the thing stage 1 teaches, is the real one",
    ),
    (
        "audit annotation index",
        "the embedded API server numbers a call's `round_R_index_I` among the webhooks "
        "that matched the pod",
        "kube-apiserver numbers it among every webhook of every configuration, sorted by "
        "configuration name",
        "the embedded lab has one configuration with one webhook, where both give index 0",
    ),
    (
        "the reason a webhook call failed open",
        "the embedded API server keeps the error in its admission record",
        "only in kube-apiserver's own log (`Failed calling webhook, failing open`), not in "
        "the audit log",
        "the lessons say where to look on a real server; the outcome is the same",
    ),
    (
        "token renewal on a real API server",
        "explained with the token's own times; `renew_token(lab, live=True)` waits for the "
        "renewal of a 600 s token (about 480 s)",
        "the kubelet renews after 80% of the lifetime, on the wall clock",
        "only the embedded lab can move its clock; a real API server signs with the time it reads",
    ),
)
