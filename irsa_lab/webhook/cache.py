"""The webhook's ServiceAccount cache and the watcher that fills it from an API server.

Upstream runs a client-go informer over all ServiceAccounts and keeps, for each, only
the annotations under the prefix (specs/webhook.md §1.1, §8.1). Here:

* :class:`ServiceAccountCache` is that store: a thread-safe dict from
  ``(namespace, name)`` to annotations, filled by hand in unit tests and notebooks;
* :class:`ApiServerWatcher` keeps a cache in step with a Kubernetes API server over
  HTTPS: list ``/api/v1/serviceaccounts``, then watch from the list's
  ``resourceVersion``; on a broken stream it watches again from the last version
  seen, and on ``410 Gone`` or any other error it lists again (after a short backoff).

The cache answers :meth:`~ServiceAccountCache.get` with ``None`` for an unknown SA,
which the webhook treats as "no role": the pod is admitted unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import ssl
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from .. import constants as C

SA_LIST_PATH = "/api/v1/serviceaccounts"


class ServiceAccountCache:
    """ServiceAccount annotations by ``(namespace, name)``, keeping only the prefix's keys.

    ``ready`` is true once the cache holds a complete view (always, for a cache filled
    by hand; after the first list, for a watched one).
    """

    def __init__(self, prefix: str = C.ANNOTATION_PREFIX, *, ready: bool = True) -> None:
        self._prefix = prefix + "/"
        self._items: dict[tuple[str, str], dict[str, str]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        if ready:
            self._ready.set()

    @property
    def ready(self) -> bool:
        """Whether the cache has synced (upstream refuses to serve until it has)."""
        return self._ready.is_set()

    def mark_ready(self) -> None:
        """Say the cache now holds a complete view."""
        self._ready.set()

    def _keep(self, annotations: Mapping[str, Any] | None) -> dict[str, str]:
        # Upstream strips every SA down to the annotations under its prefix.
        return {
            k: v
            for k, v in (annotations or {}).items()
            if isinstance(k, str) and isinstance(v, str) and k.startswith(self._prefix)
        }

    def put(self, namespace: str, name: str, annotations: Mapping[str, Any] | None) -> None:
        """Add or replace a ServiceAccount."""
        with self._lock:
            self._items[(namespace, name)] = self._keep(annotations)

    def delete(self, namespace: str, name: str) -> None:
        """Forget a ServiceAccount (no error if unknown)."""
        with self._lock:
            self._items.pop((namespace, name), None)

    def replace_all(self, items: Mapping[tuple[str, str], Mapping[str, Any] | None]) -> None:
        """Replace the whole content, as a fresh list does."""
        kept = {key: self._keep(ann) for key, ann in items.items()}
        with self._lock:
            self._items = kept

    def put_object(self, sa: Mapping[str, Any]) -> None:
        """Add or replace from a ServiceAccount object as the API serves it."""
        key = _key(sa)
        if key is not None:
            meta = sa.get("metadata") or {}
            self.put(key[0], key[1], meta.get("annotations"))

    def get(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The prefixed annotations of ``namespace/name``, or ``None`` when unknown."""
        with self._lock:
            found = self._items.get((namespace, name))
            return dict(found) if found is not None else None

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Everything cached, keyed ``"namespace/name"`` (upstream's debug cache dump)."""
        with self._lock:
            return {f"{ns}/{n}": dict(a) for (ns, n), a in sorted(self._items.items())}


def _key(sa: Mapping[str, Any]) -> tuple[str, str] | None:
    meta = sa.get("metadata") if isinstance(sa, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    ns, name = meta.get("namespace"), meta.get("name")
    if not isinstance(ns, str) or not isinstance(name, str):
        return None
    return ns, name


class WatchExpired(Exception):
    """Raised when the API server answers a watch with ``410 Gone``: list again."""


class ApiServerWatcher:
    """Keeps a :class:`ServiceAccountCache` in step with an API server (list, then watch).

    ``ssl_context`` must trust the API server's CA (TLS verification is never turned
    off); ``token`` is sent as ``Authorization: Bearer``. Run it on an event loop with
    :meth:`start` and end it with :meth:`stop`.
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
        self.last_error = ""

    @classmethod
    def from_kubeconfig(cls, path: str | Path, **kwargs: Any) -> ApiServerWatcher:
        """Build from a kubeconfig: its current context's server, CA and bearer token."""
        path = Path(path)
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

    def get(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """Same as the cache's :meth:`ServiceAccountCache.get`."""
        return self.cache.get(namespace, name)

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
            self._session = aiohttp.ClientSession(headers=headers)
            self._task = asyncio.create_task(self._run(), name="sa-watcher")
        if wait_s is not None:
            deadline = asyncio.get_running_loop().time() + wait_s
            while not self.ready:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"service account cache not synced: {self.last_error}")
                await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        """Stop watching and close the HTTP session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
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
        assert self._session is not None
        async with self._session.get(self.server + SA_LIST_PATH, ssl=self._ssl) as resp:
            if resp.status != 200:
                raise RuntimeError(f"list serviceaccounts: HTTP {resp.status}")
            body = await resp.json(content_type=None)
        items: dict[tuple[str, str], Any] = {}
        for sa in body.get("items") or []:
            key = _key(sa)
            if key is not None:
                items[key] = (sa.get("metadata") or {}).get("annotations")
        self.cache.replace_all(items)
        self.resource_version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.lists += 1
        self.cache.mark_ready()

    async def _watch(self) -> None:
        assert self._session is not None
        params = {
            "watch": "true",
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(self._watch_timeout_s),
        }
        if self.resource_version:
            params["resourceVersion"] = self.resource_version
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self._watch_timeout_s + 30)
        async with self._session.get(
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
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind in ("ADDED", "MODIFIED"):
            self.cache.put_object(obj)
        elif kind == "DELETED":
            key = _key(obj)
            if key is not None:
                self.cache.delete(*key)
        if rv:
            self.resource_version = str(rv)
