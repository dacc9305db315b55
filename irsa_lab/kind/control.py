"""The lab's control of a kind backend (:class:`irsa_lab.control.LabControl`).

On kind the AWS stand-ins run in the ``irsa-lab kind up`` process, the rest is real:

- the trace, the node's metadata options and STS's key cache are the AWS side's;
- the webhook is the Deployment ``pod-identity-webhook``: stopping it scales it to 0
  replicas and waits until no pod of it is left, starting it scales it back to 1 and
  waits for the rollout; it reloads the node's Pod Identity identities file on its own,
  and :meth:`KindControl.wait_for_pod_identity_config` reads its log until it has
  (:mod:`irsa_lab.kind.pod_identity`);
- the kubelet is real: it keeps no record the lab can read (the lessons read the token's
  own claims instead), and its clock is the wall clock;
- a token under another issuer is signed with the cluster's key file, which the lab
  made and mounted into the node;
- the admission record is in the API server's audit log, which the node writes into the
  state directory (``endpoints["audit_log"]``): the lab reads it there.

The admin endpoint (:mod:`irsa_lab.admin`) serves this control to notebooks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from ..clock import SystemClock
from ..control import StackControl, Unavailable
from ..pki import SigningKey
from .manifests import KIND_WEBHOOK_NAMESPACE, KIND_WEBHOOK_SERVICE
from .pod_identity import ConfigLoadWaiter

if TYPE_CHECKING:
    from ..kube.admission import AdmissionRecord

__all__ = ["KindControl", "ROLLOUT_TIMEOUT_S"]

ROLLOUT_TIMEOUT_S = 120.0

Kubectl = Callable[[Sequence[str], float], str]


class KindControl(StackControl):
    """The controls of a kind lab (module doc); ``kubectl(args, timeout)`` runs kubectl
    against the cluster and returns its output."""

    def __init__(
        self,
        side: Any,
        *,
        kubectl: Kubectl,
        signing_key_file: Path,
        config_waiter: ConfigLoadWaiter | None = None,
    ) -> None:
        # StackControl reads the trace and the AWS side (``aws``) of a stack.
        super().__init__(
            SimpleNamespace(trace=side.trace, aws=side, clock=SystemClock(), ids=side.ids)
        )
        self.kubectl = kubectl
        self.signing_key_file = Path(signing_key_file)
        # kind_up's sync of the identities file marks this waiter before each write;
        # unmarked, any load in the current pod's log counts.
        self.config_waiter = config_waiter or ConfigLoadWaiter(
            kubectl, running=self.webhook_running
        )

    @property
    def backend(self) -> str:
        return "kind"

    # -- admission: the audit log ------------------------------------------------------------------
    def admission_mark(self) -> int:
        raise Unavailable("kind's API server is a real one: its audit log holds the record")

    def admission_records(self, namespace: str, name: str, since: int) -> list[AdmissionRecord]:
        raise Unavailable("kind's API server is a real one: its audit log holds the record")

    # -- the webhook: the Deployment -----------------------------------------------------------------
    def _deployment(self) -> list[str]:
        return ["--namespace", KIND_WEBHOOK_NAMESPACE, f"deployment/{KIND_WEBHOOK_SERVICE}"]

    def webhook_running(self) -> bool:
        out = self.kubectl(
            [*self._deployment(), "get", "-o", "jsonpath={.status.readyReplicas}"], 30
        )
        return out.strip() not in ("", "0")

    def stop_webhook(self) -> None:
        ns, deploy = self._deployment()[:2], self._deployment()[2]
        self.kubectl([*ns, "scale", deploy, "--replicas=0"], 30)
        # The API server keeps calling the Service while a pod of it still answers.
        self.kubectl(
            [
                *ns,
                "wait",
                "--for=delete",
                "pod",
                "--selector",
                f"app={KIND_WEBHOOK_SERVICE}",
                f"--timeout={ROLLOUT_TIMEOUT_S:.0f}s",
            ],
            ROLLOUT_TIMEOUT_S + 10,
        )

    def start_webhook(self) -> None:
        ns, deploy = self._deployment()[:2], self._deployment()[2]
        self.kubectl([*ns, "scale", deploy, "--replicas=1"], 30)
        self.kubectl(
            [*ns, "rollout", "status", deploy, f"--timeout={ROLLOUT_TIMEOUT_S:.0f}s"],
            ROLLOUT_TIMEOUT_S + 10,
        )

    def wait_for_pod_identity_config(self, timeout: float = 10.0) -> None:
        """Until the webhook's log shows it reloaded the identities file after the last
        write (docs/reference/pod-identity.md §5.3); TimeoutError after ``timeout``."""
        self.config_waiter.wait(timeout)

    # -- the kubelet is real ---------------------------------------------------------------------------
    def token_status(self, pod_uid: str) -> list[dict[str, Any]]:
        raise Unavailable("kind runs the real kubelet, which keeps no record the lab can read")

    def signing_key(self) -> SigningKey:
        return SigningKey.from_pem(self.signing_key_file.read_bytes())
