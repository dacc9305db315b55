"""Notebook 02's helpers: the token file, its verification, renewal, and a deleted pod."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from irsa_lab import constants as C
from irsa_lab.lessons import pod_mutation, the_token
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock


def _start(folder: Path) -> Lab:
    stack = EmbeddedLab(state_dir=folder, seed=DEFAULT_SEED, clock=lab_clock(True)).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    pod_mutation.create_mypod(lab)
    return lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab whose clock and pods the tests below do not change."""
    lab = _start(tmp_path_factory.mktemp("stage2"))
    yield lab
    lab.close()


@pytest.fixture
def fresh_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """A lab of its own, for tests that move the clock or delete the pod."""
    lab = _start(tmp_path_factory.mktemp("stage2-fresh"))
    yield lab
    lab.close()


def test_the_listing_shows_the_kubelets_atomic_layout_and_modes(lab: Lab) -> None:
    lines = the_token.token_volume_listing(lab).splitlines()
    assert lines[0].startswith("on the node:       /var/lib/kubelet/pods/")
    assert lines[2] == f"in the container:  {C.TOKEN_MOUNT_PATH} (read-only mount)"
    assert "lrwxrwxrwx  token -> ..data/token" in lines
    data = next(line for line in lines if " ..data -> " in line)
    folder = data.split(" -> ")[1]
    assert folder.startswith("..2024_03_27_14_00_00.")
    assert f"-rw-r--r--  {folder}/token  (" in "\n".join(lines)


def test_the_listing_says_where_the_file_is_on_this_machine(lab: Lab) -> None:
    lines = the_token.token_volume_listing(lab).splitlines()
    prefix = "on this machine:   "
    assert lines[1].startswith(prefix)
    here = Path(lines[1].removeprefix(prefix))
    # the lab's kubelet wrote it under the lab's state folder, on the node's layout
    assert here.is_relative_to(lab.state_dir)
    node = lines[0].removeprefix("on the node:       ").removeprefix("/var/lib/kubelet/")
    assert here.as_posix().endswith("/" + node)
    assert (here / C.TOKEN_FILE_NAME).read_text() == lab.read_token()


def test_short_token_keeps_the_token_unusable(lab: Lab) -> None:
    token = lab.read_token()
    shown = the_token.short_token(token)
    assert token not in shown
    assert shown.startswith(token[:40]) and f"({len(token)} characters)" in shown


def test_the_walkthrough_fetches_discovery_and_jwks_and_accepts_the_token(lab: Lab) -> None:
    text = the_token.verify_walkthrough(lab, lab.read_token())
    issuer = lab.endpoints["issuer"]
    assert f"GET {issuer}/.well-known/openid-configuration" in text
    assert "the document names the same issuer as the token: True" in text
    assert "=> token accepted" in text


def test_a_tampered_sub_fails_at_the_signature_in_the_decoder(lab: Lab) -> None:
    decoder = the_token.token_decoder(lab, lab.read_token())
    assert decoder.state()["ok"]
    decoder.claim_input.value = "sub"
    decoder.value_input.value = '"system:serviceaccount:kube-system:admin"'
    decoder.apply_tamper()
    assert decoder.state()["failed_step"] == "signature"
    decoder.restore()
    assert decoder.state()["ok"]


def test_re_signing_with_the_lab_key_passes_the_signature_and_fails_at_the_sub(lab: Lab) -> None:
    # The lab holds the cluster's key in this process, so the decoder's re-sign box works:
    # a tampered sub re-signed with the real key is a valid token of another identity.
    decoder = the_token.token_decoder(lab, lab.read_token())
    assert not decoder.resign_box.disabled
    decoder.resign_box.value = True
    decoder.claim_input.value = "aud"
    decoder.value_input.value = '"someone-else"'
    decoder.apply_tamper()
    state = decoder.state()
    assert state["failed_step"] != "signature", state
    assert not state["ok"]
    decoder.restore()


def test_the_claims_text_names_the_trust_policy_condition_keys(lab: Lab) -> None:
    text = the_token.claims_text(lab, lab.read_token())
    prefix = lab.endpoints["issuer"].removeprefix("https://")
    assert f"trust-policy condition key {prefix}:sub" in text
    assert f"{prefix}:aud" in text


def test_the_timeline_reports_renewal_due_after_80_percent(lab: Lab) -> None:
    widget = the_token.timeline(lab, lab.read_token())
    widget.now = widget.token_iat + 19 * 3600
    assert widget.state()["token_state"] == "valid"
    widget.now = widget.token_iat + 20 * 3600
    assert widget.state()["token_state"] == "due for renewal"
    assert "renews it 19 h 12 min after it was issued" in the_token.timeline_text(widget)


def test_renewal_swaps_the_data_link_to_a_new_folder_with_a_new_iat(fresh_lab: Lab) -> None:
    r = the_token.renew_token(fresh_lab)
    assert r.after_dir != r.before_dir and not r.old_dir_exists
    assert r.token_link == "..data/token"
    assert r.after_iat - r.before_iat == pytest.approx(0.8 * C.DEFAULT_TOKEN_EXPIRATION_S + 60)
    assert the_token.token_status(fresh_lab)["renewals"] == 1


def test_a_deleted_pods_token_is_still_accepted_by_sts(fresh_lab: Lab) -> None:
    result = the_token.delete_pod_keep_token(fresh_lab)
    assert result.api_server_status == 404
    assert not result.token_file_exists
    assert result.sts_ok, result.sts_detail
    assert result.sts_detail["AssumedRoleUser.Arn"].endswith(f"{C.ROLE_NAME}/after-pod-deleted")
    assert "…(" in result.sts_detail["Credentials.SecretAccessKey"]  # masked
