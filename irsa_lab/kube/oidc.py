"""The EKS-shaped OIDC issuer host: discovery document and JWKS under ``/id/<ID>/``.

EKS publishes every cluster's issuer at ``https://oidc.eks.<region>.amazonaws.com/id/<ID>``
with the discovery document at ``<issuer>/.well-known/openid-configuration`` and the
keys at ``<issuer>/keys`` (docs/reference/sts.md §2.1). Its document differs from the API
server's own (docs/reference/kubernetes.md §2.2): it adds ``authorization_endpoint`` and
``claims_supported``, and ``jwks_uri`` ends in ``/keys``.

The STS stand-in reaches this host by replacing the issuer's origin with this
server's ``https://127.0.0.1:PORT`` (:func:`local_url`); the path stays the same, so
``endpoints.json``'s ``oidc`` value is ``https://127.0.0.1:PORT/id/<ID>``.

Every request is recorded in the trace by this host (``recorder="oidc"``) with the
caller it can identify, never a guessed one: the name a caller gives in
:data:`CALLER_HEADER`, else the component whose User-Agent product token is in
:data:`KNOWN_USER_AGENTS` (STS's key fetcher sends :data:`STS_USER_AGENT`), else
``unknown``. The User-Agent itself is kept in the event's detail. STS's fetcher
records its own side of each fetch, so the sequence diagram needs nothing from here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from .. import web
from ..constants import STS_USER_AGENT
from ..trace import Trace
from .tokens import TokenIssuer

__all__ = [
    "CALLER_HEADER",
    "DISCOVERY_PATH",
    "JWKS_PATH",
    "KNOWN_USER_AGENTS",
    "STS_USER_AGENT",
    "UNKNOWN_CALLER",
    "caller_of",
    "eks_discovery_document",
    "issuer_path",
    "local_url",
    "make_app",
]

DISCOVERY_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/keys"
# A caller may name itself for the trace (a notebook, a test).
CALLER_HEADER = "X-Irsa-Lab-Caller"
# The callers known by their User-Agent (the STS stand-in's fetcher sends STS_USER_AGENT,
# EKS Auth's "irsa-lab-eks-auth").
KNOWN_USER_AGENTS = {"irsa-lab-sts": "sts", "irsa-lab-eks-auth": "eks-auth"}
UNKNOWN_CALLER = "unknown"
# The API server sends this on both discovery endpoints (§2.2); EKS's own caching
# headers are not documented in the specs, so the host keeps the same policy.
CACHE_CONTROL = "public, max-age=3600"


def eks_discovery_document(issuer: TokenIssuer) -> dict[str, Any]:
    """The discovery document EKS serves for ``issuer``, in EKS's field order."""
    return {
        "issuer": issuer.issuer,
        "jwks_uri": f"{issuer.issuer}{JWKS_PATH}",
        "authorization_endpoint": "urn:kubernetes:programmatic_authorization",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "claims_supported": ["sub", "iss"],
        "id_token_signing_alg_values_supported": issuer.signing_algorithms(),
    }


def issuer_path(issuer_url: str) -> str:
    """The path part of an issuer URL, without a trailing slash (``/id/<ID>`` on EKS)."""
    return urlsplit(issuer_url).path.rstrip("/")


def local_url(url: str, issuer_url: str, local_base: str) -> str:
    """Point ``url`` on the issuer's host at ``local_base`` (``https://127.0.0.1:PORT``).

    URLs on any other host are returned unchanged.
    """
    want = urlsplit(issuer_url)
    got = urlsplit(url)
    if (got.scheme, got.netloc) != (want.scheme, want.netloc):
        return url
    rest = url[len(f"{got.scheme}://{got.netloc}") :]
    return local_base.rstrip("/") + rest


def caller_of(headers: Mapping[str, str]) -> str:
    """Who sent a request, as far as its headers say; :data:`UNKNOWN_CALLER` otherwise."""
    named = headers.get(CALLER_HEADER, "").strip()
    if named:
        return named
    agent = headers.get("User-Agent", "")
    product = agent.split(" ", 1)[0].split("/", 1)[0]
    return KNOWN_USER_AGENTS.get(product, UNKNOWN_CALLER)


def _json(body: Any, status: int = 200) -> web.Response:
    # Compact, field order kept: the documents are compared byte for byte in lessons.
    text = json.dumps(body, separators=(",", ":"))
    # bytes, not text: the server would append "; charset=utf-8" to a text body's type.
    return web.Response(body=text.encode(), status=status, content_type="application/json")


def make_app(issuer: TokenIssuer, *, trace: Trace) -> web.Application:
    """An app serving ``issuer``'s discovery document and JWKS at its EKS paths.

    Documents are built per request, so a key rotation shows at once. Any other path
    answers 404 with a small JSON body.
    """
    prefix = issuer_path(issuer.issuer)

    def record(request: web.Request, call: str, outcome: str, started: float, **kw: Any) -> None:
        trace.record(
            caller_of(request.headers),
            "oidc",
            call,
            outcome,
            duration_ms=(time.perf_counter() - started) * 1000,
            recorder="oidc",
            path=request.path,
            user_agent=request.headers.get("User-Agent", ""),
            **kw,
        )

    async def discovery(request: web.Request) -> web.Response:
        started = time.perf_counter()
        resp = _json(eks_discovery_document(issuer))
        resp.headers["Cache-Control"] = CACHE_CONTROL
        record(request, "GET openid-configuration", "ok", started, issuer=issuer.issuer)
        return resp

    async def jwks(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = issuer.jwks()
        # EKS answers application/json here, unlike the API server's jwk-set+json.
        resp = _json(body)
        resp.headers["Cache-Control"] = CACHE_CONTROL
        record(request, "GET keys", "ok", started, kids=[k["kid"] for k in body["keys"]])
        return resp

    async def not_found(request: web.Request) -> web.Response:
        started = time.perf_counter()
        record(request, f"{request.method} {request.path}", "NotFound", started)
        return _json({"message": "Not Found"}, status=404)

    app = web.Application()
    app.router.add_get(prefix + DISCOVERY_PATH, discovery)
    app.router.add_get(prefix + JWKS_PATH, jwks)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app
