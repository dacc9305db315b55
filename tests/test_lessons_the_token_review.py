"""Notebook 02's deleted-pod cell: the API server refuses the token, STS still takes it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from irsa_lab import constants as C
from irsa_lab.lessons import pod_mutation, the_token
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED, EmbeddedLab, lab_clock


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    stack = EmbeddedLab(state_dir=tmp_path, seed=DEFAULT_SEED, clock=lab_clock(True)).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    pod_mutation.create_mypod(lab)
    yield lab
    lab.close()


def test_the_review_binds_the_token_to_the_live_pod_and_refuses_it_once_deleted(
    lab: Lab,
) -> None:
    uid = lab.get_pod(C.POD_NAME)["metadata"]["uid"]
    result = the_token.delete_pod_keep_token(lab)
    alive = result.review_alive
    assert alive.authenticated and alive.audiences_asked == [C.DEFAULT_AUDIENCE]
    user = alive.status["user"]
    assert user["username"] == f"system:serviceaccount:{C.NAMESPACE}:{C.SERVICE_ACCOUNT}"
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]
    assert alive.status["audiences"] == [C.DEFAULT_AUDIENCE]
    deleted = result.review_deleted
    assert not deleted.authenticated
    assert deleted.status["error"] == (
        "[invalid bearer token, service account token has been invalidated]"
    )
    assert result.sts_ok, result.sts_detail
    text = result.text()
    assert "-> authenticated: true" in text and "-> authenticated: false" in text


def test_the_irsa_token_is_no_bearer_token_for_the_api_server_even_while_the_pod_runs(
    lab: Lab,
) -> None:
    token = lab.read_token()
    assert the_token.bearer_status(lab, token) == 401
    review = the_token.token_review(lab, token)
    assert not review.authenticated
    assert "is invalid for the target audiences" in review.status["error"]
    assert the_token.token_review(lab, token, [C.DEFAULT_AUDIENCE]).authenticated
