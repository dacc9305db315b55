"""Protobuf responses for clients that prefer them, as the real API server answers.

kubectl's typed requests send ``Accept: application/vnd.kubernetes.protobuf,
application/json``; the real server then writes protobuf for every kind that has a
protobuf message (objects, lists, ``Status`` errors) and JSON for the rest (``Table``,
discovery, OpenAPI). The routes write JSON everywhere; :func:`protobuf_responses`, an
aiohttp middleware, re-encodes a finished JSON response when the client's first choice
is protobuf and the body's kind has a message in :mod:`irsa_lab.kube.protobuf`.
Streams (watches, logs, exec) pass through untouched, and so does any body the codec
cannot write, which stays JSON (legal: kubectl reads either).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from .. import web

__all__ = ["PROTOBUF", "prefers_protobuf", "protobuf_responses"]

PROTOBUF = "application/vnd.kubernetes.protobuf"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def prefers_protobuf(accept: str) -> bool:
    """Whether the first media type of ``accept`` is plain Kubernetes protobuf (not a
    ``;as=Table`` or other conversion, which the server writes as JSON)."""
    first = accept.split(",", 1)[0]
    media, *params = (p.strip() for p in first.split(";"))
    return media == PROTOBUF and not any(p.startswith("as=") for p in params)


@web.middleware
async def protobuf_responses(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer protobuf where the real server would (module docstring)."""
    response = await handler(request)
    if not prefers_protobuf(request.headers.get("Accept", "")):
        return response
    if type(response) is not web.Response or response.content_type != "application/json":
        return response
    raw = response.body
    if not isinstance(raw, bytes | bytearray):
        return response
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return response
    if not isinstance(obj, dict):
        return response
    # google.protobuf is loaded on the first protobuf answer, not at start-up.
    from .protobuf import ProtobufError, codec

    c = codec()
    if obj.get("kind") == "APIVersions" and not obj.get("apiVersion"):
        # /api's JSON has no apiVersion; its protobuf envelope says v1.
        obj = {**obj, "apiVersion": "v1"}
    if not c.has_kind(str(obj.get("apiVersion", "")), str(obj.get("kind", ""))):
        return response
    try:
        body = c.encode(obj)
    except ProtobufError:
        return response
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() not in ("content-type", "content-length")
    }
    out = web.Response(body=body, status=response.status, headers=headers, content_type=PROTOBUF)
    return out
