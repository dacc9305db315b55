"""The API stand-in's HTTP layer: one handler that authenticates, authorizes and routes.

docs/reference/kubernetes.md §6.1. Every request goes through the steps of a real
kube-apiserver's handler chain, in its order:

1. **authentication**: a bearer token is the admin's or a ServiceAccount token
   (:mod:`irsa_lab.kube.authn`); a token that does not authenticate is 401
   ``Unauthorized`` on every path, as on a real server. A request without a token is
   ``system:anonymous`` (anonymous auth is on, as kubeadm and kind leave it);
2. **authorization**: a user who is not the admin gets what the default RBAC gives
   every authenticated user, or the anonymous user (:mod:`irsa_lab.kube.authz`), else
   403 ``Forbidden``;
3. **routing** by path to discovery or to an operation of
   :class:`~irsa_lab.kube.apiserver.ApiServer`, bodies read and answers written by
   :mod:`irsa_lab.kube.wire`; every :class:`ApiError` becomes a ``Status`` here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import web
from ..clock import rfc3339
from . import discovery as disc
from .admission import UserInfo
from .authn import AuthenticationError
from .authz import ANONYMOUS, RequestAttributes, authorize, verb_for
from .discovery import Resource
from .events import event_fields_match, event_view, parse_event_field_selector
from .exec_ws import serve_exec
from .protobuf_responses import protobuf_responses
from .status import (
    ApiError,
    bad_request,
    internal_error,
    method_not_allowed,
    path_not_found,
    success_status,
    unauthorized,
    unsupported_media_type,
)
from .store import fields_match, labels_match, parse_field_selector, parse_label_selector
from .wire import (
    API_CACHE_CONTROL,
    DISCOVERY_CACHE_CONTROL,
    MAX_BODY,
    check_kind,
    content_type,
    json_response,
    ordered,
    read_body,
    status_response,
    warning_header,
)
from .workloads import (
    WORKLOADS,
    create_workload,
    pod_logs,
    scale_of,
    self_subject_access_review,
    update_scale,
    update_workload,
    workload_table,
)

if TYPE_CHECKING:
    from .apiserver import ApiServer

__all__ = ["DEFAULT_WATCH_TIMEOUT_S", "make_app"]

Obj = dict[str, Any]
DEFAULT_WATCH_TIMEOUT_S = 1800
_EVENTS = (disc.EVENTS, disc.EVENTS_V1)
_PATCH_ACCEPTED = (
    "application/json-patch+json, "
    "application/merge-patch+json, "
    "application/strategic-merge-patch+json"
)


def make_app(api: ApiServer) -> web.Application:
    """The application of ``api``: one handler routes everything."""
    app = web.Application(client_max_size=MAX_BODY, middlewares=[protobuf_responses])
    app.router.add_route("*", "/{tail:.*}", _Routes(api).handle)

    async def close_session(_: web.Application) -> None:
        await api.dispatcher.close()

    async def end_watches(_: web.Application) -> None:
        # Runs before the runner waits for open requests: long-running watches
        # end at once instead of holding the shutdown until its timeout.
        api.store.close_watches()

    app.on_shutdown.append(end_watches)
    app.on_cleanup.append(close_session)
    return app


def _bearer(request: web.Request) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


class _Routes:
    """The handler of one :class:`ApiServer`'s app (module docstring)."""

    def __init__(self, api: ApiServer) -> None:
        self.api = api

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            user = self._authenticate(request)
            return await self._route(request, user)
        except ApiError as err:
            return status_response(err)
        except web.HTTPRequestEntityTooLarge:
            return status_response(
                ApiError(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
            )
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - the one place a bug becomes a Status
            self.api.trace.record(
                "learner",
                "apiserver",
                request.method + " " + request.path,
                "InternalError",
                error=repr(exc),
            )
            return status_response(internal_error(repr(exc)))

    def _authenticate(self, request: web.Request) -> UserInfo:
        """The user of the bearer token; ``system:anonymous`` for a request without one."""
        token = _bearer(request)
        if token is None:
            return ANONYMOUS
        try:
            return self.api.authenticate(token).user
        except AuthenticationError:
            raise unauthorized() from None

    # -- routing ---------------------------------------------------------------------
    async def _route(self, request: web.Request, user: UserInfo) -> web.StreamResponse:
        path = request.path
        method = request.method
        parts = [p for p in path.split("/") if p]
        resource_path = (parts[:2] == ["api", "v1"] and len(parts) > 2) or (
            parts[:1] == ["apis"] and len(parts) > 3
        )
        if not resource_path:
            authorize(user, RequestAttributes(verb=method.lower(), path=path))
        if path in ("/healthz", "/livez", "/readyz"):
            if method != "GET":
                raise method_not_allowed()
            return web.Response(text="ok", content_type="text/plain")
        cached = {"Cache-Control": DISCOVERY_CACHE_CONTROL}
        if path.rstrip("/") == "/.well-known/openid-configuration":
            return json_response(self.api.issuer.discovery_document(), headers=cached)
        if path.rstrip("/") == "/openid/v1/jwks":
            return json_response(
                self.api.issuer.jwks(), content_type="application/jwk-set+json", headers=cached
            )
        if method == "GET":
            static = self._discovery(parts, request)
            if static is not None:
                return json_response(static)
        if parts[:2] == ["api", "v1"]:
            return await self._resource_route(request, user, parts[2:], "")
        if len(parts) >= 3 and parts[0] == "apis":
            return await self._resource_route(request, user, parts[3:], f"{parts[1]}/{parts[2]}")
        raise path_not_found()

    def _discovery(self, parts: list[str], request: web.Request) -> Obj | None:
        if parts == ["version"]:
            return disc.version_info()
        if parts[:2] == ["openapi", "v3"]:
            doc = (
                disc.openapi_v3_root()
                if len(parts) == 2
                else disc.openapi_v3_document("/".join(parts[2:]))
            )
            return _found(doc)
        if parts == ["api"]:
            return disc.api_versions(request.host)
        if parts == ["api", "v1"]:
            return disc.core_resources()
        if parts == ["apis"]:
            return disc.api_groups()
        if len(parts) == 2 and parts[0] == "apis":
            return _found(disc.api_group(parts[1]))
        if len(parts) == 3 and parts[0] == "apis":
            return _found(disc.group_resources(f"{parts[1]}/{parts[2]}"))
        return None

    @staticmethod
    def _resource(group_version: str, name: str) -> Resource:
        pool = (
            disc.CORE_RESOURCES
            if not group_version
            else disc.GROUP_RESOURCES.get(group_version, ())
        )
        for res in pool:
            if res.name == name:
                return res
        raise path_not_found()

    async def _resource_route(
        self, request: web.Request, user: UserInfo, rest: list[str], group_version: str
    ) -> web.StreamResponse:
        # rest: [res] | [res, name] | [namespaces, ns, res] | [namespaces, ns, res, name, sub]
        namespace: str | None = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest:
            raise path_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        method = request.method
        # Authorization comes before the resource is looked up, as on a real
        # server: a user may not learn which resources exist.
        watch = request.query.get("watch", "").lower() in ("true", "1")
        authorize(
            user,
            RequestAttributes(
                verb=verb_for(method, named=name is not None, watch=watch),
                path=request.path,
                group=group_version.rpartition("/")[0],
                resource=rest[0],
                subresource=sub or "",
                # A namespace's own name is its namespace to the authorizer.
                namespace=namespace or (name if rest[0] == "namespaces" else None) or "",
                name=name or "",
            ),
        )
        res = self._resource(group_version, rest[0])
        if len(rest) > 3 or (namespace is not None and not res.namespaced):
            raise path_not_found()
        if sub == "exec" and res is disc.PODS and namespace:
            pod = self.api.store.require(res.name, namespace, name or "", res.group)
            return await serve_exec(request, self.api.pod_exec, pod)
        if sub is not None:
            return await self._subresource(request, res, namespace, name or "", sub)
        if name is None:
            if method == "GET":
                return await self._list(request, res, namespace)
            if method == "POST":
                if res.namespaced and namespace is None:
                    raise method_not_allowed()
                return await self._create(request, res, namespace, user)
            raise method_not_allowed()
        if res.namespaced and namespace is None:
            raise path_not_found()
        return await self._object(request, res, namespace or "", name)

    async def _subresource(
        self, request: web.Request, res: Resource, namespace: str | None, name: str, sub: str
    ) -> web.Response:
        if res is disc.PODS and sub == "log" and namespace:
            # kubectl logs: the lab runs no main command, and says so as a Status.
            if request.method != "GET":
                raise method_not_allowed()
            raise pod_logs(self.api.store, namespace, name, request.query.get("container"))
        if res in WORKLOADS and sub in ("status", "scale") and namespace:
            return await self._workload(request, res, namespace, name, sub)
        if res is not disc.SERVICEACCOUNTS or sub != "token" or not namespace:
            raise path_not_found()
        if request.method != "POST":
            raise method_not_allowed()
        body = await read_body(request, protobuf=True)
        if isinstance(body, dict) and body.get("kind") not in (None, "", "TokenRequest"):
            raise bad_request(
                f'{body.get("kind")} in version "v1" cannot be handled as a TokenRequest'
            )
        return json_response(self.api.token_request(namespace, name, body), 201)

    async def _object(
        self, request: web.Request, res: Resource, ns: str, name: str
    ) -> web.Response:
        method = request.method
        if res in WORKLOADS and method in ("PUT", "PATCH"):
            return await self._workload(request, res, ns, name, "")
        if method == "GET":
            if res in _EVENTS:
                found = event_view(self.api.store.require("events", ns, name), res)
            else:
                found = ordered(self.api.store.require(res.name, ns, name, res.group), res)
            if "as=Table" in request.headers.get("Accept", ""):
                # kubectl get <kind> <name> asks for a one-row Table.
                rv = found["metadata"].get("resourceVersion", "")
                now = self.api.clock.now()
                if res in _EVENTS or res in WORKLOADS:
                    return json_response(workload_table(res, [found], rv, now))
                return json_response(disc.table(res.name, [found], rv, now))
            return json_response(found)
        if method == "DELETE":
            return json_response(await self._delete(res, ns, name))
        if res in _EVENTS:
            raise method_not_allowed()
        if method == "PUT":
            body = await read_body(request)
            check_kind(body, res)
            return json_response(self.api.replace(res, ns, name, body))
        if method == "PATCH":
            ctype = content_type(request)
            if ctype == "application/apply-patch+yaml":
                raise unsupported_media_type(_PATCH_ACCEPTED)
            body = await read_body(request, patch=True)
            return json_response(self.api.patch(res, ns, name, ctype, body))
        raise method_not_allowed()

    async def _workload(
        self, request: web.Request, res: Resource, ns: str, name: str, sub: str
    ) -> web.Response:
        """Deployments and ReplicaSets (:mod:`irsa_lab.kube.workloads`): GET, PUT, PATCH."""
        store = self.api.store
        if request.method == "GET":
            found = store.require(res.name, ns, name, res.group)
            return json_response(scale_of(res, found) if sub == "scale" else ordered(found, res))
        if request.method == "PUT":
            body = await read_body(request)
            if sub == "scale":
                return json_response(update_scale(store, res, ns, name, body))
            check_kind(body, res)
            return json_response(update_workload(store, res, ns, name, body, subresource=sub))
        if request.method == "PATCH":
            ctype = content_type(request)
            if ctype == "application/apply-patch+yaml":
                raise unsupported_media_type(_PATCH_ACCEPTED)
            body = await read_body(request, patch=True)
            if sub == "scale":
                return json_response(update_scale(store, res, ns, name, body, ctype))
            return json_response(
                update_workload(store, res, ns, name, body, content_type=ctype, subresource=sub)
            )
        raise method_not_allowed()

    # -- operations --------------------------------------------------------------------
    async def _create(
        self, request: web.Request, res: Resource, namespace: str | None, user: UserInfo
    ) -> web.Response:
        body = await read_body(request, protobuf=res is disc.SELF_SUBJECT_REVIEWS)
        check_kind(body, res)
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            body_ns = body["metadata"].get("namespace")
            if res.namespaced and body_ns and body_ns != namespace:
                raise bad_request(
                    "the namespace of the provided object does not match the "
                    "namespace sent on the request"
                )
        api = self.api
        if res is disc.NAMESPACES:
            return json_response(api.create_namespace(body), 201)
        if res is disc.SERVICEACCOUNTS:
            return json_response(api.create_service_account(namespace or "", body), 201)
        if res is disc.WEBHOOKS:
            return json_response(api.create_webhook_configuration(body), 201)
        if res is disc.TOKEN_REVIEWS:
            return json_response(api.token_review(body), 201)
        if res is disc.SELF_SUBJECT_REVIEWS:
            # kubectl auth whoami: who the bearer token is (the body carries nothing).
            return json_response(
                {
                    "kind": res.kind,
                    "apiVersion": res.api_version,
                    "metadata": {"creationTimestamp": rfc3339(api.clock.now())},
                    "status": {"userInfo": dict(user)},
                },
                201,
            )
        if res is disc.SELF_SUBJECT_ACCESS_REVIEWS:
            # kubectl auth can-i: what the lab's authorizer says to this user.
            return json_response(self_subject_access_review(user, body), 201)
        if res in WORKLOADS:
            return json_response(
                create_workload(api.store, api.clock, api.ids, res, namespace or "", body), 201
            )
        if res is disc.PODS:
            dry = request.query.get("dryRun") == "All"
            pod, warnings = await api.create_pod(namespace or "", body, dry_run=dry)
            return json_response(pod, 201, headers=warning_header(warnings))
        raise method_not_allowed()

    async def _delete(self, res: Resource, ns: str, name: str) -> Obj:
        if res is disc.PODS:
            return await self.api.delete_pod(ns, name)
        if res is disc.NAMESPACES:
            return await self.api.delete_namespace(name)
        if res in _EVENTS:
            raise method_not_allowed()
        obj = self.api.store.delete(res.name, ns, name, res.group)
        if res is disc.WEBHOOKS:
            return success_status(
                {"name": name, "group": res.group, "kind": res.name, "uid": obj["metadata"]["uid"]}
            )
        return ordered(obj, res)

    async def _list(
        self, request: web.Request, res: Resource, namespace: str | None
    ) -> web.StreamResponse:
        q = request.query
        labels = parse_label_selector(q.get("labelSelector", ""))
        events = res in _EVENTS
        parse_fields = parse_event_field_selector if events else parse_field_selector
        fields = parse_fields(q.get("fieldSelector", ""))
        match_fields = event_fields_match if events else fields_match

        def accept(obj: Obj) -> bool:
            return labels_match(labels, (obj.get("metadata") or {}).get("labels") or {}) and (
                match_fields(fields, obj)
            )

        if q.get("watch", "").lower() in ("true", "1"):
            return await self._watch(request, res, namespace, accept)
        store = self.api.store
        # The stored objects, not copies: each item below is a new top-level dict over them.
        items, rv = store.view(res.name, namespace, accept)
        items = [event_view(o, res) if events else ordered(o, res) for o in items]
        if "as=Table" in request.headers.get("Accept", "") and (events or res in WORKLOADS):
            return json_response(workload_table(res, items, str(rv), self.api.clock.now()))
        if "as=Table" in request.headers.get("Accept", ""):
            return json_response(disc.table(res.name, items, str(rv), self.api.clock.now()))
        for item in items:
            # Items of a list carry no kind/apiVersion on the real server.
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return json_response(
            {
                "kind": res.list_kind,
                "apiVersion": res.api_version,
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            }
        )

    async def _watch(
        self,
        request: web.Request,
        res: Resource,
        namespace: str | None,
        accept: Callable[[Obj], bool],
    ) -> web.StreamResponse:
        q = request.query
        try:
            timeout = float(q.get("timeoutSeconds", DEFAULT_WATCH_TIMEOUT_S))
            since_text = q.get("resourceVersion", "")
            since = int(since_text) if since_text not in ("", "0") else None
        except ValueError:
            raise bad_request("invalid timeoutSeconds or resourceVersion") from None
        # A streaming list (sendInitialEvents=true, resourceVersionMatch=NotOlderThan, as
        # client-go's informers send by default): the current state as ADDED events,
        # then the initial-events-end BOOKMARK, then changes.
        initial_events = q.get("sendInitialEvents", "").lower() == "true"
        if initial_events:
            since = None
        expired: ApiError | None = None
        watch = None
        try:
            watch = self.api.store.watch(
                res.name, namespace, accept, since, initial_events_end=initial_events
            )
        except ApiError as err:
            expired = err
        resp = web.StreamResponse(
            status=200,
            headers={"Content-Type": "application/json", "Cache-Control": API_CACHE_CONTROL},
        )
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        if expired is not None:
            # A watch from a compacted resourceVersion gets one ERROR event with a 410
            # Status, so clients re-list.
            await resp.write(
                (json.dumps({"type": "ERROR", "object": expired.status()}) + "\n").encode()
            )
            await resp.write_eof()
            return resp
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, timeout)
        try:
            while (remaining := deadline - loop.time()) > 0:
                if watch is None:
                    await asyncio.sleep(remaining)
                    break
                event = await watch.next(remaining)
                if event is None:
                    break
                line = json.dumps(
                    {
                        "type": event.type,
                        "object": event_view(event.object, res)
                        if res in _EVENTS and event.type != "BOOKMARK"
                        else ordered(event.object, res),
                    },
                    separators=(",", ":"),
                )
                await resp.write((line + "\n").encode())
        except (ConnectionResetError, ConnectionError):
            pass
        finally:
            if watch is not None:
                watch.close()
        try:
            await resp.write_eof()
        except (ConnectionResetError, ConnectionError):
            pass
        return resp


def _found(doc: Obj | None) -> Obj:
    if doc is None:
        raise path_not_found()
    return doc
