"""Mutating admission webhooks, the API server's side: the dispatcher
(docs/reference/kubernetes.md §3).

:class:`WebhookDispatcher` POSTs the AdmissionReview over HTTPS with aiohttp, trusting
only the webhook's ``caBundle``, within ``timeoutSeconds``, and turns every outcome
into what the real server does (§3.7): a call failure under ``failurePolicy: Ignore``
lets the pod through unmutated, under ``Fail`` it is a 500 ``Internal error occurred:
failed calling webhook ...``; a denial is the webhook's own status; a patch that
decodes but does not apply is a 500 whatever the policy. Every exchange is kept as an
:class:`AdmissionRecord` for the notebooks.

The pure parts live beside it, one module a role (the names the API server takes
from here are re-exported):

* :mod:`~irsa_lab.kube.admission_review`: the AdmissionReview wire types, shared with
  the webhook, and the request for a pod CREATE (§3.5);
* :mod:`~irsa_lab.kube.webhook_configuration`: the MutatingWebhookConfiguration's
  defaults and validation (§3.2) and which webhooks a request reaches (§3.3);
* :mod:`~irsa_lab.kube.admission_response`: checking the answer, decoding and applying
  its patch (§3.6).
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import aiohttp

from ..client_http import aiohttp_module
from ..clock import Clock
from ..ids import Ids
from ..trace import Trace
from .admission_response import CallError, PatchError, apply_patch, check_response, decode_patch
from .admission_review import (
    KNOWN_REVIEW_VERSIONS,
    AdmissionReview,
    Obj,
    UserInfo,
    pod_create_review,
)
from .pod_rules import POD_SHAPE, apply_pod_defaults, check_shape
from .status import ApiError, internal_error
from .store import copy_json
from .webhook_configuration import (
    WEBHOOK_CONFIGURATION_SHAPE,
    default_webhook_configuration,
    matching_webhooks,
    validate_webhook_configuration,
)

__all__ = [
    "AdmissionRecord",
    "AdmissionResult",
    "Outcome",
    "WebhookDispatcher",
    # Re-exported for the API server, which stores configurations and applies patches:
    "WEBHOOK_CONFIGURATION_SHAPE",
    "PatchError",
    "UserInfo",
    "apply_patch",
    "default_webhook_configuration",
    "validate_webhook_configuration",
]


Outcome = Literal["patched", "allowed", "denied", "ignored", "failed", "patch-error"]


@dataclass
class AdmissionRecord:
    """One webhook exchange as stage 1 shows it: what was sent, received and done.

    ``source`` says where the record comes from: the stand-in's dispatcher saw the
    exchange itself; a real API server's audit log (:mod:`~irsa_lab.kube.audit`) holds
    only part of it, and ``unknown`` names the fields it could not fill (their values
    are then empty placeholders, never guesses). ``index`` is the webhook's place in
    the server's list of all webhooks, as in the audit annotations'
    ``round_R_index_I`` (filled from the audit log only).
    """

    configuration: str
    webhook: str
    round: int
    url: str
    failure_policy: str
    request: AdmissionReview
    response: Obj | None = None
    patch: list[Obj] | None = None
    before: Obj | None = None
    after: Obj | None = None
    outcome: Outcome = "allowed"
    error: str = ""
    duration_ms: float = 0.0
    warnings: list[str] = field(default_factory=list)
    source: str = "dispatcher"
    unknown: tuple[str, ...] = ()
    index: int = 0


@dataclass
class AdmissionResult:
    """The pod after the webhooks, and the records of the exchanges."""

    pod: Obj
    records: list[AdmissionRecord]
    warnings: list[str]
    audit_annotations: dict[str, str]


def _go_dial_error(url: str, exc: BaseException) -> str:
    aiohttp = aiohttp_module()
    parts = urlsplit(url)
    host = f"{parts.hostname}:{parts.port or 443}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | ssl.SSLCertVerificationError):
        return "tls: failed to verify certificate: x509: certificate signed by unknown authority"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError):
        return f"remote error: tls: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"dial tcp {host}: connect: connection refused"
    return str(exc) or type(exc).__name__


@dataclass(kw_only=True, eq=False)
class WebhookDispatcher:
    """Calls the matching mutating webhooks for a pod CREATE, as kube-apiserver does.

    ``ids`` draws each review's uid; ``service_resolver`` maps a ``clientConfig.service``
    to the URL to POST to (see :meth:`url_for`); ``on_record`` sees each
    :class:`AdmissionRecord` as the exchange starts.
    """

    ids: Ids
    clock: Clock
    trace: Trace
    service_resolver: Callable[[Obj], str] | None = None
    on_record: Callable[[AdmissionRecord], None] | None = None
    _session: aiohttp.ClientSession | None = field(default=None, init=False, repr=False)
    # One TLS context per caBundle, each trusting only that bundle.
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict, init=False, repr=False)

    async def close(self) -> None:
        """Close the HTTP session (call on the loop that used it)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _ssl_context(self, ca_bundle: str) -> ssl.SSLContext:
        ctx = self._contexts.get(ca_bundle)
        if ctx is None:
            if ca_bundle:
                try:
                    pem = base64.b64decode(ca_bundle).decode("ascii")
                    ctx = ssl.create_default_context(cadata=pem)
                except (ValueError, ssl.SSLError, UnicodeDecodeError) as exc:
                    raise CallError(
                        f"failed to call webhook: unable to load root certificates: {exc}"
                    ) from None
            else:
                # An empty caBundle means the system trust roots, as on a real server.
                ctx = ssl.create_default_context()
            self._contexts[ca_bundle] = ctx
        return ctx

    def url_for(self, hook: Obj) -> str:
        """The webhook's endpoint: ``clientConfig.url`` as is, or what the resolver says.

        The resolver maps ``clientConfig.service`` (namespace, name, path, port) to the
        full URL to POST to, path included; an unknown service fails like a DNS miss.
        """
        cc = hook.get("clientConfig") or {}
        if cc.get("url"):
            return str(cc["url"])
        svc = cc.get("service") or {}
        host = f"{svc.get('name')}.{svc.get('namespace')}.svc"
        try:
            if self.service_resolver is None:
                raise LookupError(host)
            return self.service_resolver(dict(svc))
        except (LookupError, ValueError):
            port, path = svc.get("port", 443), svc.get("path") or ""
            raise CallError(
                f'failed to call webhook: Post "https://{host}:{port}{path}": '
                f"dial tcp: lookup {host}: no such host"
            ) from None

    async def run(
        self,
        pod: Obj,
        *,
        namespace: str,
        namespace_labels: dict[str, str],
        configs: Sequence[Obj],
        user: UserInfo,
    ) -> AdmissionResult:
        """Run round 0 and, when needed, the single reinvocation round (§3.8).

        Raises the ``ApiError`` the real server answers with: the webhook's denial, or
        a 500 for a call failure under ``Fail`` or a patch that does not apply.
        """
        hooks = matching_webhooks(configs, pod=pod, namespace_labels=namespace_labels)
        records: list[AdmissionRecord] = []
        warnings: list[str] = []
        audit: dict[str, str] = {}
        invoked_reinvocable: list[int] = []
        reinvoke = False
        for index, (cfg_name, hook) in enumerate(hooks):
            pod, changed = await self._call(
                pod, cfg_name, hook, 0, index, namespace, user, records, warnings, audit
            )
            if changed:
                # Only webhooks invoked *before* the change are re-run, never new ones.
                reinvoke = reinvoke or bool(invoked_reinvocable)
            if hook.get("reinvocationPolicy") == "IfNeeded":
                invoked_reinvocable.append(index)
        if reinvoke:
            for index in invoked_reinvocable:
                cfg_name, hook = hooks[index]
                pod, _ = await self._call(
                    pod, cfg_name, hook, 1, index, namespace, user, records, warnings, audit
                )
        return AdmissionResult(pod, records, warnings, audit)

    async def _call(
        self,
        pod: Obj,
        cfg_name: str,
        hook: Obj,
        round_: int,
        index: int,
        namespace: str,
        user: UserInfo,
        records: list[AdmissionRecord],
        warnings: list[str],
        audit: dict[str, str],
    ) -> tuple[Obj, bool]:
        name = hook.get("name", "")
        policy = hook.get("failurePolicy", "Fail")
        versions = [
            v for v in hook.get("admissionReviewVersions") or [] if v in KNOWN_REVIEW_VERSIONS
        ]
        uid = self.ids.uuid4()
        review = pod_create_review(uid, pod, namespace, user, versions[0] if versions else "v1")
        record = AdmissionRecord(cfg_name, name, round_, "", policy, review, before=copy_json(pod))
        records.append(record)
        if self.on_record is not None:
            self.on_record(record)
        started = time.perf_counter()
        try:
            if not versions:
                raise CallError(
                    "webhook does not accept known AdmissionReview versions (v1, v1beta1)"
                )
            record.url = self.url_for(hook)
            body = await self._post(record.url, review, hook)
            record.response = body
            response = check_response(body, uid, versions[0])
            record.warnings = [str(w) for w in response.get("warnings") or []]
            warnings.extend(record.warnings)
            for k, v in (response.get("auditAnnotations") or {}).items():
                audit[f"{name}/{k}"] = str(v)
            if not response["allowed"]:
                record.outcome = "denied"
                raise _denial(name, response.get("status"))
            patched = pod
            changed = False
            if response.get("patch"):
                ops = decode_patch(response["patch"])
                record.patch = ops
                if ops:
                    try:
                        patched = apply_patch(review["request"]["object"], ops)
                        # The server decodes the patched JSON back into a Pod.
                        patched = check_shape(patched, "Pod", POD_SHAPE)
                    except ApiError as exc:
                        raise PatchError(exc.message) from None
                    # The server defaults the decoded object again (e.g. defaultMode 420).
                    apply_pod_defaults(patched)
                    meta = patched.setdefault("metadata", {})
                    meta["creationTimestamp"] = None
                    changed = patched != review["request"]["object"]
                    meta.pop("creationTimestamp", None)
            record.after = copy_json(patched)
            record.outcome = "patched" if changed else "allowed"
            self._record(record, started, "ok")
            return patched, changed
        except CallError as exc:
            message = f'failed calling webhook "{name}": {exc}'
            record.error = message
            record.after = copy_json(pod)
            if policy == "Ignore":
                record.outcome = "ignored"
                audit[
                    f"failed-open.mutation.webhook.admission.k8s.io/round_{round_}_index_{index}"
                ] = name
                self._record(record, started, "ignored")
                return pod, False
            record.outcome = "failed"
            self._record(record, started, "InternalError")
            raise internal_error(message) from None
        except PatchError as exc:
            record.outcome = "patch-error"
            record.error = str(exc)
            self._record(record, started, "InternalError")
            raise internal_error(str(exc)) from None
        except ApiError as exc:
            record.error = exc.message
            self._record(record, started, exc.reason or "Forbidden")
            raise

    def _record(self, record: AdmissionRecord, started: float, outcome: str) -> None:
        record.duration_ms = (time.perf_counter() - started) * 1000
        self.trace.record(
            "apiserver",
            "webhook",
            "AdmissionReview",
            outcome,
            duration_ms=record.duration_ms,
            webhook=record.webhook,
            round=record.round,
            result=record.outcome,
            **({"error": record.error} if record.error else {}),
        )

    async def _post(self, url: str, review: AdmissionReview, hook: Obj) -> Any:
        timeout_s = int(hook.get("timeoutSeconds", 10))
        cc = hook.get("clientConfig") or {}
        ctx = self._ssl_context(cc.get("caBundle") or "")
        target = f"{url}?timeout={timeout_s}s"
        aiohttp = aiohttp_module()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=64), auto_decompress=True
            )
        data = json.dumps(review, separators=(",", ":")).encode()
        try:
            async with asyncio.timeout(timeout_s):
                async with self._session.post(
                    target,
                    data=data,
                    ssl=ctx,
                    headers={"Content-Type": "application/json", "Accept": "application/json, */*"},
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
        except TimeoutError:
            raise CallError(
                f'failed to call webhook: Post "{target}": context deadline exceeded'
            ) from None
        except (aiohttp.ClientError, ssl.SSLError, OSError) as exc:
            raise CallError(
                f'failed to call webhook: Post "{target}": {_go_dial_error(url, exc)}'
            ) from None
        if not 200 <= status < 300:
            text = raw.decode("utf-8", "replace").strip()
            raise CallError(
                f'failed to call webhook: an error on the server ("{text[:200]}") '
                "has prevented the request from succeeding"
            )
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CallError(f"failed to call webhook: {exc}") from None


def _denial(name: str, status: Any) -> ApiError:
    # Status code from the webhook's status, 403 when unset; the message says who denied.
    status = status if isinstance(status, dict) else {}
    denied = f'admission webhook "{name}" denied the request'
    msg, reason = status.get("message"), status.get("reason")
    if isinstance(msg, str) and msg:
        message = f"{denied}: {msg}"
    elif isinstance(reason, str) and reason:
        message = f"{denied}: {reason}"
    else:
        message = f"{denied} without explanation"
    code = status.get("code")
    if not isinstance(code, int) or isinstance(code, bool) or not 400 <= code <= 599:
        code = 403
    return ApiError(
        code,
        reason if isinstance(reason, str) else "",
        message,
        status.get("details") if isinstance(status.get("details"), dict) else None,
    )
