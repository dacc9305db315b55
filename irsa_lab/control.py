"""What the lessons look at and turn, the same on every backend: :class:`LabControl`.

A lesson never asks which backend it runs on. It asks the lab's control for:

- the **trace** the AWS stand-ins and the node recorded (stage 4's sequence diagram);
- the node's **instance metadata options** (``HttpTokens``, the hop limit: stage 5);
- STS's cache of the issuer's keys, to empty it (so a run shows STS fetching them);
- the **webhook**, to stop and start it (what ``failurePolicy: Ignore`` does);
- the **kubelet's token records** and, where the lab clock can move, a renewal now;
- a token signed with the cluster's key under **another issuer** (the playground).

:class:`StackControl` answers from a stack in this process (the embedded and the
``k8s`` backends; the server side of the admin endpoint, :mod:`irsa_lab.admin`, uses
it too). A lab started by another process (``irsa-lab up``, ``irsa-lab kind up``) is
reached through that endpoint. What a backend cannot do raises :class:`Unavailable`,
whose message says why and what happens on that backend instead: the lessons show it.

The admission record is not here: on a real API server it is read from the audit log
(:mod:`irsa_lab.kube.audit`), a file any process can read; see :meth:`Lab.admission`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .kube.admission import AdmissionRecord
    from .trace import TraceEvent

__all__ = ["HTTP_TOKENS", "NO_UID", "LabControl", "StackControl", "Unavailable", "metadata_options"]

HTTP_TOKENS = ("optional", "required")
# The ServiceAccount uid of a token no API server of the lab issued.
NO_UID = "00000000-0000-0000-0000-000000000000"


class Unavailable(RuntimeError):
    """What this backend cannot show; the message says why and what happens instead."""


def metadata_options(http_tokens: str, hop_limit: int) -> dict[str, Any]:
    """The node's metadata options, named as EC2's ``DescribeInstances`` names them."""
    return {"HttpTokens": http_tokens, "HttpPutResponseHopLimit": hop_limit}


def _check_options(http_tokens: str | None, hop_limit: int | None) -> None:
    """EC2's own limits on ``ModifyInstanceMetadataOptions``."""
    if http_tokens is not None and http_tokens not in HTTP_TOKENS:
        raise ValueError(f"HttpTokens must be one of {', '.join(HTTP_TOKENS)}, not {http_tokens!r}")
    if hop_limit is not None and not 1 <= hop_limit <= 64:
        raise ValueError(f"HttpPutResponseHopLimit must be between 1 and 64, not {hop_limit}")


class LabControl(Protocol):
    """The views and knobs of a running lab (module doc)."""

    @property
    def backend(self) -> str: ...

    # the trace
    def trace_mark(self) -> int: ...
    def trace_since(self, mark: int) -> list[TraceEvent]: ...
    def trace_events(self) -> list[TraceEvent]: ...

    # the webhook calls the embedded API server made (real ones: their audit log)
    def admission_mark(self) -> int: ...
    def admission_records(self, namespace: str, name: str, since: int) -> list[AdmissionRecord]: ...

    # the node's metadata options
    def metadata_options(self) -> dict[str, Any]: ...
    def modify_metadata_options(
        self, *, http_tokens: str | None = None, hop_limit: int | None = None
    ) -> dict[str, Any]: ...

    # STS's cache of the issuer's discovery document and JWKS
    def forget_issuer_keys(self) -> None: ...

    # the webhook
    def webhook_running(self) -> bool: ...
    def stop_webhook(self) -> None: ...
    def start_webhook(self) -> None: ...
    def wait_for_pod_identity_config(self, timeout: float = 10.0) -> None: ...

    # the kubelet and the lab clock
    def token_status(self, pod_uid: str) -> list[dict[str, Any]]: ...
    def now(self) -> float: ...
    def advance_clock(self, seconds: float) -> None: ...

    # a token under another issuer, signed with the cluster's key
    def sign_token(
        self,
        *,
        issuer: str,
        namespace: str,
        service_account: str,
        audiences: list[str],
        expiration_seconds: int,
    ) -> str: ...


class StackControl:
    """:class:`LabControl` over a stack in this process (embedded or ``k8s``)."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack

    @property
    def backend(self) -> str:
        return str(getattr(self.stack, "backend", "embedded"))

    # -- the trace -----------------------------------------------------------------------
    def trace_mark(self) -> int:
        return int(self.stack.trace.mark())

    def trace_since(self, mark: int) -> list[TraceEvent]:
        return list(self.stack.trace.since(mark))

    def trace_events(self) -> list[TraceEvent]:
        return list(self.stack.trace.events())

    # -- admission --------------------------------------------------------------------------
    def _apiserver(self) -> Any:
        api = getattr(self.stack, "apiserver", None)
        if api is None:
            raise Unavailable(
                f"the {self.backend} lab's API server is a real one: its audit log "
                "holds the admission record"
            )
        return api

    def admission_mark(self) -> int:
        return int(self._apiserver().admission_count)

    def admission_records(self, namespace: str, name: str, since: int) -> list[AdmissionRecord]:
        return [
            r
            for r in self._apiserver().admissions_since(since)
            if (r.request.get("request") or {}).get("name") == name
            and (r.request.get("request") or {}).get("namespace") == namespace
        ]

    # -- metadata options -----------------------------------------------------------------
    def metadata_options(self) -> dict[str, Any]:
        s = self.stack.aws.imds_settings
        return metadata_options(s.http_tokens, s.hop_limit)

    def modify_metadata_options(
        self, *, http_tokens: str | None = None, hop_limit: int | None = None
    ) -> dict[str, Any]:
        _check_options(http_tokens, hop_limit)
        s = self.stack.aws.imds_settings
        if http_tokens is not None:
            s.http_tokens = http_tokens
        if hop_limit is not None:
            s.hop_limit = hop_limit
        return self.metadata_options()

    def forget_issuer_keys(self) -> None:
        self.stack.aws.fetcher.invalidate()
        self.stack.aws.eks_auth_fetcher.invalidate()

    # -- the webhook ------------------------------------------------------------------------
    def webhook_running(self) -> bool:
        return bool(self.stack.webhook_running)

    def stop_webhook(self) -> None:
        self.stack.stop_webhook()

    def start_webhook(self) -> None:
        self.stack.start_webhook()

    def wait_for_pod_identity_config(self, timeout: float = 10.0) -> None:
        """Until the webhook uses the current Pod Identity associations (the upstream
        binary reloads its config file on its own, a moment after each change)."""
        self.stack.wait_for_pod_identity_config(timeout)

    # -- the kubelet and the clock -------------------------------------------------------------
    def token_status(self, pod_uid: str) -> list[dict[str, Any]]:
        kubelet = getattr(self.stack, "kubelet", None)
        if kubelet is None:
            raise Unavailable("no kubelet of the lab's runs on this backend")
        return list(kubelet.token_status(pod_uid))

    def now(self) -> float:
        return float(self.stack.clock.now())

    def advance_clock(self, seconds: float) -> None:
        clock = self.stack.clock
        if not hasattr(clock, "advance"):
            raise Unavailable(
                f"the {self.backend} lab runs on the wall clock: a real API server signs "
                "tokens with the time it reads, so the lab cannot move it"
            )
        clock.advance(seconds)
        # The kubelet renews on its own every second; tick() makes it happen now.
        self.stack.kubelet.tick()

    # -- another issuer ---------------------------------------------------------------------------
    def signing_key(self) -> Any:
        """The cluster's ServiceAccount signing key (a :class:`~irsa_lab.pki.SigningKey`)."""
        return self.stack.signing_key

    def sign_token(
        self,
        *,
        issuer: str,
        namespace: str,
        service_account: str,
        audiences: list[str],
        expiration_seconds: int,
    ) -> str:
        from .kube.tokens import TokenIssuer

        other = TokenIssuer(issuer, self.signing_key(), clock=self.stack.clock, ids=self.stack.ids)
        issued = other.issue(
            namespace=namespace,
            service_account=(service_account, NO_UID),
            audiences=audiences,
            expiration_seconds=expiration_seconds,
        )
        return str(issued.token)
