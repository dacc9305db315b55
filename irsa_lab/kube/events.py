"""Events: what the components of the lab report about the objects they act on.

On a cluster the API server records no event of its own: the scheduler posts
``Scheduled``, the kubelet ``Pulled``/``Created``/``Started``, the controllers
``SuccessfulCreate``, ``FailedCreate`` and ``ScalingReplicaSet``. :class:`EventRecorder`
is what each component of the lab holds to do the same; it writes ``core/v1`` Events
into the store, and repeats of the same event are folded into one object whose
``count`` grows, as client-go's event correlator folds them.

Two shapes reach clients: the ``core/v1`` Event as stored (``kubectl get events``,
``kubectl describe``), and the ``events.k8s.io/v1`` view of it (:func:`as_events_v1`).
The scheduler uses the new events API on a cluster, so its events have ``eventTime``,
``action`` and ``reportingController`` set and no ``firstTimestamp``; the kubelet and
the controllers use the legacy recorder (``source.component``, ``count``, first and
last timestamps).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from ..clock import Clock, rfc3339, utc
from ..ids import Ids
from .discovery import EVENTS_V1, Resource
from .status import ApiError, bad_request
from .store import Store
from .wire import ordered

__all__ = [
    "EVENT_FIELDS",
    "EventRecorder",
    "RestEventRecorder",
    "as_events_v1",
    "event_fields_match",
    "event_table_cells",
    "event_view",
    "involved_object",
    "parse_event_field_selector",
    "rfc3339_micro",
]

Obj = dict[str, Any]

# The field selectors the real server supports on events (core/v1).
EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "metadata.name": ("metadata", "name"),
    "metadata.namespace": ("metadata", "namespace"),
    "involvedObject.kind": ("involvedObject", "kind"),
    "involvedObject.namespace": ("involvedObject", "namespace"),
    "involvedObject.name": ("involvedObject", "name"),
    "involvedObject.uid": ("involvedObject", "uid"),
    "involvedObject.apiVersion": ("involvedObject", "apiVersion"),
    "involvedObject.resourceVersion": ("involvedObject", "resourceVersion"),
    "involvedObject.fieldPath": ("involvedObject", "fieldPath"),
    "reason": ("reason",),
    "reportingComponent": ("reportingComponent",),
    "source": ("source", "component"),
    "type": ("type",),
    # events.k8s.io/v1 names for the same fields.
    "regarding.kind": ("involvedObject", "kind"),
    "regarding.namespace": ("involvedObject", "namespace"),
    "regarding.name": ("involvedObject", "name"),
    "regarding.uid": ("involvedObject", "uid"),
    "regarding.apiVersion": ("involvedObject", "apiVersion"),
    "regarding.resourceVersion": ("involvedObject", "resourceVersion"),
    "regarding.fieldPath": ("involvedObject", "fieldPath"),
    "reportingController": ("reportingComponent",),
}


def rfc3339_micro(ts: float) -> str:
    """A MicroTime (``eventTime``): RFC 3339 with microseconds."""
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def involved_object(obj: Obj, kind: str, api_version: str, field_path: str = "") -> Obj:
    """The ``ObjectReference`` of ``obj`` an event is about."""
    meta = obj.get("metadata") or {}
    ref: Obj = {"kind": kind, "namespace": meta.get("namespace", "")}
    ref["name"] = meta.get("name", "")
    ref["uid"] = meta.get("uid", "")
    ref["apiVersion"] = api_version
    ref["resourceVersion"] = meta.get("resourceVersion", "")
    if field_path:
        ref["fieldPath"] = field_path
    if not ref["namespace"]:
        del ref["namespace"]
    return ref


class EventRecorder:
    """Posts the events of one component (``kubelet``, ``default-scheduler``, ...)."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        ids: Ids,
        component: str,
        *,
        host: str = "",
        new_api: bool = False,
    ) -> None:
        self.store = store
        self.clock = clock
        self.ids = ids
        self.component = component
        self.host = host
        # The scheduler writes through events.k8s.io/v1: eventTime and action, no count.
        self.new_api = new_api
        self._lock = threading.Lock()
        self._last_ns = 0
        self._posted: dict[tuple[str, str, str, str], str] = {}

    def record(
        self, regarding: Obj, type_: str, reason: str, message: str, *, action: str = ""
    ) -> Obj:
        """Post one event about ``regarding`` (an ObjectReference); repeats raise ``count``."""
        namespace = regarding.get("namespace") or "default"
        now = self.clock.now()
        key = (namespace, str(regarding.get("uid")), reason, message)
        with self._lock:
            # The events this recorder posted, by what makes one a repeat: no scan of
            # every event in the namespace (thousands under load) on each post.
            name = self._posted.get(key)
            if name is not None:
                try:
                    return self.store.mutate(
                        "events", namespace, name, lambda o: self._repeat(o, now)
                    )
                except ApiError:
                    pass  # deleted meanwhile (its namespace went): post it anew
            event = self._new(regarding, namespace, type_, reason, message, action, now)
            created = self.store.create("events", event)
            self._posted[key] = created["metadata"]["name"]
            return created

    def _repeat(self, event: Obj, now: float) -> None:
        event["count"] = int(event.get("count") or 1) + 1
        if self.new_api:
            event.setdefault("series", {"count": 1})["count"] = event["count"]
            event["series"]["lastObservedTime"] = rfc3339_micro(now)
        else:
            event["lastTimestamp"] = rfc3339(now)

    def _new(
        self,
        regarding: Obj,
        namespace: str,
        type_: str,
        reason: str,
        message: str,
        action: str,
        now: float,
    ) -> Obj:
        # The real name: the object's name, a dot, the time as hex nanoseconds (one
        # more per event, so two events in the same instant keep distinct names).
        self._last_ns = max(int(now * 1e9), self._last_ns + 1)
        name = f"{regarding.get('name', '')}.{self._last_ns:x}"
        event: Obj = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": self.ids.uuid4(),
                "creationTimestamp": rfc3339(now),
            },
            "involvedObject": dict(regarding),
            "reason": reason,
            "message": message,
        }
        if self.new_api:
            event |= {
                "source": {},
                "firstTimestamp": None,
                "lastTimestamp": None,
                "type": type_,
                "eventTime": rfc3339_micro(now),
                "action": action,
                "reportingComponent": self.component,
                "reportingInstance": f"{self.component}-{self.host}" if self.host else "",
            }
        else:
            source = {"component": self.component}
            if self.host:
                source["host"] = self.host
            event |= {
                "source": source,
                "firstTimestamp": rfc3339(now),
                "lastTimestamp": rfc3339(now),
                "count": 1,
                "type": type_,
                "eventTime": None,
                "reportingComponent": self.component,
                "reportingInstance": self.host,
            }
        return event


class RestEventRecorder(EventRecorder):
    """An :class:`EventRecorder` that posts through a real API server (the ``k8s``
    backend's kubelet stand-in, as ``system:node:<name>``); repeats are posted anew."""

    def __init__(
        self, rest: Any, clock: Clock, ids: Ids, component: str, *, host: str = ""
    ) -> None:
        super().__init__(None, clock, ids, component, host=host)  # type: ignore[arg-type]
        self.rest = rest

    def record(
        self, regarding: Obj, type_: str, reason: str, message: str, *, action: str = ""
    ) -> Obj:
        namespace = regarding.get("namespace") or "default"
        now = self.clock.now()
        with self._lock:
            event = self._new(regarding, namespace, type_, reason, message, action, now)
        # The server sets uid and creationTimestamp itself.
        event["metadata"] = {"name": event["metadata"]["name"], "namespace": namespace}
        event |= {"apiVersion": "v1", "kind": "Event"}
        try:
            created: Obj = self.rest.create(f"/api/v1/namespaces/{namespace}/events", event)
        except Exception:  # noqa: BLE001 - best effort, as the kubelet's event broadcaster
            return event
        return created


def as_events_v1(event: Obj) -> Obj:
    """The ``events.k8s.io/v1`` view of a stored ``core/v1`` Event."""
    source = event.get("source") or {}
    out: Obj = {"metadata": event.get("metadata", {})}
    if event.get("action"):
        out["action"] = event["action"]
    if event.get("count") and not event.get("series"):
        out["deprecatedCount"] = event["count"]
    out["deprecatedFirstTimestamp"] = event.get("firstTimestamp")
    out["deprecatedLastTimestamp"] = event.get("lastTimestamp")
    out["deprecatedSource"] = source
    # Legacy events have no eventTime: the conversion leaves it null.
    out["eventTime"] = event.get("eventTime")
    out["note"] = event.get("message", "")
    out["reason"] = event.get("reason", "")
    out["regarding"] = event.get("involvedObject", {})
    out["reportingController"] = event.get("reportingComponent") or source.get("component", "")
    out["reportingInstance"] = event.get("reportingInstance") or source.get("host", "")
    if event.get("series"):
        out["series"] = event["series"]
    out["type"] = event.get("type", "")
    return out


def parse_event_field_selector(text: str) -> list[tuple[str, str, str]]:
    """Field requirements on events (``involvedObject.name=mypod,...``); 400 otherwise."""
    out: list[tuple[str, str, str]] = []
    for part in (p.strip() for p in (text or "").split(",")):
        if not part:
            continue
        op = "!=" if "!=" in part else "=="
        key, _, value = part.replace("==", "=").partition("!=" if op == "!=" else "=")
        key = key.strip()
        if key not in EVENT_FIELDS:
            raise bad_request(
                f'field label "{key}" not supported for Event'
                if key
                else f"invalid selector: '{text}'; can't understand '{part}'"
            )
        out.append((key, op, value.strip()))
    return out


def _field(obj: Obj, path: Iterable[str]) -> str:
    value: Any = obj
    for step in path:
        value = value.get(step) if isinstance(value, dict) else None
    return "" if value is None else str(value)


def event_fields_match(reqs: Iterable[tuple[str, str, str]], event: Obj) -> bool:
    """True when ``event`` satisfies every field requirement."""
    return all(
        (_field(event, EVENT_FIELDS[key]) == value) == (op == "==") for key, op, value in reqs
    )


def event_table_cells(event: Obj, age: str) -> list[Any]:
    """The cells of ``kubectl get events``: Last Seen, Type, Reason, Object, Message."""
    ref = event.get("involvedObject") or event.get("regarding") or {}
    obj = f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"
    message = event.get("message", event.get("note", ""))
    return [age, event.get("type", ""), event.get("reason", ""), obj, message]


def event_view(event: Obj, res: Resource) -> Obj:
    """A stored event as ``res`` (core/v1 or events.k8s.io/v1) shows it."""
    return ordered(as_events_v1(event) if res is EVENTS_V1 else event, res)
