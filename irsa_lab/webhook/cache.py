"""The webhook's ServiceAccount cache, its lookup grace period, and the watcher that fills it.

Upstream runs a client-go informer over all ServiceAccounts and keeps, for each, only
its name, namespace, resourceVersion and the annotations under the prefix
(docs/reference/webhook.md §1.1, §8.1). Here:

* :class:`ServiceAccountCache` is that store: thread-safe, filled by hand in unit tests
  and notebooks or by a watcher. Its :meth:`~ServiceAccountCache.lookup` is what the
  webhook asks for each pod, with upstream's ``--service-account-lookup-grace-period``
  (§6.4) and the lab's consistent lookup (below);
* :class:`ApiServerWatcher` keeps a cache in step with a Kubernetes API server over
  HTTPS: list ``/api/v1/serviceaccounts``, then watch from the list's
  ``resourceVersion``; on a broken stream it watches again from the last version
  seen, and on ``410 Gone`` or any other error it lists again (after a short backoff).
  It is also the cache's getter: the ``GET`` of one ServiceAccount.

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
import base64
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote

import aiohttp
import yaml

from .. import constants as C

SA_LIST_PATH = "/api/v1/serviceaccounts"

# Upstream's GET of a missing account (docs/reference/webhook.md §6.4): rate limited to
# 10/s with a burst of 20, each call within 1 s, retried on ServerTimeout with client-go's
# retry.DefaultBackoff (4 steps from 10 ms, factor 5; its 10 % jitter left out).
FETCH_RATE_PER_S = 10.0
FETCH_BURST = 20
FETCH_TIMEOUT_S = 1.0
FETCH_RETRY_DELAYS_S = (0.01, 0.05, 0.25)

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


class ServerTimeout(Exception):
    """Raised by a getter when the API server answers with a ``ServerTimeout`` Status.

    The only error upstream retries a ServiceAccount GET on.
    """


class ServiceAccountGetter(Protocol):
    """Reads one ServiceAccount from the API server (upstream's ``ServiceAccountsGetter``)."""

    async def get_service_account(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """The object as served, or ``None`` when the server has no such account.

        Raises :class:`ServerTimeout`, or any other exception, when the call fails.
        """
        ...


class RateLimiter:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved.

    :meth:`wait` takes a token, waiting for it when none is left, as Go's
    ``rate.Limiter.Wait`` does. ``now`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        now: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._now = now
        self._sleep = sleep
        self._tokens = float(burst)
        self._last = now()

    async def wait(self) -> None:
        now = self._now()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        # Reserve the token now (the count may go negative), then wait for the debt.
        self._tokens -= 1.0
        if self._tokens < 0:
            await self._sleep(-self._tokens / self._rate)


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


def _rv_of(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    rv = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return str(rv) if rv else ""


def _key(sa: Mapping[str, Any]) -> tuple[str, str] | None:
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
class _Flight:
    """The consistent lookups' GETs of one account: the one running, and the next."""

    loop: asyncio.AbstractEventLoop
    next: asyncio.Future[Mapping[str, Any] | None] | None = None
    task: asyncio.Task[None] | None = None


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
        self._fetch_tasks: set[asyncio.Task[None]] = set()
        self._flights: dict[tuple[str, str], _Flight] = {}
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
            key = _key(sa)
            if key is not None:
                kept[key] = _Entry(self._keep(sa["metadata"].get("annotations")), _rv_of(sa))
        with self._lock:
            self._items = kept
            self._observed = resource_version
            self._notify()

    def put_object(self, sa: Mapping[str, Any]) -> None:
        """Add or replace from a ServiceAccount object as the API serves it (a watch event).

        A copy the cache already holds at a later resourceVersion (one a GET brought
        ahead of the watch) is kept: the watch catches up with it.
        """
        key = _key(sa)
        if key is None:
            return
        rv = _rv_of(sa)
        kept = self._keep(sa["metadata"].get("annotations"))
        with self._lock:
            old = self._items.get(key)
            if old is None or not _later(old.resource_version, rv):
                self._items[key] = _Entry(kept, rv)
            self._observe(rv)
            self._notify()

    def delete_object(self, sa: Mapping[str, Any]) -> None:
        """Forget the ServiceAccount of a ``DELETED`` event."""
        key = _key(sa)
        if key is None:
            return
        with self._lock:
            self._items.pop(key, None)
            self._observe(_rv_of(sa))
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
        key = _key(sa)
        if key is None:
            return False
        rv = _rv_of(sa)
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
            result = await self._consistent_lookup(namespace, name, deadline)
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

    async def _consistent_lookup(self, namespace: str, name: str, deadline: float) -> Lookup | None:
        assert self.getter is not None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                current = await self._read_current(self.getter, namespace, name)
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
        want = _rv_of(current)
        # A missing account is added from the GET, as upstream's fetch adds it.
        self.add_fetched(current)

        def seen() -> bool:
            have = self.resource_version_of(namespace, name)
            return (have is not None and _at_least(have, want)) or _at_least(
                self.resource_version, want
            )

        reached = await self.wait_until(seen, deadline - loop.time())
        return Lookup(self.get(namespace, name), "current" if reached else "stale")

    async def _read_current(
        self, getter: ServiceAccountGetter, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        """A GET of the account that starts after this call did, shared with the other
        lookups of the same account that join before it starts.

        Pods of one ServiceAccount come in bursts (a Deployment scaling up, a load test):
        while one GET runs, the lookups that arrive join the next one, so a burst costs
        two GETs, not one per pod, and each lookup still reads the state of its own
        moment or later.
        """
        loop = asyncio.get_running_loop()
        key = (namespace, name)
        flight = self._flights.get(key)
        if flight is None or flight.loop is not loop:
            flight = self._flights[key] = _Flight(loop)
        if flight.next is None:
            flight.next = loop.create_future()
            # Nobody may be left to read a failure (every joiner timed out): mark it read.
            flight.next.add_done_callback(lambda f: f.cancelled() or f.exception())
        joined = flight.next
        if flight.task is None:
            flight.task = loop.create_task(self._fly(flight, getter, namespace, name))
            self._fetch_tasks.add(flight.task)
            flight.task.add_done_callback(self._fetch_tasks.discard)
        return await asyncio.shield(joined)

    async def _fly(
        self, flight: _Flight, getter: ServiceAccountGetter, namespace: str, name: str
    ) -> None:
        try:
            while flight.next is not None:
                answer, flight.next = flight.next, None
                try:
                    answer.set_result(await self._get(getter, namespace, name))
                except asyncio.CancelledError:
                    answer.cancel()
                    raise
                except Exception as exc:
                    answer.set_exception(exc)
        finally:
            if flight.next is not None:
                flight.next.cancel()
            if self._flights.get((namespace, name)) is flight:
                del self._flights[(namespace, name)]

    @staticmethod
    async def _get(
        getter: ServiceAccountGetter, namespace: str, name: str
    ) -> Mapping[str, Any] | None:
        if not namespace or not name:
            return None  # client-go refuses an empty name before any request
        for delay in (*FETCH_RETRY_DELAYS_S, None):
            try:
                return await getter.get_service_account(namespace, name)
            except ServerTimeout:
                if delay is None:
                    raise
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

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
        task = asyncio.get_running_loop().create_task(self._fetch(getter, namespace, name))
        self._fetch_tasks.add(task)
        task.add_done_callback(self._fetch_tasks.discard)

    async def _fetch(self, getter: ServiceAccountGetter, namespace: str, name: str) -> None:
        try:
            await self._limiter.wait()
            async with asyncio.timeout(FETCH_TIMEOUT_S):
                sa = await self._get(getter, namespace, name)
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
        tasks = list(self._fetch_tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


class WatchExpired(Exception):
    """Raised when the API server answers a watch with ``410 Gone``: list again."""


class ApiServerWatcher:
    """Keeps a :class:`ServiceAccountCache` in step with an API server (list, then watch).

    ``ssl_context`` must trust the API server's CA (TLS verification is never turned
    off); ``token`` is sent as ``Authorization: Bearer``. Run it on an event loop with
    :meth:`start` and end it with :meth:`stop`. The watcher becomes its cache's getter
    (unless the cache has one), so lookups can GET an account.

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

    async def lookup(
        self,
        namespace: str,
        name: str,
        *,
        grace_period_s: float = 0.0,
        consistent: bool = False,
    ) -> Lookup:
        """Same as the cache's :meth:`ServiceAccountCache.lookup`."""
        return await self.cache.lookup(
            namespace, name, grace_period_s=grace_period_s, consistent=consistent
        )

    # -- the API calls -----------------------------------------------------------------
    async def get_service_account(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        """``GET /api/v1/namespaces/<ns>/serviceaccounts/<name>``; ``None`` on 404."""
        if self._session is None:
            raise RuntimeError("the watcher is not started")
        url = (
            f"{self.server}/api/v1/namespaces/{quote(namespace, safe='')}"
            f"/serviceaccounts/{quote(name, safe='')}"
        )
        async with self._session.get(url, ssl=self._ssl) as resp:
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
            self._session = aiohttp.ClientSession(headers=headers)
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
        assert self._session is not None
        async with self._session.get(self.server + SA_LIST_PATH, ssl=self._ssl) as resp:
            if resp.status != 200:
                raise RuntimeError(f"list serviceaccounts: HTTP {resp.status}")
            body = await resp.json(content_type=None)
        rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self.cache.replace_objects(body.get("items") or [], rv)
        self.resource_version = rv
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
        self.watches += 1
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
        rv = _rv_of(obj)
        if kind in ("ADDED", "MODIFIED"):
            self.cache.put_object(obj)
        elif kind == "DELETED":
            self.cache.delete_object(obj)
        elif kind == "BOOKMARK":
            self.cache.observe(rv)
        if rv:
            self.resource_version = rv
