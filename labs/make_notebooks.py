"""Write the lab notebooks from the exercise catalogue, then run each once to store its outputs.

Usage (from the repository root):  .venv/bin/python labs/make_notebooks.py [--no-execute] [--only 10,11]

``--only`` rewrites just the labs with those ids (the others keep their file).

The stored outputs come from a clean run as shipped: every check says "not solved yet".
Progress of that run goes to a throw-away state directory, not the author's.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from irsa_lab.labs import EXERCISES, Exercise

HERE = Path(__file__).resolve().parent


def md(text: str, tag: str | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(text.strip())
    if tag:
        cell.metadata["tags"] = [tag]
    return cell


def code(text: str, tag: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(text.strip())
    cell.metadata["tags"] = [tag]
    return cell


def notebook(ex: Exercise) -> nbformat.NotebookNode:
    where = f"{ex.namespace}/{ex.pod}" if ex.namespace != "default" else ex.pod
    on_node = "IMDS" in ex.stage  # the node's EC2 instance is part of the puzzle
    clients = (
        '(`lab.aws_client("iam")`, `lab.aws_client("ec2")`, what the `aws` CLI does) for '
        "IAM and the node's EC2 instance"
        if on_node
        else '(`lab.aws_client("iam")`, what the `aws` CLI does) for IAM'
    )
    ec2_look = (
        '\n- the node instance and its metadata options: `lab.aws_client("ec2").describe_instances()`'
        if on_node
        else ""
    )
    ec2_fix = (
        '\n# EC2 client (lab.aws_client("ec2").modify_instance_metadata_options, ...).'
        if on_node
        else ""
    )
    pod_identity = "Pod Identity" in ex.stage  # the EKS API and another role
    if pod_identity:
        clients = (
            '(`lab.aws_client("eks")`, `lab.aws_client("iam")`, what the `aws` CLI does) for '
            "EKS Pod Identity associations and IAM"
        )
    look = (
        f"""
- the pod as stored: `lab.get_pod("{ex.pod}", "{ex.namespace}")`
- the cluster's Pod Identity associations: `lab.aws_client("eks").list_pod_identity_associations(clusterName="irsa-lab")` (then `describe_pod_identity_association`)
- the role's trust policy: `lab.aws_client("iam").get_role(RoleName="ReportsPodIdentityRole")["Role"]["AssumeRolePolicyDocument"]`
- the token in the pod: `lab.volume_path(lab.get_pod("{ex.pod}"), "eks-pod-identity-token")` holds it (decode it with `irsa_lab.ui.decoder`)"""
        if pod_identity
        else f"""
- the pod as stored: `lab.get_pod("{ex.pod}", "{ex.namespace}")`
- its ServiceAccount: `lab.get_service_account("s3-readonly-sa", "{ex.namespace}")`
- the role's trust policy: `lab.aws_client("iam").get_role(RoleName="AmazonEKSPodS3ReadOnlyAccessRole")["Role"]["AssumeRolePolicyDocument"]`
- the OIDC providers: `lab.aws_client("iam").list_open_id_connect_providers()`
- the token in the pod: `lab.read_token("{ex.pod}", "{ex.namespace}")` (decode it with `irsa_lab.ui.decoder`){ec2_look}"""
    )
    fix_comment = (
        """
# Your fix here: boto3's EKS client (lab.aws_client("eks").create_pod_identity_association,
# .delete_pod_identity_association, ...), IAM's (lab.aws_client("iam").update_assume_role_policy,
# ...) and the kubernetes client (lab.core.delete_namespaced_pod, lab.core.create_namespaced_pod).
"""
        if pod_identity
        else f"""
# Your fix here: the kubernetes client (lab.core.patch_namespaced_service_account,
# lab.core.delete_namespaced_pod, lab.core.create_namespaced_pod, ...) and boto3's IAM
# client (lab.aws_client("iam").update_assume_role_policy, ...).{ec2_fix}
"""
    )
    cells = [
        md(
            f"""
# Lab {ex.id}: {ex.title}

*Link of the chain: {ex.stage}.*

{ex.story}

**Your goal:** {ex.goal}

Fix it the way you would on a real cluster and account: the official `kubernetes`
client (`lab.core`, what `kubectl` does) for the cluster, and boto3
{clients}.
""",
            "story",
        ),
        code(
            f"""
import irsa_lab
from irsa_lab import labs

lab = irsa_lab.lab()        # the running lab (local, nothing to install)
ex = labs.start("{ex.id}")       # breaks the chain on purpose
""",
            "setup",
        ),
        md(
            f"""
## What the pod sees

The same as `kubectl exec {where} -- aws sts get-caller-identity`:
""",
            "symptom",
        ),
        code("ex.whoami()", "symptom"),
        md(
            f"""
## Look around

Some places to start (add cells as you like). `lab.get_…` return what the API server
sends, as a dict (`kubectl get … -o json`); `lab.core.read_namespaced_…` give the
same objects as the `kubernetes` client's classes.
{look}
""",
            "explore",
        ),
        md("## Your fix", "fix"),
        code(fix_comment, "fix"),
        md("## Check\n\nRun it after each attempt: it runs the real thing in the pod.", "check"),
        code("ex.check()", "check"),
        md(
            "## Hints\n\nThree levels: a nudge, the concept (with the notebook section to "
            "reread), then the solution in words. Open them one at a time, here or with "
            "`ex.hint(1)`, `ex.hint(2)`, `ex.hint(3)` (those print the hint and note the "
            "level in your progress).",
            "hints",
        ),
        code("ex.hints()", "hints"),
        md(
            f"""
## Stuck, or done?

The solution is kept out of this notebook (`labs/solutions/{ex.name}.py`). Uncomment a
line to read it, or to run it. `ex.reset()` rebuilds the broken state so you can try
again; `labs.progress()` shows all labs (kept across kernel restarts).
""",
            "solution",
        ),
        code(
            f"""
# labs.show_solution("{ex.id}")
# labs.apply_solution("{ex.id}")
# ex.reset()
labs.progress()  # the guided notebooks and every lab
""",
            "solution",
        ),
    ]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["irsa_lab"] = {"exercise": ex.id}
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="irsa-lab-build-") as state:
        old = os.environ.get("IRSA_LAB_STATE_DIR")
        os.environ["IRSA_LAB_STATE_DIR"] = state
        try:
            NotebookClient(
                nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
            ).execute()
        finally:
            if old is None:
                os.environ.pop("IRSA_LAB_STATE_DIR", None)
            else:
                os.environ["IRSA_LAB_STATE_DIR"] = old


def _only(argv: list[str]) -> set[str] | None:
    """The ids after ``--only`` (``--only 10,11`` or ``--only=10,11``), None for all."""
    for i, arg in enumerate(argv):
        if arg == "--only" and i + 1 < len(argv):
            return {x.strip() for x in argv[i + 1].split(",") if x.strip()}
        if arg.startswith("--only="):
            return {x.strip() for x in arg.split("=", 1)[1].split(",") if x.strip()}
    return None


def main(argv: list[str]) -> int:
    only = _only(argv)
    unknown = (only or set()) - {ex.id for ex in EXERCISES}
    if unknown:
        print(
            f"no lab {', '.join(sorted(unknown))}; the ids are {', '.join(ex.id for ex in EXERCISES)}"
        )
        return 2
    for ex in EXERCISES:
        if only is not None and ex.id not in only:
            continue
        nb = notebook(ex)
        if "--no-execute" not in argv:
            execute(nb, HERE)
        path = HERE / f"{ex.name}.ipynb"
        nbformat.write(nb, path)
        print(f"wrote {path.relative_to(HERE.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
