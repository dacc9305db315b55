"""Every exercise, in process, against one embedded lab and through the real clients.

For each: the broken state fails its check with the expected hint; one plausible wrong
fix still fails (with the hint that names why); after a reset the exercise is broken
again; the hidden solution makes it pass; and progress outlives the Python process.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from irsa_lab import constants as C
from irsa_lab import labs
from irsa_lab.labs import catalog
from irsa_lab.labs.probes import provider_arn, trust_policy
from irsa_lab.session import Lab, lab, reset_lab


@pytest.fixture(scope="module")
def the_lab() -> Iterator[Lab]:
    reset_lab()
    yield lab()
    reset_lab()


def _recreate(the_lab: Lab, manifest: dict[str, Any]) -> None:
    ns = manifest["metadata"].get("namespace", C.NAMESPACE)
    the_lab.core.delete_namespaced_pod(manifest["metadata"]["name"], ns, grace_period_seconds=0)
    the_lab.core.create_namespaced_pod(ns, manifest)


def _annotate(the_lab: Lab, annotations: dict[str, str | None], ns: str = C.NAMESPACE) -> None:
    the_lab.core.patch_namespaced_service_account(
        C.SERVICE_ACCOUNT, ns, {"metadata": {"annotations": annotations}}
    )


def _put_trust(the_lab: Lab, policy: dict[str, Any]) -> None:
    the_lab.aws_client("iam").update_assume_role_policy(
        RoleName=C.ROLE_NAME, PolicyDocument=json.dumps(policy)
    )


def _sub_key(the_lab: Lab) -> str:
    return the_lab.endpoints["issuer"].removeprefix("https://") + ":sub"


# --- one plausible wrong answer per exercise ----------------------------------------------------


def wrong_01_annotate_again_without_recreating(the_lab: Lab) -> None:
    _annotate(the_lab, {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN})


def wrong_02_set_the_skip_label_to_false(the_lab: Lab) -> None:
    manifest = catalog.pod_manifest()
    manifest["metadata"]["labels"] = {C.SKIP_WEBHOOK_LABEL: "false"}
    _recreate(the_lab, manifest)


def wrong_03_annotate_and_recreate_but_leave_the_trust_policy(the_lab: Lab) -> None:
    _annotate(the_lab, {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN}, catalog.ANALYTICS)
    _recreate(the_lab, catalog.pod_manifest(catalog.ANALYTICS))


def wrong_04_drop_the_conditions_altogether(the_lab: Lab) -> None:
    policy = trust_policy(the_lab)
    del policy["Statement"][0]["Condition"]
    _put_trust(the_lab, policy)


def wrong_05_change_the_tokens_audience_instead(the_lab: Lab) -> None:
    _annotate(the_lab, {C.AUDIENCE_ANNOTATION: catalog.WRONG_AUDIENCE})
    _recreate(the_lab, catalog.pod_manifest())


def wrong_06_recreate_the_provider_without_client_ids(the_lab: Lab) -> None:
    the_lab.aws_client("iam").create_open_id_connect_provider(
        Url=the_lab.endpoints["issuer"], ThumbprintList=[C.EKS_OIDC_THUMBPRINT]
    )


def wrong_07_string_like_on_the_wrong_key(the_lab: Lab) -> None:
    policy = trust_policy(the_lab)
    cond = policy["Statement"][0]["Condition"]
    aud_key = _sub_key(the_lab).replace(":sub", ":aud")
    cond["StringLike"] = {aud_key: cond["StringEquals"].pop(aud_key)}
    _put_trust(the_lab, policy)


def wrong_08_add_the_token_file_variable_by_hand(the_lab: Lab) -> None:
    manifest = catalog.pod_manifest()
    env = copy.deepcopy(catalog.HAND_SET_ENV) + [
        {"name": C.ENV_WEB_IDENTITY_TOKEN_FILE, "value": C.TOKEN_FILE}
    ]
    manifest["spec"]["containers"][0]["env"] = env
    _recreate(the_lab, manifest)


def wrong_09_lower_the_hop_limit_but_keep_imdsv1(the_lab: Lab) -> None:
    _annotate(the_lab, {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN})
    _recreate(the_lab, catalog.pod_manifest())
    the_lab.aws_client("ec2").modify_instance_metadata_options(
        InstanceId=C.NODE_INSTANCE_ID, HttpPutResponseHopLimit=1
    )


def wrong_10_create_the_right_association_but_keep_the_pod(the_lab: Lab) -> None:
    the_lab.aws_client("eks").create_pod_identity_association(
        clusterName=C.CLUSTER_NAME,
        namespace=C.NAMESPACE,
        serviceAccount=catalog.PI_SERVICE_ACCOUNT,
        roleArn=catalog.PI_ROLE_ARN,
    )


def wrong_11_recreate_the_pod_instead(the_lab: Lab) -> None:
    _recreate(the_lab, catalog.pod_identity_manifest())


def wrong_03b_too_broad_trust(the_lab: Lab) -> None:
    wrong_03_annotate_and_recreate_but_leave_the_trust_policy(the_lab)
    policy = trust_policy(the_lab)
    cond = policy["Statement"][0]["Condition"]
    cond["StringLike"] = {_sub_key(the_lab): "system:serviceaccount:*:s3-readonly-sa"}
    del cond["StringEquals"][_sub_key(the_lab)]
    _put_trust(the_lab, policy)


# exercise id -> (hint when broken, wrong fix, hint after the wrong fix)
CASES: dict[str, tuple[str, Callable[[Lab], None], str]] = {
    "01": ("node-role", wrong_01_annotate_again_without_recreating, "node-role"),
    "02": ("skip-label", wrong_02_set_the_skip_label_to_false, "skip-label"),
    "03": (
        "sa-without-role",
        wrong_03_annotate_and_recreate_but_leave_the_trust_policy,
        "access-denied",
    ),
    "04": ("access-denied", wrong_04_drop_the_conditions_altogether, "trust-too-broad"),
    "05": (
        "audience-not-a-client-id",
        wrong_05_change_the_tokens_audience_instead,
        "token-audience-changed",
    ),
    "06": (
        "no-oidc-provider",
        wrong_06_recreate_the_provider_without_client_ids,
        "audience-not-a-client-id",
    ),
    "07": ("access-denied", wrong_07_string_like_on_the_wrong_key, "access-denied"),
    "08": ("no-token-mount", wrong_08_add_the_token_file_variable_by_hand, "no-token-mount"),
    "09": ("node-role", wrong_09_lower_the_hop_limit_but_keep_imdsv1, "imds-reachable"),
    "10": ("node-role", wrong_10_create_the_right_association_but_keep_the_pod, "pod-not-mutated"),
    "11": ("eks-auth-access-denied", wrong_11_recreate_the_pod_instead, "eks-auth-access-denied"),
}
# The role a solved exercise's pod runs as: the IRSA role, or the Pod Identity labs' own.
SOLVED_ROLE = {"10": catalog.PI_ROLE_NAME, "11": catalog.PI_ROLE_NAME}


def test_every_exercise_has_a_case_here() -> None:
    assert set(CASES) == {ex.id for ex in labs.EXERCISES}


@pytest.mark.parametrize("exercise_id", sorted(CASES))
def test_broken_then_wrong_fix_then_reset_then_solution(
    the_lab: Lab, exercise_id: str, capsys: pytest.CaptureFixture[str]
) -> None:
    broken_hint, wrong_fix, wrong_hint = CASES[exercise_id]
    labs.start(exercise_id, the_lab)

    first = labs.check(exercise_id, the_lab)
    assert (first.passed, first.error, first.hint) == (False, False, broken_hint), first.message

    wrong_fix(the_lab)
    after_wrong = labs.check(exercise_id, the_lab)
    assert (after_wrong.passed, after_wrong.hint) == (False, wrong_hint), after_wrong.message

    labs.reset(exercise_id, the_lab)
    again = labs.check(exercise_id, the_lab)
    assert (again.passed, again.hint) == (False, broken_hint), again.message

    labs.apply_solution(exercise_id)
    solved = labs.check(exercise_id, the_lab)
    assert solved.passed, solved.message
    assert SOLVED_ROLE.get(exercise_id, C.ROLE_NAME) in solved.message

    out = capsys.readouterr().out
    assert out.count("not solved yet") == 3 and f"✔ lab {exercise_id} solved" in out
    entry = labs.Progress.load().entries[exercise_id]
    assert entry.solved and entry.checks == 4 and entry.solution_applied


# What the first check of a fresh exercise may not say: the fix, in any of its words.
FIX_WORDS = {
    "01": (C.ROLE_ARN_ANNOTATION, "role-arn", "annotat", "recreate", "delete", "created"),
    "09": (
        "HttpTokens",
        "HttpPutResponseHopLimit",
        "hop limit",
        "hop_limit",
        "metadata option",
        "MetadataOptions",
        "IMDSv",
        "http_tokens",
        "role-arn",
        "annotat",
    ),
}


@pytest.mark.parametrize("exercise_id", sorted(FIX_WORDS))
def test_the_first_check_says_what_the_learner_observes_not_the_fix(
    the_lab: Lab, exercise_id: str
) -> None:
    labs.start(exercise_id, the_lab)
    first = labs.check(exercise_id, the_lab, quiet=True)
    assert not first.passed and not first.error, first.message
    shown = str(first)
    for word in FIX_WORDS[exercise_id]:
        assert word.lower() not in shown.lower(), f"{word!r} gives the fix away: {shown}"
    # The symptom, in the words `aws sts get-caller-identity` gives: the node's role.
    assert f"runs as the role {C.NODE_ROLE_NAME}" in first.message
    if exercise_id == "09":
        assert catalog.BATCH_POD in first.message


def test_lab_05_passes_once_the_right_audience_is_added_as_hint_3_says(the_lab: Lab) -> None:
    labs.start("05", the_lab)
    the_lab.aws_client("iam").add_client_id_to_open_id_connect_provider(
        OpenIDConnectProviderArn=provider_arn(the_lab), ClientID=C.DEFAULT_AUDIENCE
    )
    listed = the_lab.aws_client("iam").get_open_id_connect_provider(
        OpenIDConnectProviderArn=provider_arn(the_lab)
    )["ClientIDList"]
    assert catalog.WRONG_AUDIENCE in listed  # the misspelt one is still there
    assert labs.check("05", the_lab, quiet=True).passed
    hint3 = labs.get("05").hints[2]
    assert "optional" in hint3 and "add_client_id_to_open_id_connect_provider" in hint3


def test_lab_09_is_solved_with_the_ec2_api_and_the_tool_is_named_before_hint_3(
    the_lab: Lab,
) -> None:
    ex = labs.get("09")
    assert 'aws_client("ec2")' in ex.hints[0] and "modify_instance_metadata_options" in ex.hints[1]
    labs.start("09", the_lab)
    _annotate(the_lab, {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN})
    _recreate(the_lab, catalog.pod_manifest())
    ec2 = the_lab.aws_client("ec2")
    [node] = ec2.describe_instances()["Reservations"][0]["Instances"]
    ec2.modify_instance_metadata_options(
        InstanceId=node["InstanceId"], HttpTokens="required", HttpPutResponseHopLimit=1
    )
    result = labs.check("09", the_lab, quiet=True)
    assert result.passed, result.message
    assert f"{catalog.BATCH_POD} (no role) finds no credentials at all" in result.message


def test_a_too_broad_trust_policy_does_not_pass_even_though_the_pod_gets_the_role(
    the_lab: Lab,
) -> None:
    labs.start("03", the_lab)
    wrong_03b_too_broad_trust(the_lab)
    result = labs.check("03", the_lab)
    assert not result.passed and result.hint == "trust-too-broad", result.message


def test_a_learner_can_redo_a_solved_exercise_after_reset_and_progress_outlives_the_process(
    the_lab: Lab,
) -> None:
    labs.start("04", the_lab)
    labs.apply_solution("04")
    assert labs.check("04", the_lab).passed
    labs.reset("04", the_lab)
    redo = labs.check("04", the_lab)
    assert not redo.passed and redo.hint == "access-denied"
    # the learner fixes it by hand this time
    policy = trust_policy(the_lab)
    policy["Statement"][0]["Condition"]["StringEquals"][_sub_key(the_lab)] = (
        f"system:serviceaccount:{C.NAMESPACE}:{C.SERVICE_ACCOUNT}"
    )
    _put_trust(the_lab, policy)
    assert labs.check("04", the_lab).passed
    code = (
        "from irsa_lab.labs import Progress; e = Progress.load().entries['04']; "
        "print(e.solved, e.checks, e.status)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split(maxsplit=2) == ["True", "3", "solved (with the solution)\n"]


def test_reset_restores_the_default_scenario_whatever_was_broken(the_lab: Lab) -> None:
    labs.start("06", the_lab)
    labs.modify_instance_metadata_options(
        the_lab, http_tokens="required", http_put_response_hop_limit=1
    )
    labs.reset("01", the_lab)
    iam = the_lab.aws_client("iam")
    provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn(the_lab))
    assert provider["ClientIDList"] == [C.DEFAULT_AUDIENCE]
    assert labs.modify_instance_metadata_options(the_lab) == {
        "HttpTokens": "optional",
        "HttpPutResponseHopLimit": 2,
    }
    equals = trust_policy(the_lab)["Statement"][0]["Condition"]["StringEquals"]
    assert equals[_sub_key(the_lab)] == f"system:serviceaccount:{C.NAMESPACE}:{C.SERVICE_ACCOUNT}"


@pytest.mark.parametrize(
    ("code", "message", "hint"),
    [
        (
            "AccessDenied",
            "Not authorized to perform sts:AssumeRoleWithWebIdentity",
            "access-denied",
        ),
        (
            "InvalidIdentityToken",
            "No OpenIDConnect provider found in your account for https://oidc.example/id/X",
            "no-oidc-provider",
        ),
        ("InvalidIdentityToken", "Incorrect token audience", "audience-not-a-client-id"),
        ("ExpiredTokenException", "Token expired: current date/time 2 ...", "sdk-error"),
        (
            "InvalidIdentityToken",
            "The token signature could not be verified with the identity provider's key",
            "invalid-identity-token",
        ),
    ],
)
def test_the_hint_follows_the_sts_failure_class(
    monkeypatch: pytest.MonkeyPatch, code: str, message: str, hint: str
) -> None:
    from irsa_lab.labs.exercise import NotSolved
    from irsa_lab.labs.probes import Identity

    me = Identity(error=code, operation="AssumeRoleWithWebIdentity", message=message)
    monkeypatch.setattr(catalog, "whoami", lambda *_a, **_k: me)
    with pytest.raises(NotSolved) as exc:
        catalog._runs_as_role(None)  # type: ignore[arg-type]
    assert exc.value.hint == hint


def test_the_lab_get_readers_all_return_what_the_api_server_sent_as_plain_dicts(
    the_lab: Lab,
) -> None:
    """One convention for ``lab.get_…``: the API server's JSON, the same object that
    ``lab.core`` returns as the kubernetes client's classes."""
    labs.reset("01", the_lab)
    sanitize = the_lab.api_client.sanitize_for_serialization
    pairs = [
        (
            the_lab.get_service_account(C.SERVICE_ACCOUNT),
            the_lab.core.read_namespaced_service_account(C.SERVICE_ACCOUNT, C.NAMESPACE),
        ),
        (
            the_lab.get_pod(C.POD_NAME),
            the_lab.core.read_namespaced_pod(C.POD_NAME, C.NAMESPACE),
        ),
    ]
    for as_dict, as_object in pairs:
        assert type(as_dict) is dict
        assert as_dict["metadata"]["uid"] == as_object.metadata.uid
        assert as_dict["metadata"].get("annotations") == sanitize(as_object)["metadata"].get(
            "annotations"
        )
    assert type(the_lab.get_webhook_configuration()) is dict
