"""The webhook's HTTP edge: AdmissionReview in, AdmissionReview out.

:func:`review` is the whole request handling as a plain function over bytes (decode,
look the ServiceAccount up, mutate, encode), so tests can call it without a socket;
:func:`review_async` is the same with the cache's lookup grace period
(``--service-account-lookup-grace-period``), which waits; :func:`make_app` wraps it in
an application (irsa_lab.web) with ``POST /mutate`` and ``GET /healthz``. What upstream
answers for bad input (docs/reference/webhook.md §6.1):

* a ``Content-Type`` other than exactly ``application/json``: HTTP 415, plain text;
* an empty body, ``{}`` or a review without ``request``: a denial "bad content";
* JSON that does not parse: a denial whose message starts "couldn't get version/kind";
* an ``object`` that is not a Pod: a denial carrying the decoder's message.

A denial is ``allowed: false`` with only ``status.message`` (no code, no reason).
Nothing the client sends produces a 5xx.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from .. import constants as C
from .. import web
from ..clock import Clock
from ..kube.admission_review import (
    AdmissionResponse,
    AdmissionReview,
    allowed_response,
    denied_response,
    review_answer,
)
from ..trace import Trace
from .container_credentials import IdentitiesFile
from .go_json import struct_field_error, value_error
from .mutate import MutationResult, PodDecodeError, check_pod, mutate_pod
from .service_account_cache import Lookup
from .settings import WebhookSettings

__all__ = [
    "BAD_CONTENT",
    "INVALID_CONTENT_TYPE",
    "MAX_BODY_BYTES",
    "VERSION_KIND_ERROR",
    "ReviewOutcome",
    "ServiceAccountLookup",
    "WaitingLookup",
    "make_app",
    "review",
    "review_async",
    "watched_settings",
]

BAD_CONTENT = "bad content"
INVALID_CONTENT_TYPE = f"Invalid Content-Type, expected `{C.WEBHOOK_CONTENT_TYPE}`\n"
MAX_BODY_BYTES = 3 * 1024 * 1024  # the API server's own request-size limit
# How upstream prefixes a review it cannot even read the apiVersion and kind of.
VERSION_KIND_ERROR = "couldn't get version/kind; json parse error: "


class ServiceAccountLookup(Protocol):
    """Anything with the cache's ``get``: the annotations of a ServiceAccount, or ``None``."""

    def get(self, namespace: str, name: str) -> Mapping[str, str] | None: ...


@runtime_checkable
class WaitingLookup(Protocol):
    """A cache that can also wait (:meth:`irsa_lab.webhook.service_account_cache.ServiceAccountCache.lookup`)."""

    def get(self, namespace: str, name: str) -> Mapping[str, str] | None: ...

    async def lookup(
        self, namespace: str, name: str, *, grace_period_s: float = ..., consistent: bool = ...
    ) -> Lookup: ...


@dataclass(frozen=True)
class ReviewOutcome:
    """What :func:`review` decided, for the trace and for explanations."""

    review: AdmissionReview
    uid: str
    namespace: str
    pod: str
    service_account: str
    result: MutationResult | None  # None when the request was denied before mutating
    # How the ServiceAccount was looked up (None: a plain cache read, or no lookup).
    lookup: Lookup | None = None

    @property
    def allowed(self) -> bool:
        return self.review["response"]["allowed"]


def _reject_constant(name: str) -> Any:
    # Go's decoder has no NaN/Infinity literals.
    raise ValueError(f"invalid character '{name[0]}' looking for beginning of value")


def _parse_error(body: bytes, exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        if exc.pos >= len(exc.doc.rstrip()):
            detail = "unexpected end of JSON input"
        else:
            detail = f"invalid character {exc.doc[exc.pos]!r} at offset {exc.pos}: {exc.msg}"
    elif isinstance(exc, RecursionError):
        detail = "exceeded max depth"
    else:
        detail = str(exc) or type(exc).__name__
    return f"{VERSION_KIND_ERROR}{detail}"


_REQUEST_STRINGS = ("uid", "namespace", "name", "operation", "subResource")


@dataclass(frozen=True)
class _Request:
    """A decoded review, up to the ServiceAccount lookup."""

    echo: dict[str, str]
    uid: str
    namespace: str
    pod: Any
    pod_name: str
    service_account: str


def _outcome(echo: dict[str, str], response: AdmissionResponse, **facts: Any) -> ReviewOutcome:
    facts.setdefault("uid", response["uid"])
    for key in ("namespace", "pod", "service_account"):
        facts.setdefault(key, "")
    facts.setdefault("result", None)
    return ReviewOutcome(review=review_answer(echo, response), **facts)


def _decode(body: bytes) -> _Request | ReviewOutcome:
    """Decode a review as far as the lookup needs; a denial when it cannot be."""
    echo: dict[str, str] = {}

    def done(response: AdmissionResponse, **facts: Any) -> ReviewOutcome:
        return _outcome(echo, response, **facts)

    if len(body) == 0:
        return done(denied_response("", BAD_CONTENT))
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return done(denied_response("", _parse_error(body, exc)))
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        return done(
            denied_response(
                "",
                VERSION_KIND_ERROR + value_error(doc, "struct { APIVersion string; Kind string }"),
            )
        )
    for key in ("apiVersion", "kind"):
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            return done(
                denied_response(
                    "", VERSION_KIND_ERROR + struct_field_error(value, f".{key}", "string")
                )
            )
        if value:
            echo[key] = value

    request = doc.get("request")
    if request is None:
        return done(denied_response("", BAD_CONTENT))
    if not isinstance(request, dict):
        return done(
            denied_response(
                "",
                struct_field_error(request, "AdmissionReview.request", "v1.AdmissionRequest"),
            )
        )
    for key in _REQUEST_STRINGS:
        value = request.get(key)
        if value is not None and not isinstance(value, str):
            return done(
                denied_response(
                    "", struct_field_error(value, f"AdmissionRequest.request.{key}", "string")
                )
            )
    uid: str = request.get("uid") or ""
    namespace: str = request.get("namespace") or ""

    if "object" not in request:
        # An absent object is empty raw JSON to Go's decoder.
        return done(denied_response(uid, "unexpected end of JSON input"), namespace=namespace)
    pod = request["object"]
    meta = pod.get("metadata") if isinstance(pod, dict) else None
    pod_name = ""
    if isinstance(meta, dict):
        name = meta.get("name") or meta.get("generateName") or ""
        pod_name = name if isinstance(name, str) else ""
    spec = pod.get("spec") if isinstance(pod, dict) else None
    sa_name = spec.get("serviceAccountName") if isinstance(spec, dict) else ""
    sa_name = sa_name if isinstance(sa_name, str) else ""
    # The namespace of the request is authoritative, whatever the pod object says.
    return _Request(echo, uid, namespace, pod, pod_name, sa_name)


def _answer(
    req: _Request,
    sa_annotations: Mapping[str, str] | None,
    *,
    settings: WebhookSettings,
    rng: random.Random | None,
    lookup: Lookup | None = None,
) -> ReviewOutcome:
    facts: dict[str, Any] = {
        "namespace": req.namespace,
        "pod": req.pod_name,
        "service_account": req.service_account,
        "lookup": lookup,
    }
    try:
        result = mutate_pod(
            req.pod,
            namespace=req.namespace,
            sa_annotations=sa_annotations,
            settings=settings,
            rng=rng,
        )
    except PodDecodeError as exc:
        return _outcome(req.echo, denied_response(req.uid, str(exc)), **facts)
    response = allowed_response(req.uid, result.patch if result.mutated else None)
    return _outcome(req.echo, response, result=result, **facts)


def _waits_for_lookup(req: _Request, settings: WebhookSettings) -> bool:
    # Upstream decodes the pod first and resolves Pod Identity mode before it reads the
    # ServiceAccount cache; only then may the grace period make it wait.
    if settings.service_account_lookup_grace_period <= 0:
        return False
    cc = settings.container_credentials
    if cc is not None and cc.matches(req.namespace, req.service_account):
        return False
    try:
        check_pod(req.pod)
    except PodDecodeError:
        return False
    return True


def review(
    body: bytes,
    *,
    lookup: ServiceAccountLookup,
    settings: WebhookSettings,
    rng: random.Random | None = None,
) -> ReviewOutcome:
    """Answer one AdmissionReview body (already known to be ``application/json``).

    Reads the cache as it is: no grace period (see :func:`review_async`).
    """
    req = _decode(body)
    if isinstance(req, ReviewOutcome):
        return req
    sa_annotations = lookup.get(req.namespace, req.service_account)
    return _answer(req, sa_annotations, settings=settings, rng=rng)


async def review_async(
    body: bytes,
    *,
    lookup: WaitingLookup,
    settings: WebhookSettings,
    rng: random.Random | None = None,
) -> ReviewOutcome:
    """:func:`review`, with the ServiceAccount looked up through the cache's grace period.

    With ``service_account_lookup_grace_period`` > 0 the lookup may wait for the account
    (and, with ``service_account_lookup_consistent``, for its current version); a pod
    in Pod Identity mode or one that does not decode is answered without waiting.
    """
    req = _decode(body)
    if isinstance(req, ReviewOutcome):
        return req
    if not _waits_for_lookup(req, settings):
        sa_annotations = lookup.get(req.namespace, req.service_account)
        return _answer(req, sa_annotations, settings=settings, rng=rng)
    found = await lookup.lookup(
        req.namespace,
        req.service_account,
        grace_period_s=settings.service_account_lookup_grace_period,
        consistent=settings.service_account_lookup_consistent,
    )
    return _answer(req, found.annotations, settings=settings, rng=rng, lookup=found)


def watched_settings(settings: WebhookSettings) -> Callable[[], WebhookSettings]:
    """The settings to use for the next request, reading the watched identities file.

    Without Pod Identity mode or without ``watch_config``, always ``settings``. Otherwise
    ``settings`` with the identities the file holds now (docs/reference/pod-identity.md
    §5.2: missing or empty means none, unparsable keeps the previous ones); the file is
    read on every call, so a write is in force for the next pod, as upstream's reload
    follows the write within milliseconds (§5.3).
    """
    cc = settings.container_credentials
    if cc is None or not cc.watch_config:
        return lambda: settings
    watched = IdentitiesFile(cc.watch_config)
    built: dict[frozenset[tuple[str, str]], WebhookSettings] = {}

    def current() -> WebhookSettings:
        identities = watched.current()
        found = built.get(identities)
        if found is None:
            built.clear()
            found = built[identities] = replace(
                settings, container_credentials=replace(cc, identities=identities)
            )
        return found

    return current


def make_app(
    *,
    cache: ServiceAccountLookup,
    settings: WebhookSettings,
    trace: Trace,
    clock: Clock,
    rng: random.Random | None = None,
    on_review: Callable[[ReviewOutcome], None] | None = None,
) -> web.Application:
    """The webhook as an irsa_lab.web app: ``/mutate`` (any method, as upstream) and ``/healthz``.

    A ``cache`` that can wait (a :class:`WaitingLookup`, such as the ServiceAccount
    cache or its watcher) is asked through :func:`review_async`, so the settings' lookup
    grace period applies. Every review is recorded in ``trace`` as ``apiserver →
    webhook`` (with ``lookup`` when the grace period came into play); ``on_review``
    (optional) sees each :class:`ReviewOutcome`, for the lab's explanations.

    With Pod Identity mode on and a ``watch_config`` file in the settings, each request
    uses the identities the file holds at that moment (:func:`watched_settings`).
    """
    current_settings = watched_settings(settings)

    async def mutate(request: web.Request) -> web.StreamResponse:
        started = clock.now()
        if request.headers.get("Content-Type", "") != C.WEBHOOK_CONTENT_TYPE:
            trace.record(
                "apiserver",
                "webhook",
                "AdmissionReview",
                "UnsupportedMediaType",
                duration_ms=(clock.now() - started) * 1000,
                content_type=request.headers.get("Content-Type", ""),
            )
            return web.Response(status=415, text=INVALID_CONTENT_TYPE)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            trace.record(
                "apiserver",
                "webhook",
                "AdmissionReview",
                "RequestEntityTooLarge",
                duration_ms=(clock.now() - started) * 1000,
            )
            raise
        now = current_settings()
        if isinstance(cache, WaitingLookup):
            outcome = await review_async(body, lookup=cache, settings=now, rng=rng)
        else:
            outcome = review(body, lookup=cache, settings=now, rng=rng)
        result = outcome.result
        detail: dict[str, Any] = {
            "uid": outcome.uid,
            "namespace": outcome.namespace,
            "pod": outcome.pod,
            "service_account": outcome.service_account,
        }
        if result is not None:
            detail["reason"] = result.reason
            detail["mutated"] = result.mutated
            detail["env_added"] = {k: list(v) for k, v in result.env_added.items()}
            found = outcome.lookup
            if found is not None and found.how in ("appeared", "missing", "stale"):
                # Only when the grace period came into play, so the usual record is
                # the same whether or not the cache was a moment behind.
                detail["lookup"] = found.how
        else:
            detail["message"] = outcome.review["response"].get("status", {}).get("message", "")
        trace.record(
            "apiserver",
            "webhook",
            "AdmissionReview",
            "ok" if outcome.allowed else "denied",
            duration_ms=(clock.now() - started) * 1000,
            **detail,
        )
        if on_review is not None:
            on_review(outcome)
        data = json.dumps(outcome.review, separators=(",", ":")).encode()
        return web.Response(body=data, content_type=C.WEBHOOK_CONTENT_TYPE)

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_route("*", C.WEBHOOK_MUTATE_PATH, mutate)
    app.router.add_get(C.WEBHOOK_HEALTHZ_PATH, healthz)
    return app
