"""Pod Identity on the ``k8s`` backend: the upstream webhook binary in container-credentials
mode, fed by the lab's watched file (docs/reference/pod-identity.md §5.1-§5.3).

The binary reloads the file asynchronously (fsnotify); ``wait_for_pod_identity_config``
waits for its log line before each pod. Then the same flow as the embedded lab's
(tests/test_pod_identity_webhook_mode.py), ending with the aws CLI in the pod getting the
role's credentials from the agent.

Skipped, naming ``make k8s-bin``, where the real programs are not built.
"""

from __future__ import annotations

from collections.abc import Iterator

import pod_identity_fixtures as PI
import pytest

from irsa_lab import constants as C
from irsa_lab.backends import binaries
from irsa_lab.backends.k8s import WEBHOOK_PROGRAM, K8sLab
from irsa_lab.session import Lab
from irsa_lab.stack import DEFAULT_SEED
from irsa_lab.webhook.container_credentials import CONFIG_LOADED_LINES

pytestmark = pytest.mark.skipif(
    bool(binaries.missing()),
    reason=f"{', '.join(binaries.missing())} not built: run `make k8s-bin` (needs Go)",
)

ROLE_NAME = "pi-k8s-reader"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[K8sLab]:
    the_stack = K8sLab(state_dir=tmp_path_factory.mktemp("k8s-pi"), seed=DEFAULT_SEED).start()
    try:
        yield the_stack
    finally:
        the_stack.stop()


@pytest.fixture(scope="module")
def lab(stack: K8sLab) -> Lab:
    return PI.prepare(Lab(stack.endpoints.as_dict(), stack.state_dir, backend="k8s"), ROLE_NAME)


def _webhook_log(stack: K8sLab) -> str:
    return (stack.dir / "logs" / f"{WEBHOOK_PROGRAM}.log").read_text(errors="replace")


def test_the_upstream_webhook_runs_with_the_watched_file_and_the_agents_url(
    stack: K8sLab,
) -> None:
    proc = next(p for p in stack.procs if p.name == WEBHOOK_PROGRAM)
    args = proc.popen.args
    assert isinstance(args, list)
    path = stack.state_dir / "pod-identity" / "identities.json"
    assert f"--watch-container-credentials-config={path}" in args
    agent = stack.aws.urls["pod-identity-agent"]
    assert f"--container-credentials-full-uri={agent}" in args
    # It loaded the (empty) file at start.
    assert any(line in _webhook_log(stack) for line in CONFIG_LOADED_LINES)


def test_an_association_reaches_the_upstream_webhook_and_the_pod_gets_a_working_token(
    lab: Lab, stack: K8sLab
) -> None:
    loads = _webhook_log(stack).count(CONFIG_LOADED_LINES[0])
    assoc = stack.aws.associations.create(C.NAMESPACE, "pi-app", PI.role_arn(ROLE_NAME))
    try:
        stack.wait_for_pod_identity_config()
        assert _webhook_log(stack).count(CONFIG_LOADED_LINES[0]) > loads
        PI.check_pod_identity_pod(lab, stack, "pi-app-pod", ROLE_NAME)
    finally:
        stack.aws.associations.delete(assoc.association_id)
        stack.wait_for_pod_identity_config()


def test_on_the_upstream_webhook_pod_identity_wins_until_the_association_is_deleted(
    lab: Lab, stack: K8sLab
) -> None:
    PI.check_pod_identity_wins_until_deleted(lab, stack, ROLE_NAME)
