"""The webhook's ServiceAccount watcher: list, then watch (docs/reference/webhook.md §8.1).

:class:`ApiServerWatcher` keeps a :class:`~irsa_lab.webhook.service_account_cache.ServiceAccountCache`
in step with a Kubernetes API server over HTTPS, as upstream's client-go informer
does: list ``/api/v1/serviceaccounts``, then watch from the list's ``resourceVersion``;
on a broken stream it watches again from the last version seen, and on ``410 Gone``
or any other error it lists again (after a short backoff). It is also the cache's
getter: the ``GET`` of one ServiceAccount that a lookup in its grace period makes
(webhook.md §6.4).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    import aiohttp

from ..client_http import aiohttp_module
from .service_account_cache import ServiceAccountCache, object_resource_version
from .service_account_get import ServerTimeout

__all__ = ["SA_LIST_PATH", "ApiServerWatcher", "WatchExpired"]

SA_LIST_PATH = "/api/v1/serviceaccounts"


class WatchExpired(Exception):
    """Raised when the API server answers a watch with ``410 Gone``: list again."""


class ApiServerWatcher:
    """Keeps a :class:`ServiceAccountCache` in step with an API server (list, then watch).

    ``ssl_context`` must trust the API server's CA (TLS verification is never turned
    off); ``token`` is sent as ``Authorization: Bearer``. Run it on an event loop with
    :meth:`start` and end it with :meth:`stop`. The watcher becomes its cache's getter
    (unless the cache has one), so lookups can GET an account. Its ``get`` and
    ``lookup`` are the cache's own (:meth:`ServiceAccountCache.get`,
    :meth:`ServiceAccountCache.lookup`), so the webhook can be handed either.

    A watch resumes from the last resourceVersion seen, and a list hands the watch its
    own resourceVersion, so a change made between the two arrives in the watch's
    replay: no change is lost as long as the server honours ``resourceVersion`` (or
    answers ``410 Gone``, on which the watcher lists again).
    """

    def __init__(
        self,
        server: str,
        *,
        token: str | None,
        ssl_context: ssl.SSLContext | None,
        cache: ServiceAccountCache | None = None,
        watch_timeout_s: int = 300,
        backoff_s: float = 0.05,
        max_backoff_s: float = 2.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.cache = cache if cache is not None else ServiceAccountCache(ready=False)
        if self.cache.getter is None:
            self.cache.getter = self
        # Reads are the cache's own: the watcher answers them as its cache does.
        self.get = self.cache.get
        self.lookup = self.cache.lookup
        self._token = token
        # aiohttp's default (True) verifies against the system store; never False.
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._watch_timeout_s = watch_timeout_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self.resource_version = ""
        self.lists = 0  # how many times the watcher listed (relists show errors)
        self.watches = 0  # how many watch requests it opened
        self.last_error = ""

    @classmethod
    def from_kubeconfig(cls, path: str | Path, **kwargs: Any) -> ApiServerWatcher:
        """Build from a kubeconfig: its current context's server, CA and bearer token."""
        path = Path(path)
        import yaml  # a kubeconfig is read once, at start, and only in this mode

        cfg = yaml.safe_load(path.read_text())
        ctx_name = cfg.get("current-context")
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg.get("users", []) if u["name"] == ctx.get("user"))
        if "certificate-authority-data" in cluster:
            cadata = base64.b64decode(cluster["certificate-authority-data"]).decode()
            context = ssl.create_default_context(cadata=cadata)
        elif "certificate-authority" in cluster:
            ca_path = Path(cluster["certificate-authority"])
            if not ca_path.is_absolute():
                ca_path = path.parent / ca_path
            context = ssl.create_default_context(cafile=str(ca_path))
        else:
            context = ssl.create_default_context()
        return cls(cluster["server"], token=user.get("token"), ssl_context=context, **kwargs)

    @property
    def ready(self) -> bool:
        """Whether the first list has filled the cache."""
        return self.cache.ready

    # -- the API calls -----------------------------------------------------------------
    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("the watcher is not started")
        return self._session

    async def get_service_account(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """``GET /api/v1/namespaces/<ns>/serviceaccounts/<name>``; ``None`` on 404."""
        url = (
            f"{self.server}/api/v1/namespaces/{quote(namespace, safe='')}"
            f"/serviceaccounts/{quote(name, safe='')}"
        )
        async with self._client().get(url, ssl=self._ssl) as resp:
            body = await resp.json(content_type=None)
            if resp.status == 200:
                return body if isinstance(body, Mapping) else None
            reason = body.get("reason") if isinstance(body, Mapping) else None
            if resp.status == 404 and reason == "NotFound":
                return None
            if reason == "ServerTimeout":
                raise ServerTimeout(str(body.get("message") or "server timeout"))
            raise RuntimeError(f"get serviceaccount {namespace}/{name}: HTTP {resp.status}")

    # -- lifecycle -----------------------------------------------------------------
    async def start(self, *, wait_s: float | None = 5.0) -> ApiServerWatcher:
        """Start listing and watching; wait up to ``wait_s`` for the first list.

        Raises ``TimeoutError`` if the cache did not sync in time (upstream exits then);
        the watcher keeps trying in the background either way.
        """
        if self._task is None:
            headers = {"Accept": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._session = aiohttp_module().ClientSession(headers=headers)
            self._task = asyncio.create_task(self._run(), name="sa-watcher")
        if wait_s is not None and not await self.cache.wait_until(lambda: self.ready, wait_s):
            raise TimeoutError(f"service account cache not synced: {self.last_error}")
        return self

    async def stop(self) -> None:
        """Stop watching, cancel pending GETs and close the HTTP session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.cache.cancel_fetches()
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- the loop --------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self._backoff_s
        need_list = True
        while True:
            try:
                if need_list:
                    await self._list()
                    need_list = False
                await self._watch()
                backoff = self._backoff_s  # a clean end of stream: watch again
            except asyncio.CancelledError:
                raise
            except WatchExpired as exc:
                self.last_error = str(exc)
                need_list = True
            except Exception as exc:  # any failure: back off, then list again
                self.last_error = f"{type(exc).__name__}: {exc}"
                need_list = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._max_backoff_s)

    async def _list(self) -> None:
        async with self._client().get(self.server + SA_LIST_PATH, ssl=self._ssl) as resp:
            if resp.status != 200:
                raise RuntimeError(f"list serviceaccounts: HTTP {resp.status}")
            body = await resp.json(content_type=None)
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.cache.replace_objects(body.get("items") or [], rv)
        self.resource_version = rv
        self.lists += 1
        self.cache.mark_ready()

    async def _watch(self) -> None:
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._watch_timeout_s),
        }
        if self.resource_version:
            params["resourceVersion"] = self.resource_version
        timeout = aiohttp_module().ClientTimeout(total=None, sock_read=self._watch_timeout_s + 30)
        self.watches += 1
        async with self._client().get(
            self.server + SA_LIST_PATH, params=params, ssl=self._ssl, timeout=timeout
        ) as resp:
            if resp.status == 410:
                raise WatchExpired("watch answered 410 Gone")
            if resp.status != 200:
                raise RuntimeError(f"watch serviceaccounts: HTTP {resp.status}")
            async for line in resp.content:
                if line.strip():
                    self._apply(json.loads(line))

    def _apply(self, event: Mapping[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            # A Status object; 410 (resource version too old) means list again.
            if obj.get("code") == 410:
                raise WatchExpired(obj.get("message") or "410 Gone")
            raise RuntimeError(f"watch error: {obj.get('message')}")
        rv = object_resource_version(obj)
        if kind in ("ADDED", "MODIFIED"):
            self.cache.put_object(obj)
        elif kind == "DELETED":
            self.cache.delete_object(obj)
        elif kind == "BOOKMARK":
            self.cache.observe(rv)
        if rv:
            self.resource_version = rv
