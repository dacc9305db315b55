"""Notebook 01's helpers: real pods through the API server, the webhook really called."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from irsa_lab import constants as C
from irsa_lab.lessons import pod_mutation
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    stack = EmbeddedLab(
        state_dir=tmp_path_factory.mktemp("stage1"), seed=DEFAULT_SEED, clock=lab_clock(True)
    ).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    yield lab
    lab.close()


@pytest.fixture
def explorer(lab: Lab) -> Iterator[pod_mutation.MutationExplorer]:
    ex = pod_mutation.MutationExplorer(lab)
    yield ex
    ex.reset()


def test_mypod_gets_the_five_aws_variables_and_the_token_volume(lab: Lab) -> None:
    m = pod_mutation.create_mypod(lab)
    assert m.outcome == "patched"
    assert list(m.env()) == [
        C.ENV_STS_REGIONAL_ENDPOINTS,
        C.ENV_DEFAULT_REGION,
        C.ENV_REGION,
        C.ENV_ROLE_ARN,
        C.ENV_WEB_IDENTITY_TOKEN_FILE,
    ]
    assert m.token_volume == {
        "audience": C.DEFAULT_AUDIENCE,
        "expirationSeconds": C.DEFAULT_TOKEN_EXPIRATION_S,
        "path": C.TOKEN_FILE_NAME,
    }
    assert "read by the AWS SDK's web-identity credential provider" in m.summary


def test_the_diff_hides_api_server_defaults_but_keeps_the_webhooks_lines(lab: Lab) -> None:
    m = pod_mutation.create_mypod(lab)
    text = repr(m.diff_view())
    assert "tolerations" not in text and "dnsPolicy" not in text
    role_line = next(line for line in text.splitlines() if "AWS_ROLE_ARN" in line)
    assert role_line.startswith("+")
    assert "aws-iam-token" in m.diff.html


def test_the_admission_texts_show_the_request_and_the_decoded_patch(lab: Lab) -> None:
    m = pod_mutation.create_mypod(lab)
    assert m.record is not None
    request = pod_mutation.admission_request_text(m.record)
    assert "operation: CREATE" in request and "(other fields left out)" in request
    response = pod_mutation.admission_response_text(m.record)
    assert "patchType: JSONPatch" in response
    assert "base64 characters)" in response
    assert "add  /spec/containers" in response


def test_setting_the_audience_in_the_explorer_changes_the_new_pods_token_audience(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    explorer.audience = "my-audience"
    m = explorer.apply()
    assert m.token_volume is not None and m.token_volume["audience"] == "my-audience"
    assert explorer.state()["token_volume"]["audience"] == "my-audience"


def test_a_token_expiration_below_600_seconds_is_raised_to_600(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    explorer.token_expiration = "300"
    assert explorer.apply().token_volume["expirationSeconds"] == 600  # type: ignore[index]


def test_sts_regional_endpoints_false_drops_the_variable(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    explorer.sts_regional_endpoints = "false"
    assert C.ENV_STS_REGIONAL_ENDPOINTS not in explorer.apply().env("app")


def test_skip_containers_leaves_the_named_container_untouched(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    explorer.skip_containers = "sidecar"
    m = explorer.apply()
    assert m.mutated_containers() == ["app"]
    assert m.env("sidecar") == {}


def test_the_skip_label_keeps_the_api_server_from_calling_the_webhook(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    explorer.skip_label = True
    m = explorer.apply()
    assert not m.webhook_called
    assert m.outcome == "not called"
    assert m.token_volume is None


def test_controls_and_python_attributes_are_the_same_state(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    audience_box = explorer.controls[0]
    audience_box.value = "typed-in-the-box"
    assert explorer.audience == "typed-in-the-box"
    explorer.skip_label = True
    assert explorer.controls[4].value is True


def test_reset_puts_the_service_account_back_as_the_article_has_it(
    lab: Lab, explorer: pod_mutation.MutationExplorer
) -> None:
    explorer.audience = "x"
    explorer.token_expiration = "1200"
    explorer.apply()
    m = explorer.reset()
    annotations = lab.get_service_account(C.SERVICE_ACCOUNT)["metadata"]["annotations"]
    assert annotations == {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN}
    assert m.token_volume is not None and m.token_volume["audience"] == C.DEFAULT_AUDIENCE


def test_a_pod_created_while_the_webhook_is_down_is_stored_unmutated(lab: Lab) -> None:
    m = pod_mutation.webhook_down_demo(lab)
    assert m.outcome == "ignored"
    assert m.record is not None and "connection refused" in m.record.error
    assert m.token_volume is None
    assert lab.embedded is not None and lab.embedded.webhook_running


def test_a_pod_created_before_its_service_account_was_annotated_stays_unmutated(
    lab: Lab,
) -> None:
    late = pod_mutation.annotated_too_late(lab)
    assert late.before.token_volume is None and C.ENV_ROLE_ARN not in late.before.env()
    # Annotating the ServiceAccount changed nothing in the running pod...
    assert late.after_annotation.stored["metadata"]["uid"] == late.before.stored["metadata"]["uid"]
    assert C.ENV_ROLE_ARN not in late.after_annotation.env()
    # ...`kubectl rollout restart` made a new pod, which the webhook mutated.
    assert late.restart_output == f"deployment.apps/{pod_mutation.LATE_DEPLOYMENT} restarted"
    assert late.rolled_out.name != late.before.name
    assert late.rolled_out.env()[C.ENV_ROLE_ARN] == C.ROLE_ARN
    assert late.rolled_out.token_volume is not None


def test_the_skip_label_demo_is_not_sent_to_the_webhook(lab: Lab) -> None:
    assert pod_mutation.skip_label_demo(lab).outcome == "not called"


def test_focus_drops_only_the_listed_defaults() -> None:
    pod = {
        "spec": {
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "sa",
            "containers": [{"name": "c", "imagePullPolicy": "Always", "env": []}],
        }
    }
    assert pod_mutation.focus(pod) == {
        "spec": {"serviceAccountName": "sa", "containers": [{"name": "c", "env": []}]}
    }
    assert pod["spec"]["dnsPolicy"] == "ClusterFirst"  # the input is not changed
