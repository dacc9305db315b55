"""The pod diff: what the webhook added shows as added lines, with readers named."""

from __future__ import annotations

import copy
import re
from typing import Any

from irsa_lab.constants import ROLE_ARN, TOKEN_FILE, TOKEN_MOUNT_PATH
from irsa_lab.ui.diff import (
    API_SERVER,
    WEBHOOK,
    line_authors,
    patch_table,
    pod_yaml,
    side_by_side,
    summarize_mutation,
)

SUBMITTED: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "mypod", "namespace": "default"},
    "spec": {
        "serviceAccountName": "s3-readonly-sa",
        "containers": [
            {"name": "s3-readonly", "image": "amazon/aws-cli", "command": ["sleep", "3600"]}
        ],
    },
}
ENV = [
    {"name": "AWS_STS_REGIONAL_ENDPOINTS", "value": "regional"},
    {"name": "AWS_DEFAULT_REGION", "value": "eu-west-1"},
    {"name": "AWS_REGION", "value": "eu-west-1"},
    {"name": "AWS_ROLE_ARN", "value": ROLE_ARN},
    {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": TOKEN_FILE},
]
TOKEN_VOLUME = {
    "name": "aws-iam-token",
    "projected": {
        "sources": [
            {
                "serviceAccountToken": {
                    "audience": "sts.amazonaws.com",
                    "expirationSeconds": 86400,
                    "path": "token",
                }
            }
        ]
    },
}


def stored() -> dict[str, Any]:
    pod = copy.deepcopy(SUBMITTED)
    pod["metadata"].update(
        uid="7d1c",
        resourceVersion="42",
        creationTimestamp="2024-03-27T14:00:00Z",
        managedFields=[{"manager": "kubectl"}],
    )
    c = pod["spec"]["containers"][0]
    c["env"] = copy.deepcopy(ENV)
    c["volumeMounts"] = [{"name": "aws-iam-token", "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}]
    pod["spec"]["volumes"] = [copy.deepcopy(TOKEN_VOLUME)]
    pod["status"] = {"phase": "Pending"}
    return pod


def test_pod_yaml_drops_server_noise_and_keeps_a_kubectl_like_top_order() -> None:
    text = pod_yaml(stored())
    assert [line for line in text.splitlines() if not line.startswith(" ")] == [
        "apiVersion: v1",
        "kind: Pod",
        "metadata:",
        "spec:",
    ]
    for noise in (
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "managedFields",
        "status",
        "Pending",
    ):
        assert noise not in text


def test_the_webhook_additions_are_marked_as_added_lines_only() -> None:
    result = side_by_side(SUBMITTED, stored())
    added = [right for marker, _left, right in result.rows if marker == "+"]
    assert result.removed == 0
    assert result.changed == 0
    assert result.added == len(added) == 23
    assert "    - name: AWS_ROLE_ARN" in added
    assert "  - name: aws-iam-token" in added
    assert f"      mountPath: {TOKEN_MOUNT_PATH}" in added
    assert all(left is None for marker, left, _right in result.rows if marker == "+")
    # unchanged lines stay unmarked on both sides
    assert (" ", "kind: Pod", "kind: Pod") in result.rows


def test_changed_lines_are_paired_and_counted() -> None:
    after = copy.deepcopy(SUBMITTED)
    after["spec"]["containers"][0]["image"] = "amazon/aws-cli:2.15"
    result = side_by_side(SUBMITTED, after)
    assert result.changed == 1
    assert ("~", "    image: amazon/aws-cli", "    image: amazon/aws-cli:2.15") in result.rows
    assert result.text.count("\n~ ") == 1


def test_the_html_has_two_numbered_columns_and_textual_markers() -> None:
    html = side_by_side(SUBMITTED, stored()).html
    assert "as submitted" in html and "as stored" in html
    assert 'title="added"' in html
    assert "23 lines added, 0 removed, 0 changed" in html
    assert "difflib_chg" not in html  # no HtmlDiff counter ids
    assert html == side_by_side(SUBMITTED, stored()).html  # deterministic


def test_summary_names_each_env_var_with_the_program_that_reads_it() -> None:
    summary = summarize_mutation(SUBMITTED, stored())
    lines = summary.splitlines()
    assert lines[0] == "7 changes between the pod as submitted and as stored:"
    assert f'+ container "s3-readonly": env AWS_ROLE_ARN={ROLE_ARN}' in lines
    i = lines.index('+ container "s3-readonly": env AWS_DEFAULT_REGION=eu-west-1')
    assert "boto3/botocore and the AWS CLI" in lines[i + 1]
    i = lines.index('+ container "s3-readonly": env AWS_STS_REGIONAL_ENDPOINTS=regional')
    assert "STS endpoint" in lines[i + 1]
    assert "web-identity credential provider" in summary
    assert (
        f'+ container "s3-readonly": mount of volume "aws-iam-token" at {TOKEN_MOUNT_PATH} (read-only)'
        in lines
    )
    assert any(
        line.startswith('+ volume "aws-iam-token"')
        and "pod identity webhook" in line
        and "86400" in line
        for line in lines
    )


def test_summary_of_an_unmutated_pod_says_nothing_changed() -> None:
    assert summarize_mutation(SUBMITTED, SUBMITTED) == "No change: the pod was stored as submitted."


def test_patch_table_decodes_pointers_and_shows_values() -> None:
    patch = [
        {"op": "add", "path": "/spec/volumes", "value": [TOKEN_VOLUME]},
        {"op": "add", "path": "/spec/containers/0/env", "value": ENV},
        {"op": "add", "path": "/metadata/annotations/eks.amazonaws.com~1skip", "value": "true"},
    ]
    table = patch_table(patch)
    lines = table.splitlines()
    assert lines[0].split() == ["#", "op", "path", "value"]
    assert lines[2].split()[:3] == ["1", "add", "/spec/volumes"]
    assert "/metadata/annotations/eks.amazonaws.com/skip" in table
    assert "2. add /spec/containers/0/env:" in table
    assert "    - name: AWS_ROLE_ARN" in lines
    assert patch_table(patch, full=False).count("\n") == 4


# --- who added each line: the API server or the webhook ----------------------------

KUBE_API_ACCESS = {
    "name": "kube-api-access-x7k2p",
    "projected": {
        "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]
    },
}
KUBE_API_MOUNT = {
    "name": "kube-api-access-x7k2p",
    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    "readOnly": True,
}


def sent_to_webhook() -> dict[str, Any]:
    """What the API server sends the webhook: the ServiceAccount plugin has run."""
    pod = copy.deepcopy(SUBMITTED)
    pod["spec"]["containers"][0]["volumeMounts"] = [copy.deepcopy(KUBE_API_MOUNT)]
    pod["spec"]["volumes"] = [copy.deepcopy(KUBE_API_ACCESS)]
    return pod


def patched_by_webhook() -> dict[str, Any]:
    pod = sent_to_webhook()
    c = pod["spec"]["containers"][0]
    c["env"] = copy.deepcopy(ENV)
    c["volumeMounts"].append(
        {"name": "aws-iam-token", "mountPath": TOKEN_MOUNT_PATH, "readOnly": True}
    )
    pod["spec"]["volumes"].insert(0, copy.deepcopy(TOKEN_VOLUME))
    return pod


def stored_with_both() -> dict[str, Any]:
    pod = patched_by_webhook()
    for v in pod["spec"]["volumes"]:
        v["projected"]["defaultMode"] = 420  # the API server's defaulting, after the webhook
    return pod


def attributed() -> Any:
    submitted, stored_text = pod_yaml(SUBMITTED), pod_yaml(stored_with_both())
    authors = line_authors(
        submitted,
        stored_text,
        to_webhook=pod_yaml(sent_to_webhook()),
        from_webhook=pod_yaml(patched_by_webhook()),
    )
    return side_by_side(submitted, stored_text, authors=authors)


def test_lines_the_webhooks_patch_added_are_the_webhooks_and_the_rest_the_api_servers() -> None:
    result = attributed()
    by = {
        right: who
        for (marker, _left, right), who in zip(result.rows, result.authors, strict=True)
        if marker == "+"
    }
    assert by["    - name: AWS_ROLE_ARN"] == WEBHOOK
    assert by["    env:"] == WEBHOOK
    assert by["  - name: aws-iam-token"] == WEBHOOK
    assert by[f"      mountPath: {TOKEN_MOUNT_PATH}"] == WEBHOOK
    assert by["  - name: kube-api-access-x7k2p"] == API_SERVER
    assert by["      mountPath: /var/run/secrets/kubernetes.io/serviceaccount"] == API_SERVER
    assert by["          expirationSeconds: 3607"] == API_SERVER
    # the webhook's patch has no defaultMode: the API server defaulted it on both volumes
    defaults = [
        who
        for (marker, _l, right), who in zip(result.rows, result.authors, strict=True)
        if marker == "+" and right == "      defaultMode: 420"
    ]
    assert defaults == [API_SERVER, API_SERVER]


def test_the_counts_add_up_per_author_and_the_summary_names_both() -> None:
    result = attributed()
    webhook_yaml_lines = len(pod_yaml(patched_by_webhook()).splitlines()) - len(
        pod_yaml(sent_to_webhook()).splitlines()
    )
    assert result.added_by(WEBHOOK) == webhook_yaml_lines == 21
    assert result.added_by(API_SERVER) == result.added - webhook_yaml_lines
    assert result.added_by(API_SERVER) > 0
    assert result.summary == (
        f"{result.added} lines added ({result.added_by(API_SERVER)} by the API server, "
        f"21 by the webhook), 0 removed, 0 changed"
    )


def test_the_html_and_text_carry_a_by_column_and_a_colour_per_author() -> None:
    result = attributed()
    assert '<th style="' in result.html and ">by</th>" in result.html
    assert 'title="added by the webhook"' in result.html
    assert 'title="added by the API server"' in result.html
    webhook_row = next(line for line in result.text.splitlines() if "AWS_ROLE_ARN" in line)
    api_row = next(line for line in result.text.splitlines() if "kube-api-access-x7k2p" in line)
    assert webhook_row.startswith("+ webhook ")
    assert api_row.startswith("+ API server ")
    # two different backgrounds
    row_html = {
        who: next(
            part for part in result.html.split("<tr")[1:] if f'title="added by the {who}"' in part
        )
        for who in (WEBHOOK, API_SERVER)
    }
    assert "46,160,67" in row_html[WEBHOOK] and "46,160,67" not in row_html[API_SERVER]


def test_without_the_webhooks_pair_every_added_line_is_the_api_servers() -> None:
    submitted, stored_text = pod_yaml(SUBMITTED), pod_yaml(sent_to_webhook())
    result = side_by_side(submitted, stored_text, authors=line_authors(submitted, stored_text))
    assert result.added > 0
    assert result.added_by(API_SERVER) == result.added
    assert result.added_by(WEBHOOK) == 0
    assert f"{result.added} lines added ({result.added} by the API server, 0 by the webhook)" in (
        result.html
    )


def test_the_diff_table_fits_the_cell_and_wraps_long_lines() -> None:
    html = attributed().html
    assert "table-layout:fixed" in html and "width:100%" in html
    assert "white-space:pre;" not in html
    assert "white-space:pre-wrap" in html
    widths = [int(w) for w in re.findall(r"width:(\d+)px", html)]
    assert all(w <= 900 for w in widths)
