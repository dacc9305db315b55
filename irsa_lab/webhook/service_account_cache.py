"""The webhook's ServiceAccount cache and its lookup grace period.

Upstream runs a client-go informer over all ServiceAccounts and keeps, for each, only
its name, namespace, resourceVersion and the annotations under the prefix
(docs/reference/webhook.md §1.1, §8.1). :class:`ServiceAccountCache` is that store:
thread-safe, filled by hand in unit tests and notebooks or by the watcher
(:class:`~irsa_lab.webhook.service_account_watcher.ApiServerWatcher`). Its
:meth:`~ServiceAccountCache.lookup` is what the webhook asks for each pod, with
upstream's ``--service-account-lookup-grace-period`` (§6.4) and the lab's consistent
lookup (below); the GET it makes of an account is in
:mod:`~irsa_lab.webhook.service_account_get`.

How a lookup answers, by setting:

=====================================  ==============================================
grace period 0 (upstream's default)    the cache as it is; an account it does not hold
                                       is missing, and the pod is admitted unchanged
grace period > 0 (upstream)            an account in the cache is answered at once; a
                                       missing one is asked for with a ``GET``
                                       (deduplicated, rate limited) and waited for, up
                                       to the grace period, from the watch or that GET
grace period > 0, ``consistent``       the lab's: first ``GET`` the account to learn the
(the lab's; no upstream flag)          resourceVersion the API server holds now, then
                                       wait, within the same grace period, until the
                                       cache has seen that version
=====================================  ==============================================

Upstream's grace period covers only a *missing* account: an account already cached is
answered from the cache even if ``kubectl annotate`` changed it a moment ago and the
informer has not brought the change yet, so a pod created right then is not mutated.
On a real cluster the fix is the caller's: wait until a server-side dry run of the pod
(``kubectl create --dry-run=server``) comes back mutated. The lab's consistent lookup
closes that race inside the webhook instead, so the notebooks can annotate and create
at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .. import constants as C
from .service_account_get import (
    FETCH_BURST,
    FETCH_RATE_PER_S,
    FETCH_TIMEOUT_S,
    BackgroundTasks,
    RateLimiter,
    ServiceAccountGetter,
    SharedGets,
    get_with_retries,
)

__all__ = [
    "Lookup",
    "LookupHow",
    "ServiceAccountCache",
    "object_key",
    "object_resource_version",
]

LookupHow = Literal["cached", "appeared", "missing", "current", "stale"]
"""How a lookup got its answer:

* ``cached``: the account was in the cache when asked (or, without a grace period,
  the cache's answer as it stood, found or not);
* ``appeared``: missing, then added within the grace period, by the watch or the GET;
* ``missing``: not in the cache at the end of the grace period (upstream: not mutated),
  or, for a consistent lookup, an account the API server does not have either;
* ``current``: consistent lookup: the cache held the API server's current version;
* ``stale``: consistent lookup: the cache did not reach the API server's current version
  within the grace period; the answer is what the cache held then.
"""


@dataclass(frozen=True)
class Lookup:
    """The annotations a lookup found (``None``: the account is not in the cache), and how."""

    annotations: Mapping[str, str] | None
    how: LookupHow

    @property
    def found(self) -> bool:
        return self.annotations is not None


def _at_least(have: str, want: str) -> bool:
    """Whether resourceVersion ``have`` is ``want`` or later.

    Kubernetes calls resourceVersions opaque; API servers (etcd revisions, the lab's
    counter) hand out increasing integers, which are compared as such. Anything else
    compares by equality only.
    """
    if have.isdigit() and want.isdigit():
        return int(have) >= int(want)
    return have != "" and have == want


def _later(have: str, than: str) -> bool:
    """Whether resourceVersion ``have`` is strictly later than ``than`` (integers only)."""
    return have.isdigit() and than.isdigit() and int(have) > int(than)


def object_resource_version(obj: Mapping[str, Any]) -> str:
    """``metadata.resourceVersion`` of an object as served, ``""`` when it has none."""
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return str(rv) if rv else ""


def object_key(sa: Mapping[str, Any]) -> tuple[str, str] | None:
    """``(namespace, name)`` of a ServiceAccount as served, ``None`` when it lacks one."""
    meta = sa.get("metadata") if isinstance(sa, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    ns, name = meta.get("namespace"), meta.get("name")
    if not isinstance(ns, str) or not isinstance(name, str):
        return None
    return ns, name


@dataclass
class _Entry:
    annotations: dict[str, str]
    resource_version: str


@dataclass
class ServiceAccountCache:
    """ServiceAccount annotations by ``(namespace, name)``, keeping only the prefix's keys.

    ``ready`` is true once the cache holds a complete view (always, for a cache filled
    by hand; after the first list, for a watched one). ``getter`` (optional) reads one
    account from the API server: the GET of a missing account during the grace period,
    and the consistent lookup's first step; a watcher sets itself here.

    Every change wakes whoever waits in :meth:`lookup`, :meth:`wait_until` (coroutines
    on any event loop) or :meth:`wait` (threads).
    """

    def __init__(
        self,
        prefix: str = C.ANNOTATION_PREFIX,
        *,
        ready: bool = True,
        getter: ServiceAccountGetter | None = None,
        fetch_limiter: RateLimiter | None = None,
    ) -> None:
        self._prefix = prefix + "/"
        self._items: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._ready = threading.Event()
        if ready:
            self._ready.set()
        self._observed = ""  # the last resourceVersion the API server's stream reached
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.getter = getter
        self._limiter = fetch_limiter or RateLimiter(FETCH_RATE_PER_S, FETCH_BURST)
        self._fetching: set[tuple[str, str]] = set()
        self._fetch_tasks = BackgroundTasks()
        self._shared_gets = SharedGets(self._fetch_tasks)
        self.fetches = 0  # GETs of missing accounts started (upstream's fetchFromAPI)
        self.last_fetch_error = ""

    # -- state -----------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether the cache has synced (upstream refuses to serve until it has)."""
        return self._ready.is_set()

    def mark_ready(self) -> None:
        """Say the cache now holds a complete view."""
        with self._lock:
            self._ready.set()
            self._notify()

    @property
    def resource_version(self) -> str:
        """The last resourceVersion the watch (or list) brought: the cache has seen every
        change up to it. Empty for a cache filled by hand."""
        with self._lock:
            return self._observed

    @property
    def waiting(self) -> int:
        """How many coroutines are waiting for a change (lookups in their grace period)."""
        with self._lock:
            return len(self._async_waiters)

    def _keep(self, annotations: Mapping[str, Any] | None) -> dict[str, str]:
        # Upstream strips every SA down to the annotations under its prefix.
        return {
            k: v
            for k, v in (annotations or {}).items()
            if isinstance(k, str) and isinstance(v, str) and k.startswith(self._prefix)
        }

    def _observe(self, rv: str) -> None:
        # Called with the lock held.
        # Events come in order; never step back past a version already reached.
        if rv and not _later(self._observed, rv):
            self._observed = rv

    def _notify(self) -> None:
        # Called with the lock held: wake thread waiters and every waiting coroutine.
        self._changed.notify_all()
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, event in self._async_waiters:
            if loop is here:
                event.set()
            else:
                with contextlib.suppress(RuntimeError):  # that loop is closed
                    loop.call_soon_threadsafe(event.set)

    # -- writes ----------------------------------------------------------------------
    def put(
        self,
        namespace: str,
        name: str,
        annotations: Mapping[str, Any] | None,
        resource_version: str = "",
    ) -> None:
        """Add or replace a ServiceAccount."""
        kept = self._keep(annotations)
        with self._lock:
            self._items[(namespace, name)] = _Entry(kept, resource_version)
            self._notify()

    def delete(self, namespace: str, name: str) -> None:
        """Forget a ServiceAccount (no error if unknown)."""
        with self._lock:
            self._items.pop((namespace, name), None)
            self._notify()

    def replace_all(
        self,
        items: Mapping[tuple[str, str], Mapping[str, Any] | None],
        resource_version: str = "",
    ) -> None:
        """Replace the whole content, as a fresh list does (``items``: annotations by key)."""
        kept = {key: _Entry(self._keep(ann), "") for key, ann in items.items()}
        with self._lock:
            self._items = kept
            self._observed = resource_version
            self._notify()

    def replace_objects(self, objects: Iterable[Mapping[str, Any]], resource_version: str) -> None:
        """Replace the whole content with a list's ServiceAccounts, as of its resourceVersion."""
        kept: dict[tuple[str, str], _Entry] = {}
        for sa in objects:
            key = object_key(sa)
            if key is not None:
                kept[key] = _Entry(
                    self._keep(sa["metadata"].get("annotations")), object_resource_version(sa)
                )
        with self._lock:
            self._items = kept
            self._observed = resource_version
            self._notify()

    def put_object(self, sa: Mapping[str, Any]) -> None:
        """Add or replace from a ServiceAccount object as the API serves it (a watch event).

        A copy the cache already holds at a later resourceVersion (one a GET brought
        ahead of the watch) is kept: the watch catches up with it.
        """
        key = object_key(sa)
        if key is None:
            return
        rv = object_resource_version(sa)
        kept = self._keep(sa["metadata"].get("annotations"))
        with self._lock:
            old = self._items.get(key)
            if old is None or not _later(old.resource_version, rv):
                self._items[key] = _Entry(kept, rv)
            self._observe(rv)
            self._notify()

    def delete_object(self, sa: Mapping[str, Any]) -> None:
        """Forget the ServiceAccount of a ``DELETED`` event."""
        key = object_key(sa)
        if key is None:
            return
        with self._lock:
            self._items.pop(key, None)
            self._observe(object_resource_version(sa))
            self._notify()

    def observe(self, resource_version: str) -> None:
        """Record that the stream reached ``resource_version`` (a watch BOOKMARK)."""
        with self._lock:
            self._observe(resource_version)
            self._notify()

    def add_fetched(self, sa: Mapping[str, Any]) -> bool:
        """Add an account a GET brought, unless the cache holds it already or the watch
        has gone past that version (so the account may have been deleted since).

        Returns whether it was added.
        """
        key = object_key(sa)
        if key is None:
            return False
        rv = object_resource_version(sa)
        with self._lock:
            if key in self._items or (rv and _at_least(self._observed, rv)):
                return False
            self._items[key] = _Entry(self._keep(sa["metadata"].get("annotations")), rv)
            self._notify()
            return True

    # -- reads -----------------------------------------------------------------------
    def get(self, namespace: str, name: str) -> Mapping[str, str] | None:
        """The prefixed annotations of ``namespace/name``, or ``None`` when unknown."""
        with self._lock:
            found = self._items.get((namespace, name))
            return dict(found.annotations) if found is not None else None

    def resource_version_of(self, namespace: str, name: str) -> str | None:
        """The resourceVersion the cache holds ``namespace/name`` at (``""`` when put by
        hand), or ``None`` when unknown."""
        with self._lock:
            found = self._items.get((namespace, name))
            return found.resource_version if found is not None else None

    def snapshot(self) -> dict[str, dict[str, str]]:
        """Everything cached, keyed ``"namespace/name"`` (upstream's debug cache dump)."""
        with self._lock:
            return {f"{ns}/{n}": dict(e.annotations) for (ns, n), e in sorted(self._items.items())}

    # -- waiting ---------------------------------------------------------------------
    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait on this event loop until ``predicate()`` holds, re-checked on each change.

        Returns whether it held before ``timeout`` seconds passed. Nothing polls: the
        coroutine sleeps until the cache changes.
        """
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        waiter = (loop, changed)
        with self._lock:
            self._async_waiters.append(waiter)
            self._changed.notify_all()  # let thread waiters see ``waiting`` grow
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                while True:
                    # Clear before checking: a change after the check sets it again.
                    changed.clear()
                    if predicate():
                        return True
                    await changed.wait()
        except TimeoutError:
            return predicate()
        finally:
            with self._lock:
                self._async_waiters.remove(waiter)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Block this thread until ``predicate()`` holds or ``timeout`` seconds pass."""
        with self._changed:
            return self._changed.wait_for(predicate, timeout)

    # -- the lookup the webhook makes ----------------------------------------------------
    async def lookup(
        self,
        namespace: str,
        name: str,
        *,
        grace_period_s: float = 0.0,
        consistent: bool = False,
    ) -> Lookup:
        """The annotations of ``namespace/name`` for a pod being admitted.

        ``grace_period_s`` is upstream's ``--service-account-lookup-grace-period``: with
        0 the cache answers as it is. Otherwise an account the cache does not hold is
        asked for with a GET (when there is a getter; one at a time per account, 10 a
        second with a burst of 20) and waited for up to the grace period, from the watch
        or that GET; an account the cache holds is answered at once, as upstream does,
        whatever changed on the API server since.

        ``consistent`` is the lab's and has no upstream flag: the GET comes first, for
        every lookup, and tells the resourceVersion the API server holds for the account
        now; the lookup then waits, within the same grace period, until the cache has
        seen that version (or, for an account the server does not have, until the cache
        has dropped it). So a pod created right after ``kubectl annotate`` sees the new
        annotation, which upstream's grace period does not promise. A cache that does
        not get there in time answers with what it holds (``stale``); a failed GET falls
        back to upstream's behaviour. Without a getter ``consistent`` changes nothing.
        """
        if grace_period_s <= 0:
            found = self.get(namespace, name)
            return Lookup(found, "cached" if found is not None else "missing")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_period_s
        if consistent and self.getter is not None:
            result = await self._consistent_lookup(self.getter, namespace, name, deadline)
            if result is not None:
                return result
        found = self.get(namespace, name)
        if found is not None:
            return Lookup(found, "cached")
        self._request_fetch(namespace, name)
        appeared = await self.wait_until(
            lambda: self.resource_version_of(namespace, name) is not None,
            deadline - loop.time(),
        )
        found = self.get(namespace, name)
        return Lookup(found, "appeared" if appeared and found is not None else "missing")

    async def _consistent_lookup(
        self, getter: ServiceAccountGetter, namespace: str, name: str, deadline: float
    ) -> Lookup | None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                # Shared with the other lookups of the account that join before it starts.
                current = await self._shared_gets.read(getter, namespace, name)
        except Exception as exc:  # the server cannot tell: do as upstream does
            self.last_fetch_error = f"{type(exc).__name__}: {exc}"
            return None
        if current is None:
            # The server has no such account: the cache must not answer with an old one.
            gone = await self.wait_until(
                lambda: self.resource_version_of(namespace, name) is None,
                deadline - loop.time(),
            )
            return Lookup(None, "missing") if gone else Lookup(self.get(namespace, name), "stale")
        want = object_resource_version(current)
        # A missing account is added from the GET, as upstream's fetch adds it.
        self.add_fetched(current)

        def seen() -> bool:
            have = self.resource_version_of(namespace, name)
            return (have is not None and _at_least(have, want)) or _at_least(
                self.resource_version, want
            )

        reached = await self.wait_until(seen, deadline - loop.time())
        return Lookup(self.get(namespace, name), "current" if reached else "stale")

    def _request_fetch(self, namespace: str, name: str) -> None:
        getter = self.getter
        key = (namespace, name)
        if getter is None:
            return
        with self._lock:
            if key in self._fetching:
                return  # one GET at a time per account, as upstream's notifier dedupes
            self._fetching.add(key)
            self.fetches += 1
        self._fetch_tasks.spawn(self._fetch(getter, namespace, name))

    async def _fetch(self, getter: ServiceAccountGetter, namespace: str, name: str) -> None:
        try:
            await self._limiter.wait()
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                sa = await get_with_retries(getter, namespace, name)
        except Exception as exc:  # upstream logs the error; the pod waits out its grace
            self.last_fetch_error = f"{type(exc).__name__}: {exc}"
            return
        finally:
            with self._lock:
                self._fetching.discard((namespace, name))
        if sa is not None:
            self.add_fetched(sa)

    async def cancel_fetches(self) -> None:
        """Cancel the GETs still running (call on the loop they run on, before closing)."""
        await self._fetch_tasks.cancel()
