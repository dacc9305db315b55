"""The lab's admin endpoint: its :class:`~irsa_lab.control.LabControl` for other processes.

A notebook connected to ``irsa-lab up`` or ``irsa-lab kind up`` runs in another
process than the stand-ins. The process that runs them serves :func:`admin_app`
on loopback (:func:`serve_admin`); :class:`RemoteControl` is the same
:class:`~irsa_lab.control.LabControl` on the notebook's side, over HTTP.

Every request carries ``Authorization: Bearer <token>``. The token is fresh for each
start, in ``<state dir>/admin-token`` (0600), so only the lab's owner can turn its
knobs: loopback alone would let every local user in.

Errors on the wire, and what the client raises for each:

- 401 ``Unauthorized``: no token or a wrong one -> :class:`PermissionError`;
- 400 ``BadRequest``: malformed JSON or arguments, or options EC2 refuses -> :class:`ValueError`;
- 409 ``Unavailable``: what this backend cannot do -> :class:`~irsa_lab.control.Unavailable`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import json
import math
import secrets
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import web
from .control import LabControl, Unavailable
from .pki import write_secret
from .trace import TraceEvent

if TYPE_CHECKING:
    import urllib.request

    from .httpd import ServerLoop
    from .kube.admission import AdmissionRecord

__all__ = ["TOKEN_FILE", "RemoteControl", "admin_app", "serve_admin"]

TOKEN_FILE = "admin-token"  # noqa: S105 - a file name, not a secret
# token_status values that are paths on the lab's host (str on the wire).
_PATH_KEYS = ("file", "payload_dir")
_SIGN_ARGS = {
    "issuer": str,
    "namespace": str,
    "service_account": str,
    "audiences": list,
    "expiration_seconds": int,
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadRequest(ValueError):
    """Input the endpoint refuses before it reaches the control (400)."""


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


async def _body(
    request: web.Request, allowed: Mapping[str, type | tuple[type, ...]]
) -> dict[str, Any]:
    """The JSON object of a request, its fields checked against ``allowed``."""
    try:
        data = json.loads(await request.read() or b"{}")
    except (ValueError, UnicodeDecodeError) as err:
        raise _BadRequest(f"the body is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise _BadRequest(f"the body must be a JSON object, not {type(data).__name__}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise _BadRequest(f"unknown fields {unknown}; allowed: {sorted(allowed)}")
    for key, kind in allowed.items():
        value = data.get(key)
        # bool is an int in Python, never one in these fields.
        if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
            raise _BadRequest(f"{key} has the wrong type: {value!r}")
    return data


def admin_app(control: LabControl, token: str) -> web.Application:
    """The admin endpoint: one JSON route per :class:`LabControl` method (module doc)."""
    expected = f"Bearer {token}".encode()

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        # aiohttp keeps bytes that are not UTF-8 as surrogates: encode them back, never fail.
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
        if not hmac.compare_digest(given, expected):
            return _error(401, "Unauthorized", f"send Authorization: Bearer <{TOKEN_FILE}>")
        try:
            return await handler(request)
        except Unavailable as err:
            return _error(409, "Unavailable", str(err))
        except ValueError as err:  # _BadRequest, or the control refused (EC2's limits)
            return _error(400, "BadRequest", str(err))

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Awaitable[Any]:
        # The controls block (stopping the webhook waits on this very loop): a thread.
        return asyncio.to_thread(fn, *args, **kwargs)

    def ok(value: Any = None) -> web.Response:
        return web.json_response({"ok": True} if value is None else value, dumps=_dumps)

    async def get_backend(_: web.Request) -> web.Response:
        return ok({"backend": control.backend})

    async def get_trace(request: web.Request) -> web.Response:
        since = request.query.get("since")
        if since is None:
            events = await call(control.trace_events)
        else:
            try:
                mark = int(since)
            except ValueError:
                raise _BadRequest(f"since must be an integer, not {since!r}") from None
            events = await call(control.trace_since, mark)
        return ok({"events": [dataclasses.asdict(e) for e in events]})

    async def get_mark(_: web.Request) -> web.Response:
        return ok({"mark": await call(control.trace_mark)})

    async def get_admission_mark(_: web.Request) -> web.Response:
        return ok({"mark": await call(control.admission_mark)})

    async def get_admissions(request: web.Request) -> web.Response:
        q = request.query
        try:
            since = int(q.get("since", "0"))
        except ValueError:
            raise _BadRequest(f"since must be an integer, not {q.get('since')!r}") from None
        if not q.get("namespace") or not q.get("name"):
            raise _BadRequest("namespace and name are required")
        records = await call(control.admission_records, q["namespace"], q["name"], since)
        return ok({"records": [dataclasses.asdict(r) for r in records]})

    async def get_options(_: web.Request) -> web.Response:
        return ok(await call(control.metadata_options))

    async def put_options(request: web.Request) -> web.Response:
        body = await _body(request, {"HttpTokens": str, "HttpPutResponseHopLimit": int})
        return ok(
            await call(
                control.modify_metadata_options,
                http_tokens=body.get("HttpTokens"),
                hop_limit=body.get("HttpPutResponseHopLimit"),
            )
        )

    async def forget_keys(_: web.Request) -> web.Response:
        await call(control.forget_issuer_keys)
        return ok()

    async def get_webhook(_: web.Request) -> web.Response:
        return ok({"running": await call(control.webhook_running)})

    async def webhook_action(request: web.Request) -> web.Response:
        action = request.match_info["action"]
        await call(control.stop_webhook if action == "stop" else control.start_webhook)
        return ok({"running": await call(control.webhook_running)})

    async def pod_identity_config(request: web.Request) -> web.Response:
        body = await _body(request, {"timeout": (int, float)})
        await call(control.wait_for_pod_identity_config, float(body.get("timeout", 10.0)))
        return ok()

    async def get_token_status(request: web.Request) -> web.Response:
        return ok({"tokens": await call(control.token_status, request.match_info["uid"])})

    async def get_clock(_: web.Request) -> web.Response:
        return ok({"now": await call(control.now)})

    async def advance(request: web.Request) -> web.Response:
        seconds = (await _body(request, {"seconds": (int, float)})).get("seconds")
        if seconds is None or not math.isfinite(seconds):
            raise _BadRequest(f"seconds must be a finite number, not {seconds!r}")
        await call(control.advance_clock, float(seconds))
        return ok({"now": await call(control.now)})

    async def sign(request: web.Request) -> web.Response:
        body = await _body(request, _SIGN_ARGS)
        missing = [k for k in _SIGN_ARGS if body.get(k) is None]
        if missing:
            raise _BadRequest(f"missing fields {missing}")
        if not all(isinstance(a, str) for a in body["audiences"]):
            raise _BadRequest("audiences must be a list of strings")
        return ok({"token": await call(control.sign_token, **body)})

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", get_backend)
    app.router.add_get("/trace", get_trace)
    app.router.add_get("/trace/mark", get_mark)
    app.router.add_get("/admission/mark", get_admission_mark)
    app.router.add_get("/admission", get_admissions)
    app.router.add_get("/metadata-options", get_options)
    app.router.add_put("/metadata-options", put_options)
    app.router.add_post("/issuer-keys/forget", forget_keys)
    app.router.add_get("/webhook", get_webhook)
    app.router.add_post("/webhook/{action:stop|start}", webhook_action)
    app.router.add_post("/webhook/pod-identity-config/wait", pod_identity_config)
    app.router.add_get("/token-status/{uid}", get_token_status)
    app.router.add_get("/clock", get_clock)
    app.router.add_post("/clock/advance", advance)
    app.router.add_post("/tokens", sign)
    return app


def _dumps(value: Any) -> str:
    # Paths in token_status go out as text; RemoteControl turns them back.
    return json.dumps(value, default=str)


def serve_admin(
    loop: ServerLoop, control: LabControl, state_dir: Path, *, tls: ssl.SSLContext | None = None
) -> str:
    """Serve the admin endpoint on loopback with a fresh token in ``state_dir``; its URL.

    The caller puts the URL into ``endpoints.json`` under ``admin``.
    """
    token = secrets.token_urlsafe(32)
    write_secret(Path(state_dir) / TOKEN_FILE, token.encode())
    return loop.serve("admin", admin_app(control, token), tls=tls).url


class RemoteControl:
    """:class:`LabControl` of a lab another process runs, through its admin endpoint.

    Nothing is read until the first call, so a lab started by an older version (no
    ``admin`` endpoint) still connects; each call then raises :class:`Unavailable`.
    """

    def __init__(
        self, endpoints: Mapping[str, Any], state_dir: Path, *, timeout: float = 30.0
    ) -> None:
        self.endpoints = endpoints
        self.state_dir = Path(state_dir)
        self.timeout = timeout
        self._opener: urllib.request.OpenerDirector | None = None

    @property
    def backend(self) -> str:
        return str(self.endpoints.get("backend", ""))

    # -- the wire ----------------------------------------------------------------------------
    def _connect(self) -> tuple[str, str, urllib.request.OpenerDirector]:
        url = str(self.endpoints.get("admin") or "")
        token_file = self.state_dir / TOKEN_FILE
        if not url.startswith(("http://", "https://")) or not token_file.exists():
            missing = "names no admin endpoint" if not url else f"has no {token_file}"
            up = "irsa-lab kind up" if self.backend == "kind" else "irsa-lab up"
            raise Unavailable(
                f"the lab in {self.state_dir} {missing}: start it again with "
                f"`{up} --state-dir {self.state_dir}` (this version) to look inside it"
            )
        token = token_file.read_text().strip()
        if self._opener is None:
            import urllib.request  # the client's only: the lab's own process never loads it

            handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
            if url.startswith("https:"):
                ca = self.endpoints.get("ca_bundle")  # none: fails verification, as it should
                ctx = ssl.create_default_context(cafile=str(ca) if ca else None)
                handlers.append(urllib.request.HTTPSHandler(context=ctx))
            self._opener = urllib.request.build_opener(*handlers)
        return url.rstrip("/"), token, self._opener

    def _request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        import urllib.error
        import urllib.request

        url, token, opener = self._connect()
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url + path, data=data, method=method)  # noqa: S310 - http(s) only
        req.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with opener.open(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            with err:
                status, text = err.code, err.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise Unavailable(
                f"the lab's admin endpoint {url} does not answer ({reason}): is "
                f"`irsa-lab up --state-dir {self.state_dir}` still running?"
            ) from None
        try:
            message = str(json.loads(text)["message"])
        except (ValueError, KeyError, TypeError):
            message = text or f"HTTP {status}"
        if status == 401:
            raise PermissionError(
                f"the admin endpoint refused {self.state_dir / TOKEN_FILE} ({message}): "
                "was the lab restarted from another state directory?"
            )
        if status == 400:
            raise ValueError(message)
        if status in (409, 501):
            raise Unavailable(message)
        raise RuntimeError(f"the admin endpoint answered {method} {path} with {status}: {message}")

    # -- the trace -----------------------------------------------------------------------------
    def trace_mark(self) -> int:
        return int(self._request("GET", "/trace/mark")["mark"])

    def trace_since(self, mark: int) -> list[TraceEvent]:
        return _events(self._request("GET", f"/trace?since={int(mark)}"))

    def trace_events(self) -> list[TraceEvent]:
        return _events(self._request("GET", "/trace"))

    # -- admission ---------------------------------------------------------------------------------
    def admission_mark(self) -> int:
        return int(self._request("GET", "/admission/mark")["mark"])

    def admission_records(self, namespace: str, name: str, since: int) -> list[AdmissionRecord]:
        from .kube.admission import AdmissionRecord

        query = urllib.parse.urlencode({"namespace": namespace, "name": name, "since": since})
        known = {f.name for f in dataclasses.fields(AdmissionRecord)}
        out = []
        for r in self._request("GET", f"/admission?{query}")["records"]:
            fields = {k: v for k, v in r.items() if k in known}
            fields["unknown"] = tuple(fields.get("unknown") or ())
            out.append(AdmissionRecord(**fields))
        return out

    # -- metadata options ------------------------------------------------------------------------
    def metadata_options(self) -> dict[str, Any]:
        return dict(self._request("GET", "/metadata-options"))

    def modify_metadata_options(
        self, *, http_tokens: str | None = None, hop_limit: int | None = None
    ) -> dict[str, Any]:
        body = {"HttpTokens": http_tokens, "HttpPutResponseHopLimit": hop_limit}
        return dict(self._request("PUT", "/metadata-options", body))

    def forget_issuer_keys(self) -> None:
        self._request("POST", "/issuer-keys/forget")

    # -- the webhook -------------------------------------------------------------------------------
    def webhook_running(self) -> bool:
        return bool(self._request("GET", "/webhook")["running"])

    def stop_webhook(self) -> None:
        self._request("POST", "/webhook/stop")

    def start_webhook(self) -> None:
        self._request("POST", "/webhook/start")

    def wait_for_pod_identity_config(self, timeout: float = 10.0) -> None:
        self._request("POST", "/webhook/pod-identity-config/wait", {"timeout": timeout})

    # -- the kubelet and the clock -------------------------------------------------------------------
    def token_status(self, pod_uid: str) -> list[dict[str, Any]]:
        uid = urllib.parse.quote(pod_uid, safe="")
        tokens = self._request("GET", f"/token-status/{uid}")["tokens"]
        return [
            {k: Path(v) if k in _PATH_KEYS and isinstance(v, str) else v for k, v in t.items()}
            for t in tokens
        ]

    def now(self) -> float:
        return float(self._request("GET", "/clock")["now"])

    def advance_clock(self, seconds: float) -> None:
        self._request("POST", "/clock/advance", {"seconds": seconds})

    def sign_token(
        self,
        *,
        issuer: str,
        namespace: str,
        service_account: str,
        audiences: list[str],
        expiration_seconds: int,
    ) -> str:
        body = {
            "issuer": issuer,
            "namespace": namespace,
            "service_account": service_account,
            "audiences": list(audiences),
            "expiration_seconds": expiration_seconds,
        }
        return str(self._request("POST", "/tokens", body)["token"])


_EVENT_FIELDS = frozenset(f.name for f in dataclasses.fields(TraceEvent))


def _events(answer: Mapping[str, Any]) -> list[TraceEvent]:
    # Fields a newer lab may add are left out rather than fail the whole trace.
    return [
        TraceEvent(**{k: v for k, v in e.items() if k in _EVENT_FIELDS}) for e in answer["events"]
    ]
