"""The API stand-in's storage: objects in memory, one resourceVersion counter, watches.

Stands in for etcd plus the watch cache. Every write bumps one global counter and
stamps the object's ``metadata.resourceVersion`` with it (a string, as on the wire);
every write is also an event (``ADDED``, ``MODIFIED``, ``DELETED``) kept in a short
history and fanned out to the open watches. Reads hand out deep copies, so no caller
can change a stored object behind the store's back.

Copy on write: a stored object is never changed in place once stored (an update
stores a new object), so the watch history, the open watches and a watch's initial
events share the stored objects instead of copying them, and a write copies only the
object written (once into the store, once for the caller). Copies are made by
:func:`copy_json`, a copy of a JSON tree several times faster than ``copy.deepcopy``.

The store is called from the server's event loop and from other threads (the
kubelet stand-in, notebooks), so writes take a :class:`threading.Lock` held only for
the in-memory update; watchers are fed with ``call_soon_threadsafe`` on their own loop.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import re
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .status import ApiError, already_exists, bad_request, not_found

__all__ = [
    "INITIAL_EVENTS_END_ANNOTATION",
    "copy_json",
    "fields_match",
    "Key",
    "labels_match",
    "Obj",
    "parse_field_selector",
    "parse_label_selector",
    "Requirement",
    "Store",
    "Watch",
    "WatchEvent",
]

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (resource, namespace or "", name)
# The annotation of the BOOKMARK that ends the initial events of a watch-list request.
INITIAL_EVENTS_END_ANNOTATION = "k8s.io/initial-events-end"


_LEAVES = (str, int, float, bool, type(None))


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON tree: dicts and lists are copied, strings, numbers, booleans
    and None (which cannot change) are shared; anything else goes through
    ``copy.deepcopy``. Several times faster than ``copy.deepcopy`` on API objects."""
    kind = type(value)
    if kind is dict:
        return {k: v if type(v) in _LEAVES else copy_json(v) for k, v in value.items()}
    if kind is list:
        return [v if type(v) in _LEAVES else copy_json(v) for v in value]
    if kind in _LEAVES:
        return value
    return copy.deepcopy(value)


def _clone(obj: Obj) -> Obj:
    """A deep copy of one stored object (every copy the store makes goes through here)."""
    return copy_json(obj)


@dataclass(frozen=True)
class WatchEvent:
    """One change: ``type`` is ``ADDED``, ``MODIFIED`` or ``DELETED``; ``object`` is the
    stored object itself (shared by every watch, so read-only)."""

    type: str
    resource: str
    namespace: str
    rv: int
    object: Obj


# --- label and field selectors (the query-string forms) ---------------------------

Requirement = tuple[str, str, frozenset[str]]  # (key, op, values); op in = != in notin exists !

_SET_RE = re.compile(r"^\s*(!?)\s*([^\s!=()]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")


def _split_top(text: str) -> list[str]:
    # Commas inside "in (a,b)" do not separate requirements.
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p for p in (s.strip() for s in parts) if p]


_EQ_RE = re.compile(r"^\s*([^\s!=()]+)\s*(==|=|!=)\s*([^\s!=()]*)\s*$")


def parse_label_selector(text: str) -> list[Requirement]:
    """Parse ``app=x,tier!=db,env in (a,b),!skip,has`` into requirements.

    Raises a 400 ``ApiError`` for syntax the lab does not understand.
    """
    reqs: list[Requirement] = []
    for part in _split_top(text or ""):
        eq = _EQ_RE.match(part)
        if eq:
            key, op, value = eq.groups()
            reqs.append((key, "!=" if op == "!=" else "=", frozenset([value])))
            continue
        m = _SET_RE.match(part)
        if not m or (m.group(1) and m.group(3)):
            raise bad_request(f"unable to parse requirement: {part!r}")
        neg, key, setop, values = m.groups()
        if setop:
            vals = frozenset(v.strip() for v in values.split(",") if v.strip())
            reqs.append((key, setop, vals))
        else:
            reqs.append((key, "!" if neg else "exists", frozenset()))
    return reqs


def labels_match(reqs: Iterable[Requirement], labels: dict[str, str]) -> bool:
    """True when ``labels`` satisfy every requirement."""
    for key, op, values in reqs:
        present = key in labels
        if op == "=" and (not present or labels[key] not in values):
            return False
        if op == "!=" and present and labels[key] in values:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
        if op == "exists" and not present:
            return False
        if op == "!" and present:
            return False
    return True


_FIELDS = {"metadata.name": ("metadata", "name"), "metadata.namespace": ("metadata", "namespace")}


def parse_field_selector(text: str) -> list[tuple[str, str, str]]:
    """Parse ``metadata.name=x`` (``=``, ``==``, ``!=``); only metadata name/namespace."""
    out: list[tuple[str, str, str]] = []
    for part in _split_top(text or ""):
        op = "!=" if "!=" in part else "=="
        key, _, value = part.replace("==", "=").partition("!=" if op == "!=" else "=")
        key = key.strip()
        if key not in _FIELDS:
            raise bad_request(f"field label not supported: {key}")
        out.append((key, op, value.strip()))
    return out


def fields_match(reqs: Iterable[tuple[str, str, str]], obj: Obj) -> bool:
    """True when ``obj`` satisfies every field requirement."""
    meta = obj.get("metadata") or {}
    for key, op, value in reqs:
        actual = str(meta.get(_FIELDS[key][1], ""))
        if (actual == value) != (op == "=="):
            return False
    return True


# --- the store ----------------------------------------------------------------------


@dataclass
class _Watcher:
    resource: str
    namespace: str | None
    accept: Callable[[Obj], bool]
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[WatchEvent | None] = field(default_factory=asyncio.Queue)


class Watch:
    """An open watch: ``async for event in watch`` until :meth:`close`."""

    def __init__(self, store: Store, watcher: _Watcher, backlog: list[WatchEvent]) -> None:
        self._store = store
        self._watcher = watcher
        self._backlog = deque(backlog)

    async def next(self, timeout: float | None) -> WatchEvent | None:
        """The next event, or None when ``timeout`` passes or the watch is closed."""
        if self._backlog:
            return self._backlog.popleft()
        try:
            return await asyncio.wait_for(self._watcher.queue.get(), timeout)
        except TimeoutError:
            return None

    def close(self) -> None:
        """Stop receiving events."""
        self._store._unwatch(self._watcher)


class Store:
    """In-memory objects keyed by (resource, namespace, name), with watch fan-out."""

    def __init__(self, history: int = 2000) -> None:
        self._objects: dict[Key, Obj] = {}
        # The keys of each resource, so a list (admission lists the webhook
        # configurations on every pod create) does not scan every stored pod.
        self._keys: dict[str, set[Key]] = {}
        self._rv = 0
        self._lock = threading.Lock()
        self._history: deque[WatchEvent] = deque(maxlen=history)
        self._watchers: list[_Watcher] = []

    @property
    def resource_version(self) -> int:
        """The counter's current value (the list ``metadata.resourceVersion``)."""
        with self._lock:
            return self._rv

    # -- reads -------------------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        """A copy of the object, or None."""
        with self._lock:
            obj = self._objects.get((resource, namespace, name))
        return _clone(obj) if obj is not None else None

    def require(self, resource: str, namespace: str, name: str, group: str = "") -> Obj:
        """A copy of the object, or a 404 ``ApiError``."""
        obj = self.get(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name, group)
        return obj

    def list(self, resource: str, namespace: str | None = None) -> tuple[list[Obj], int]:
        """Copies of the objects of ``resource`` (in one namespace, or all), sorted, and the rv."""
        with self._lock:
            found = [
                self._objects[key]
                for key in self._keys.get(resource, ())
                if namespace is None or key[1] == namespace
            ]
            rv = self._rv
        # Copied outside the lock: stored objects are never changed in place.
        items = [_clone(o) for o in found]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, rv

    def view(
        self,
        resource: str,
        namespace: str | None = None,
        keep: Callable[[Obj], bool] | None = None,
    ) -> tuple[builtins.list[Obj], int]:
        """The stored objects themselves (no copy: read them, never change them) that
        ``keep`` accepts, sorted, and the rv: for a reader that only serializes or looks."""
        with self._lock:
            found = (
                self._objects[key]
                for key in self._keys.get(resource, ())
                if namespace is None or key[1] == namespace
            )
            items = [obj for obj in found if keep is None or keep(obj)]
            rv = self._rv
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, rv

    def select(
        self, resource: str, keep: Callable[[Obj], bool], namespace: str | None = None
    ) -> builtins.list[Obj]:
        """Copies of only the objects ``keep`` accepts (it reads the stored object and must
        not change it): a controller's pass over thousands of pods copies none of them."""
        with self._lock:
            found = [
                obj
                for key in self._keys.get(resource, ())
                if (namespace is None or key[1] == namespace) and keep(obj := self._objects[key])
            ]
        items = [_clone(o) for o in found]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items

    # -- writes ------------------------------------------------------------------
    def create(self, resource: str, obj: Obj, group: str = "") -> Obj:
        """Store a new object (409 AlreadyExists if the name is taken); returns a copy."""
        meta = obj["metadata"]
        key = (resource, meta.get("namespace", ""), meta["name"])
        with self._lock:
            if key in self._objects:
                raise already_exists(resource, meta["name"], group)
            stored = self._write(key, obj, "ADDED")
        return stored

    def create_named(self, resource: str, obj: Obj, names: Callable[[], str]) -> Obj:
        """Store ``obj`` under the first name from ``names()`` that is free (generateName)."""
        ns = obj["metadata"].get("namespace", "")
        with self._lock:
            for _ in range(16):
                name = names()
                if (resource, ns, name) not in self._objects:
                    obj["metadata"]["name"] = name
                    return self._write((resource, ns, name), obj, "ADDED")
        # The real server also gives up after a few collisions, with a 409 that says so.
        raise ApiError(
            409,
            "AlreadyExists",
            f'{resource} "{obj["metadata"].get("generateName", "")}" already exists, '
            "the server was not able to generate a unique name for the object",
        )

    def update(self, resource: str, obj: Obj, expect_rv: str | None = None) -> Obj:
        """Replace a stored object (404 if gone, 409 on a stale resourceVersion)."""
        meta = obj["metadata"]
        key = (resource, meta.get("namespace", ""), meta["name"])
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                raise not_found(resource, meta["name"])
            if expect_rv and expect_rv != old["metadata"].get("resourceVersion"):
                from .status import conflict

                raise conflict(
                    resource,
                    meta["name"],
                    "the object has been modified; please apply your changes to "
                    "the latest version and try again",
                )
            return self._write(key, obj, "MODIFIED")

    def mutate(
        self, resource: str, namespace: str, name: str, change: Callable[[Obj], None]
    ) -> Obj:
        """Apply ``change`` to the stored object atomically; returns a copy (404 if missing)."""
        key = (resource, namespace, name)
        with self._lock:
            old = self._objects.get(key)
            if old is None:
                raise not_found(resource, name)
            obj = _clone(old)
            change(obj)
            return self._put(key, obj, "MODIFIED")

    def delete(self, resource: str, namespace: str, name: str, group: str = "") -> Obj:
        """Remove an object and emit ``DELETED``; returns it (404 if missing)."""
        key = (resource, namespace, name)
        with self._lock:
            obj = self._objects.pop(key, None)
            self._keys.get(key[0], set()).discard(key)
            if obj is None:
                raise not_found(resource, name, group)
            self._rv += 1
            # A DELETED event carries the object at a new resourceVersion: a new top
            # and metadata, the rest shared with the (immutable) object that was stored.
            gone = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
            self._emit(WatchEvent("DELETED", resource, namespace, self._rv, gone))
        return _clone(gone)

    def _write(self, key: Key, obj: Obj, kind: str) -> Obj:
        # The caller keeps ``obj``: the store owns a copy of it.
        return self._put(key, _clone(obj), kind)

    def _put(self, key: Key, obj: Obj, kind: str) -> Obj:
        """Store ``obj``, which nobody else holds, from now on never changed in place."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[key] = obj
        self._keys.setdefault(key[0], set()).add(key)
        self._emit(WatchEvent(kind, key[0], key[1], self._rv, obj))
        return _clone(obj)

    # -- watches -----------------------------------------------------------------
    def _emit(self, event: WatchEvent) -> None:
        # Called with the lock held: history order equals rv order.
        self._history.append(event)
        for w in self._watchers:
            if w.resource == event.resource and (
                w.namespace is None or w.namespace == event.namespace
            ):
                if not w.accept(event.object):
                    continue
                try:
                    w.loop.call_soon_threadsafe(w.queue.put_nowait, event)
                except RuntimeError:  # the watcher's loop is closed
                    continue

    def watch(
        self,
        resource: str,
        namespace: str | None,
        accept: Callable[[Obj], bool],
        since: int | None,
        *,
        initial_events_end: bool = False,
    ) -> Watch:
        """Open a watch; must be called on the loop that will consume it.

        ``since=None`` starts with a synthetic ``ADDED`` per existing object (what a
        real server does without a resourceVersion); otherwise the events after
        ``since`` are replayed, or a 410 ``Expired`` is raised when they are gone.
        ``initial_events_end`` (with ``since=None``) closes the synthetic events with a
        ``BOOKMARK`` annotated ``k8s.io/initial-events-end: "true"`` at the snapshot's
        resourceVersion: the end-of-list marker of a ``sendInitialEvents=true`` watch,
        which client-go's informers (WatchListClient, on by default since 1.35) wait
        for before they count as synced.
        """
        loop = asyncio.get_running_loop()
        w = _Watcher(resource, namespace, accept, loop)
        with self._lock:
            backlog: list[WatchEvent] = []
            if since is None:
                for key in sorted(self._keys.get(resource, ())):
                    r, ns, _ = key
                    o = self._objects[key]
                    if (namespace is None or ns == namespace) and accept(o):
                        backlog.append(
                            WatchEvent(
                                "ADDED",
                                r,
                                ns,
                                int(o["metadata"]["resourceVersion"]),
                                o,
                            )
                        )
                if initial_events_end:
                    marker = {
                        "metadata": {
                            "resourceVersion": str(self._rv),
                            "annotations": {INITIAL_EVENTS_END_ANNOTATION: "true"},
                        }
                    }
                    backlog.append(WatchEvent("BOOKMARK", resource, "", self._rv, marker))
            else:
                oldest = self._history[0].rv if self._history else self._rv + 1
                if since < oldest - 1 and since < self._rv:
                    raise ApiError(
                        410, "Expired", f"too old resource version: {since} ({oldest - 1})"
                    )
                for ev in self._history:
                    if (
                        ev.rv > since
                        and ev.resource == resource
                        and (namespace is None or ev.namespace == namespace)
                        and accept(ev.object)
                    ):
                        backlog.append(ev)
            self._watchers.append(w)
        return Watch(self, w, backlog)

    def close_watches(self) -> None:
        """End every open watch: the server is shutting down, its clients will re-watch."""
        with self._lock:
            watchers = list(self._watchers)
        for w in watchers:
            try:
                w.loop.call_soon_threadsafe(w.queue.put_nowait, None)
            except RuntimeError:  # the watcher's loop is closed
                continue

    def _unwatch(self, w: _Watcher) -> None:
        with self._lock:
            if w in self._watchers:
                self._watchers.remove(w)
