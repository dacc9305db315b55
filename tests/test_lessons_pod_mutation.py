"""Notebook 01's helpers: real pods through the API server, the webhook really called."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from irsa_lab import constants as C
from irsa_lab.lessons import pod_mutation
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock
from irsa_lab.ui.diff import API_SERVER, WEBHOOK, pod_yaml
from irsa_lab.ui.static import RUN_TO_USE


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


# --- who added what: the API server or the webhook -----------------------------------


def test_the_mypod_diff_credits_the_webhook_with_its_patch_and_the_api_server_with_the_rest(
    lab: Lab,
) -> None:
    m = pod_mutation.create_mypod(lab)
    d = m.diff
    added = [
        (right, who)
        for (marker, _left, right), who in zip(d.rows, d.authors, strict=True)
        if marker == "+"
    ]
    assert all(who == WEBHOOK for right, who in added if right and "AWS_" in right)
    assert all(who == API_SERVER for right, who in added if right and "kube-api-access" in right)
    assert ("  - name: aws-iam-token", WEBHOOK) in added
    # The webhook's count is what its own JSONPatch adds to the pod it was sent.
    pair = m.webhook_pair()
    assert pair is not None
    patched_lines = len(pod_yaml(pod_mutation.focus(pair[1])).splitlines()) - len(
        pod_yaml(pod_mutation.focus(pair[0])).splitlines()
    )
    assert d.added_by(WEBHOOK) == patched_lines > 0
    assert d.added_by(API_SERVER) == d.added - patched_lines > 0
    assert f"{d.added_by(API_SERVER)} by the API server, {patched_lines} by the webhook" in (
        repr(m.diff_view())
    )


def test_with_the_skip_label_every_added_line_is_the_api_servers_and_none_the_webhooks(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    explorer.skip_label = True
    m = explorer.apply()
    assert m.diff.added > 0
    assert explorer.state()["lines_added"] == {API_SERVER: m.diff.added, WEBHOOK: 0}
    assert f"({m.diff.added} by the API server, 0 by the webhook)" in explorer.diff_html.value


def test_a_pod_the_webhook_patched_shows_lines_from_both_authors_in_the_explorer(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    m = explorer.apply()
    counts = explorer.state()["lines_added"]
    assert counts[WEBHOOK] > 0 and counts[API_SERVER] > 0
    assert counts[WEBHOOK] + counts[API_SERVER] == m.diff.added
    assert 'title="added by the webhook"' in explorer.diff_html.value
    assert 'title="added by the API server"' in explorer.diff_html.value


# --- the token-expiration field -------------------------------------------------------


def test_a_token_expiration_that_is_not_a_number_is_shown_as_ignored_for_the_default(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    explorer.token_expiration = "abc"
    assert "ignores the annotation" in explorer.token_note.value
    assert str(C.DEFAULT_TOKEN_EXPIRATION_S) in explorer.token_note.value
    m = explorer.apply()
    assert m.token_volume is not None
    applied = m.token_volume["expirationSeconds"]
    assert applied == C.DEFAULT_TOKEN_EXPIRATION_S
    note = explorer.state()["token_expiration_note"]
    assert note.startswith("'abc' is not a base-10 integer")
    assert note.endswith(f"the new pod's token volume has expirationSeconds {applied}")


def test_the_token_expiration_note_follows_the_webhooks_parse_and_clamp() -> None:
    note = pod_mutation.token_expiration_note
    assert "raises it to 600" in note("300")
    assert "raises it to 600" in note("-5")
    assert "used as is" in note("200000")
    for bad in ("1h", "3600.0", " 3600", "3_600"):
        assert "ignores the annotation" in note(bad), bad
    assert note("").startswith("not set")


# --- the stored output and the layout ------------------------------------------------


def test_the_explorers_stored_output_is_a_readable_summary_not_a_python_repr(lab: Lab) -> None:
    bundle = pod_mutation.MutationExplorer(lab)._repr_mimebundle_()
    text = bundle["text/plain"]
    assert text.startswith(f"Mutation explorer. {RUN_TO_USE}")
    assert "children=" not in text and "Layout(" not in text
    assert f"ServiceAccount {C.SERVICE_ACCOUNT}: " in text
    assert "<b>Mutation explorer</b>" in bundle["text/html"]
    assert pod_mutation.MutationExplorer(lab)._repr_mimebundle_()["text/plain"] == text


def test_the_stored_output_after_a_run_names_the_outcome_and_the_authors(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    explorer.skip_label = True
    m = explorer.apply()
    last = explorer.static_lines()[-1]
    assert last == f"Last probe pod: webhook not called; {m.diff.summary}"
    assert "0 by the webhook" in last


def test_the_controls_sit_in_one_row_right_above_the_button_and_the_result(
    explorer: pod_mutation.MutationExplorer,
) -> None:
    row, button, facts, diff = explorer.children
    assert (button, facts, diff) == (explorer.apply_button, explorer.facts_html, explorer.diff_html)
    assert len(row.children) == len(explorer.controls) == 5
    assert row.layout.grid_template_columns == "repeat(5, minmax(0, 1fr))"
    for cell, control in zip(row.children, explorer.controls, strict=True):
        assert control in cell.children
    assert explorer.token_note in row.children[2].children  # under the token-expiration field

    def widths(w: Any) -> list[str]:
        own = [v for v in (w.layout.width, w.layout.max_width) if v]
        return own + [x for child in getattr(w, "children", ()) for x in widths(child)]

    for value in widths(explorer):
        number = float(re.sub(r"[a-z%]+$", "", value)) if value != "auto" else 0
        px = number * 16 if value.endswith("em") else number if value.endswith("px") else 0
        assert px <= 900, value


# --- the article's pod -------------------------------------------------------------------


def test_mypod_is_applied_like_kubectl_apply_with_the_articles_container_name(lab: Lab) -> None:
    m = pod_mutation.create_mypod(lab)
    stored = lab.get_pod(C.POD_NAME)
    assert [c["name"] for c in stored["spec"]["containers"]] == ["s3-readonly"]
    applied = json.loads(stored["metadata"]["annotations"][pod_mutation.LAST_APPLIED])
    assert applied["spec"]["containers"][0]["name"] == "s3-readonly"
    assert applied["metadata"]["annotations"] == {}
    # kubectl's own diff hides it: it is on both sides
    assert pod_mutation.LAST_APPLIED not in repr(m.diff_view())
