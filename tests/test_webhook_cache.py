"""The webhook's ServiceAccount cache: its lookup grace period, and the watcher that fills it.

Nothing here sleeps for a set time and hopes the other side has moved on: a test waits
for the condition it needs (the cache changing, a lookup being parked, a request having
been served), each wait bounded generously, so a busy machine makes a test slower, never
wrong. The one short timeout left is the grace period of lookups that must run out, and
there nothing can arrive whatever the machine's speed.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import pytest
from webhook_fixtures import running_webhook

from irsa_lab import constants as C
from irsa_lab import web
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.httpd import ServerLoop
from irsa_lab.pki import LabCA
from irsa_lab.trace import Trace
from irsa_lab.webhook.mutate import REASON_SA_NOT_FOUND
from irsa_lab.webhook.server import make_app, review_async
from irsa_lab.webhook.service_account_cache import Lookup, ServiceAccountCache
from irsa_lab.webhook.service_account_get import RateLimiter, ServerTimeout
from irsa_lab.webhook.service_account_watcher import ApiServerWatcher
from irsa_lab.webhook.settings import ContainerCredentialsSettings, WebhookSettings

ROLE = {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN}
PATIENCE_S = 60.0  # the bound on every wait for something that must happen
SHORT_GRACE_S = 0.05  # for lookups whose grace period must run out


def sa(ns: str, name: str, rv: int, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A ServiceAccount as the API serves it."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": ns,
            "resourceVersion": str(rv),
            "annotations": dict(annotations or {}),
        },
    }


async def settled(predicate: Callable[[], bool], what: str) -> None:
    """Let the loop run until ``predicate()`` holds (loop turns, no wall clock involved)."""
    for _ in range(10_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"never: {what}")


async def parked(cache: ServiceAccountCache, count: int = 1) -> None:
    """Let the loop run until ``count`` lookups wait on the cache."""
    await settled(lambda: cache.waiting >= count, f"{count} lookups waiting")


class StubGetter:
    """A getter answering from a dict; ``timeouts`` ServerTimeouts first, or ``error``."""

    def __init__(self, objects: Mapping[tuple[str, str], dict[str, Any]] | None = None) -> None:
        self.objects = dict(objects or {})
        self.calls: list[tuple[str, str]] = []
        self.timeouts = 0
        self.error: Exception | None = None

    async def get_service_account(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.calls.append((namespace, name))
        if self.error is not None:
            raise self.error
        if self.timeouts:
            self.timeouts -= 1
            raise ServerTimeout("the server was not able to respond in time")
        return self.objects.get((namespace, name))


# --- the cache and upstream's grace period ----------------------------------------------


def test_without_a_grace_period_a_missing_account_is_missing_and_nothing_is_fetched() -> None:
    getter = StubGetter({("ns", "a"): sa("ns", "a", 3, ROLE)})
    cache = ServiceAccountCache(getter=getter)

    found = asyncio.run(cache.lookup("ns", "a"))
    assert found == Lookup(None, "missing") and not found.found
    assert getter.calls == [] and cache.fetches == 0


def test_a_missing_account_that_appears_within_the_grace_period_is_found() -> None:
    cache = ServiceAccountCache()

    async def go() -> Lookup:
        lookup = asyncio.create_task(cache.lookup("ns", "late", grace_period_s=PATIENCE_S))
        await parked(cache)
        cache.put("ns", "late", {**ROLE, "kubernetes.io/other": "dropped"})
        return await lookup

    assert asyncio.run(go()) == Lookup(ROLE, "appeared")
    assert cache.waiting == 0


def test_ten_lookups_waiting_for_one_account_are_all_answered_when_it_appears() -> None:
    cache = ServiceAccountCache()

    async def go() -> list[Lookup]:
        lookups = [
            asyncio.create_task(cache.lookup("ns", "late", grace_period_s=PATIENCE_S))
            for _ in range(10)
        ]
        await parked(cache, 10)
        cache.put_object(sa("ns", "late", 9, ROLE))
        return await asyncio.gather(*lookups)

    assert asyncio.run(go()) == [Lookup(ROLE, "appeared")] * 10


def test_a_missing_account_still_missing_at_the_end_of_the_grace_period_is_missing() -> None:
    cache = ServiceAccountCache()
    cache.put("ns", "other", ROLE)
    found = asyncio.run(cache.lookup("ns", "nobody", grace_period_s=SHORT_GRACE_S))
    assert found == Lookup(None, "missing")
    assert cache.waiting == 0


def test_a_cached_account_is_answered_at_once_even_if_the_server_has_changed_it() -> None:
    # Upstream's grace period covers only a missing account: this is the race the lab's
    # consistent lookup closes.
    getter = StubGetter({("ns", "a"): sa("ns", "a", 7, ROLE)})
    cache = ServiceAccountCache(getter=getter)
    cache.put_object(sa("ns", "a", 5))

    found = asyncio.run(cache.lookup("ns", "a", grace_period_s=PATIENCE_S))
    assert found == Lookup({}, "cached")
    assert getter.calls == []


def test_a_missing_account_is_fetched_once_for_all_its_waiting_lookups_and_added() -> None:
    getter = StubGetter({("ns", "a"): sa("ns", "a", 4, ROLE)})
    cache = ServiceAccountCache(getter=getter)

    async def go() -> list[Lookup]:
        return await asyncio.gather(
            *(cache.lookup("ns", "a", grace_period_s=PATIENCE_S) for _ in range(5))
        )

    assert asyncio.run(go()) == [Lookup(ROLE, "appeared")] * 5
    assert getter.calls == [("ns", "a")] and cache.fetches == 1
    assert cache.resource_version_of("ns", "a") == "4"


def test_the_get_of_a_missing_account_is_retried_on_server_timeout_only() -> None:
    getter = StubGetter({("ns", "a"): sa("ns", "a", 4, ROLE)})
    getter.timeouts = 2
    cache = ServiceAccountCache(getter=getter)
    assert asyncio.run(cache.lookup("ns", "a", grace_period_s=PATIENCE_S)).found
    assert getter.calls == [("ns", "a")] * 3

    failing = StubGetter()
    failing.error = RuntimeError("HTTP 403")
    cache = ServiceAccountCache(getter=failing)
    found = asyncio.run(cache.lookup("ns", "a", grace_period_s=SHORT_GRACE_S))
    assert found == Lookup(None, "missing")
    assert failing.calls == [("ns", "a")] and "HTTP 403" in cache.last_fetch_error


def test_an_account_with_no_name_is_never_asked_for() -> None:
    getter = StubGetter()
    cache = ServiceAccountCache(getter=getter)
    found = asyncio.run(cache.lookup("ns", "", grace_period_s=SHORT_GRACE_S, consistent=True))
    assert found == Lookup(None, "missing") and getter.calls == []


def test_a_fetched_account_never_overrides_the_watch() -> None:
    cache = ServiceAccountCache()
    cache.put_object(sa("ns", "a", 5))
    assert not cache.add_fetched(sa("ns", "a", 6, ROLE))  # the watch's copy stays
    cache.delete_object(sa("ns", "b", 8))
    assert not cache.add_fetched(sa("ns", "b", 7, ROLE))  # deleted since: the watch is past it
    assert cache.get("ns", "b") is None
    assert cache.add_fetched(sa("ns", "c", 9, ROLE))
    # The watch bringing an older version of a fetched account does not step it back.
    cache.put_object(sa("ns", "c", 8))
    assert cache.get("ns", "c") == ROLE and cache.resource_version_of("ns", "c") == "9"
    cache.put_object(sa("ns", "c", 10))
    assert cache.get("ns", "c") == {}


def test_the_rate_limiter_lets_a_burst_through_then_spaces_the_rest() -> None:
    clock = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))

    limiter = RateLimiter(10.0, 3, now=lambda: clock[0], sleep=sleep)

    async def go() -> None:
        for _ in range(5):
            await limiter.wait()

    asyncio.run(go())
    assert slept == [0.1, 0.2]
    clock[0] += 10.0  # a long pause refills the bucket, up to the burst
    slept.clear()
    asyncio.run(go())
    assert slept == [0.1, 0.2]


# --- the lab's consistent lookup -----------------------------------------------------------


def test_a_consistent_lookup_waits_until_the_cache_has_the_servers_current_version() -> None:
    getter = StubGetter({("ns", "a"): sa("ns", "a", 7, ROLE)})
    cache = ServiceAccountCache(getter=getter)
    cache.put_object(sa("ns", "a", 5))

    async def go() -> Lookup:
        lookup = asyncio.create_task(
            cache.lookup("ns", "a", grace_period_s=PATIENCE_S, consistent=True)
        )
        await parked(cache)
        cache.put_object(sa("ns", "other", 6))  # a change, but not the one awaited
        await asyncio.sleep(0)
        assert not lookup.done()
        cache.put_object(sa("ns", "a", 7, ROLE))  # the watch brings the annotation
        return await lookup

    assert asyncio.run(go()) == Lookup(ROLE, "current")
    assert getter.calls == [("ns", "a")]


class GatedGetter:
    """A getter whose every GET waits for the test to open its gate, then answers in turn."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.gates: list[asyncio.Event] = []

    async def get_service_account(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()
        return self.answers.pop(0)


def test_lookups_that_arrive_during_a_get_share_the_next_one() -> None:
    getter = GatedGetter(sa("ns", "a", 5), sa("ns", "a", 7, ROLE))
    cache = ServiceAccountCache(getter=getter)
    cache.put_object(sa("ns", "a", 5))

    async def go() -> tuple[Lookup, list[Lookup]]:
        def lookup() -> asyncio.Task[Lookup]:
            return asyncio.create_task(
                cache.lookup("ns", "a", grace_period_s=PATIENCE_S, consistent=True)
            )

        first = lookup()
        await settled(lambda: len(getter.gates) == 1, "the first GET")
        later = [lookup() for _ in range(5)]
        for _ in range(20):
            await asyncio.sleep(0)
        assert len(getter.gates) == 1  # they wait for a GET that starts after them
        getter.gates[0].set()
        first_found = await first
        await settled(lambda: len(getter.gates) == 2, "the second GET")
        getter.gates[1].set()  # it sees the annotation the watch has not brought yet
        await parked(cache, 5)
        cache.put_object(sa("ns", "a", 7, ROLE))
        return first_found, await asyncio.gather(*later)

    first, later = asyncio.run(go())
    assert first == Lookup({}, "current")
    assert later == [Lookup(ROLE, "current")] * 5
    assert len(getter.gates) == 2


def test_a_consistent_lookup_is_current_at_once_when_the_cache_is_up_to_date() -> None:
    getter = StubGetter({("ns", "a"): sa("ns", "a", 7, ROLE)})
    cache = ServiceAccountCache(getter=getter)
    cache.put_object(sa("ns", "a", 7, ROLE))
    cache.put_object(sa("ns", "z", 12))  # the stream is past 7 as well
    found = asyncio.run(cache.lookup("ns", "a", grace_period_s=PATIENCE_S, consistent=True))
    assert found == Lookup(ROLE, "current")


def test_a_consistent_lookup_answers_what_the_cache_holds_when_the_watch_is_too_late() -> None:
    getter = StubGetter({("ns", "a"): sa("ns", "a", 7, ROLE)})
    cache = ServiceAccountCache(getter=getter)
    cache.put_object(sa("ns", "a", 5))
    found = asyncio.run(cache.lookup("ns", "a", grace_period_s=SHORT_GRACE_S, consistent=True))
    assert found == Lookup({}, "stale")


def test_a_consistent_lookup_adds_a_missing_account_from_its_get() -> None:
    getter = StubGetter({("ns", "a"): sa("ns", "a", 7, ROLE)})
    cache = ServiceAccountCache(getter=getter)
    found = asyncio.run(cache.lookup("ns", "a", grace_period_s=PATIENCE_S, consistent=True))
    assert found == Lookup(ROLE, "current")
    assert getter.calls == [("ns", "a")] and cache.fetches == 0


def test_a_consistent_lookup_of_an_account_the_server_deleted_waits_for_the_deletion() -> None:
    cache = ServiceAccountCache(getter=StubGetter())
    cache.put_object(sa("ns", "a", 5, ROLE))

    async def go() -> Lookup:
        lookup = asyncio.create_task(
            cache.lookup("ns", "a", grace_period_s=PATIENCE_S, consistent=True)
        )
        await parked(cache)
        cache.delete_object(sa("ns", "a", 6, ROLE))
        return await lookup

    assert asyncio.run(go()) == Lookup(None, "missing")


def test_a_consistent_lookup_whose_get_fails_does_what_upstream_does() -> None:
    getter = StubGetter()
    getter.error = RuntimeError("connection refused")
    cache = ServiceAccountCache(getter=getter)
    cache.put_object(sa("ns", "a", 5))
    found = asyncio.run(cache.lookup("ns", "a", grace_period_s=PATIENCE_S, consistent=True))
    assert found == Lookup({}, "cached")
    assert "connection refused" in cache.last_fetch_error


# --- the webhook and the grace period --------------------------------------------------------


def review_body(sa_name: str, namespace: str = "default", pod: Any = None) -> bytes:
    obj = pod or {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {"serviceAccountName": sa_name, "containers": [{"name": "c", "image": "i"}]},
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {"uid": "u", "namespace": namespace, "operation": "CREATE", "object": obj},
        }
    ).encode()


class NoWaiting:
    """A lookup that fails the test if the webhook tries to wait on it."""

    def get(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return None

    async def lookup(
        self, namespace: str, name: str, *, grace_period_s: float = 0.0, consistent: bool = False
    ) -> Lookup:
        raise AssertionError("the webhook waited")


def test_a_pod_identity_pod_and_a_pod_that_does_not_decode_are_answered_without_waiting() -> None:
    cc = ContainerCredentialsSettings(identities=frozenset({("default", "agent")}))
    settings = WebhookSettings(
        service_account_lookup_grace_period=PATIENCE_S, container_credentials=cc
    )
    out = asyncio.run(review_async(review_body("agent"), lookup=NoWaiting(), settings=settings))
    assert out.result is not None and out.result.mutated and out.lookup is None
    bad = review_body("x", pod={"spec": {"containers": "not a list"}})
    out = asyncio.run(review_async(bad, lookup=NoWaiting(), settings=settings))
    assert not out.allowed


def post_review(url: str, ctx: ssl.SSLContext, body: bytes) -> dict[str, Any]:
    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(
        parts.hostname or "", parts.port, context=ctx, timeout=PATIENCE_S * 2
    )
    try:
        conn.request("POST", "/mutate", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200
        return json.loads(resp.read())
    finally:
        conn.close()


def test_the_webhook_holds_a_pod_whose_account_is_missing_until_it_appears() -> None:
    cache = ServiceAccountCache()
    settings = WebhookSettings.lab(service_account_lookup_grace_period=PATIENCE_S)
    answers: list[dict[str, Any]] = []
    with running_webhook(cache=cache, settings=settings) as hook:
        poster = threading.Thread(
            target=lambda: answers.append(
                post_review(hook.url, hook.ca.client_context(), review_body("late"))
            )
        )
        poster.start()
        assert cache.wait(lambda: cache.waiting >= 1, PATIENCE_S)
        assert answers == []  # held by the grace period
        cache.put("default", "late", ROLE)
        poster.join(PATIENCE_S)
        records = hook.trace.events()
    resp = answers[0]["response"]
    assert resp["allowed"] and resp["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(resp["patch"]))
    env = {e["name"]: e["value"] for e in patch[-1]["value"][0]["env"]}
    assert env[C.ENV_ROLE_ARN] == C.ROLE_ARN
    assert records[-1].detail["lookup"] == "appeared"


def test_the_webhook_admits_a_pod_unchanged_when_its_account_does_not_appear_in_time() -> None:
    settings = WebhookSettings.lab(service_account_lookup_grace_period=SHORT_GRACE_S)
    with running_webhook(cache=ServiceAccountCache(), settings=settings) as hook:
        out = post_review(hook.url, hook.ca.client_context(), review_body("nobody"))
        records = hook.trace.events()
    assert out["response"] == {"uid": "u", "allowed": True}
    assert records[-1].detail["lookup"] == "missing"
    assert records[-1].detail["reason"] == REASON_SA_NOT_FOUND


# --- a ServiceAccount API that behaves as a real API server ----------------------------------


GONE = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}


class FakeApi:
    """``/api/v1/serviceaccounts`` (list and watch) and the GET of one account.

    As a real API server: one resourceVersion counter; a list carries it; a watch from a
    resourceVersion replays every change after it (``410 Gone`` once :meth:`compact`
    dropped them), and one without starts with the current accounts. ``hold`` keeps new
    events from open watches until :meth:`release` (a watch running late);
    ``after_list`` runs right after a list is answered, before any watch can follow.
    Change it on the server's loop (``loop.call(fake.change(...))``).
    """

    def __init__(self, token: str) -> None:
        self.token = token
        self.rv = 1
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.compacted = 0
        self.published = 0  # events[:published] are visible to watches
        self.hold = False
        self.expire_next_watch = False
        self.after_list: Callable[[], None] | None = None
        self.requests: list[dict[str, str]] = []
        self.served: list[str] = []  # "list", "watch", "get", in order
        self.open_watches = 0
        self._expired = 0  # bumped by expire_open_watches
        self._wake = asyncio.Event()
        self._closing = False

    def _bump(self, ns: str, name: str, annotations: Mapping[str, str]) -> dict[str, Any]:
        self.rv += 1
        return sa(ns, name, self.rv, annotations)

    def seed(self, ns: str, name: str, annotations: Mapping[str, str]) -> None:
        """An account that exists before anyone lists (no event)."""
        self.items[(ns, name)] = self._bump(ns, name, annotations)
        self.compacted = self.rv

    def set(self, ns: str, name: str, annotations: Mapping[str, str]) -> int:
        """Create or change an account now (call on the server's loop); returns its rv."""
        kind = "MODIFIED" if (ns, name) in self.items else "ADDED"
        obj = self._bump(ns, name, annotations)
        self.items[(ns, name)] = obj
        self.events.append({"type": kind, "object": obj})
        if not self.hold:
            self._publish()
        return self.rv

    async def change(self, ns: str, name: str, annotations: Mapping[str, str]) -> int:
        return self.set(ns, name, annotations)

    async def release(self) -> None:
        """Let held events through to the watches."""
        self.hold = False
        self._publish()

    def compact(self) -> None:
        """Forget the history: a watch from an older resourceVersion gets 410."""
        self.compacted = self.rv

    async def expire_open_watches(self) -> None:
        """End every open watch with a 410 ERROR event, as after a compaction."""
        self.compact()
        self._expired += 1
        self._publish()

    def _publish(self) -> None:
        self.published = len(self.events)
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    async def handle_list(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(dict(request.query))
        if not self._authorized(request):
            return web.json_response(
                {"kind": "Status", "code": 401, "reason": "Unauthorized"}, status=401
            )
        if request.query.get("watch") in ("true", "1"):
            return await self._watch(request)
        body = {
            "apiVersion": "v1",
            "kind": "ServiceAccountList",
            "metadata": {"resourceVersion": str(self.rv)},
            "items": list(self.items.values()),
        }
        self.served.append("list")
        if self.after_list is not None:
            self.after_list()
        return web.json_response(body)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        self.served.append("watch")
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        since_text = request.query.get("resourceVersion", "")
        if self.expire_next_watch or (since_text and int(since_text) < self.compacted):
            self.expire_next_watch = False
            await resp.write(json.dumps({"type": "ERROR", "object": GONE}).encode() + b"\n")
            return resp
        if since_text:
            since = int(since_text)
            cursor = next(
                (
                    i
                    for i, e in enumerate(self.events)
                    if int(e["object"]["metadata"]["resourceVersion"]) > since
                ),
                len(self.events),
            )
        else:
            for obj in list(self.items.values()):
                await resp.write(json.dumps({"type": "ADDED", "object": obj}).encode() + b"\n")
            cursor = self.published
        generation = self._expired
        self.open_watches += 1
        try:
            while not self._closing and generation == self._expired:
                wake = self._wake
                while cursor < self.published:
                    await resp.write(json.dumps(self.events[cursor]).encode() + b"\n")
                    cursor += 1
                await wake.wait()
        finally:
            self.open_watches -= 1
        if generation != self._expired:
            await resp.write(json.dumps({"type": "ERROR", "object": GONE}).encode() + b"\n")
        return resp

    async def handle_get(self, request: web.Request) -> web.Response:
        self.served.append("get")
        if not self._authorized(request):
            return web.json_response({"kind": "Status", "code": 401}, status=401)
        key = (request.match_info["ns"], request.match_info["name"])
        if key not in self.items:
            return web.json_response(
                {"kind": "Status", "code": 404, "reason": "NotFound", "message": "not found"},
                status=404,
            )
        return web.json_response(self.items[key])

    def make_app(self) -> web.Application:
        async def close_watches(_: web.Application) -> None:
            self._closing = True
            self._publish()

        app = web.Application()
        app.router.add_get("/api/v1/serviceaccounts", self.handle_list)
        app.router.add_get("/api/v1/namespaces/{ns}/serviceaccounts/{name}", self.handle_get)
        app.on_shutdown.append(close_watches)
        return app


class Setup:
    """A fake API on its own loop and a watcher pointed at it (not started)."""

    def __init__(self, fake: FakeApi, token: str) -> None:
        self.fake = fake
        self.ca = LabCA.create()
        self.loop = ServerLoop("sa-cache-test").start()
        api = self.loop.serve("fake-api", fake.make_app(), tls=self.ca.issue().server_context())
        self.url = api.url
        self.watcher = ApiServerWatcher(api.url, token=token, ssl_context=self.ca.client_context())
        self.cache = self.watcher.cache

    def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait, on the cache's changes, until ``predicate()`` holds."""
        assert self.cache.wait(predicate, PATIENCE_S), f"timed out waiting for {what}"


@pytest.fixture
def setup() -> Iterator[Setup]:
    fake = FakeApi(token="s3cr3t")
    s = Setup(fake, "s3cr3t")
    try:
        yield s
    finally:
        s.loop.call(s.watcher.stop())
        s.loop.stop()


def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Poll a condition nothing signals (a watcher's error), bounded generously."""
    deadline = time.monotonic() + PATIENCE_S
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_the_watcher_lists_then_picks_up_an_annotation_added_after_start(setup: Setup) -> None:
    setup.fake.seed("default", "s3-readonly-sa", {})
    setup.loop.call(setup.watcher.start(wait_s=PATIENCE_S))
    assert setup.watcher.ready and setup.watcher.get("default", "s3-readonly-sa") == {}
    assert setup.watcher.get("default", "nobody") is None
    rv = setup.loop.call(setup.fake.change("default", "s3-readonly-sa", ROLE))
    setup.until(lambda: setup.cache.resource_version == str(rv), "the annotation")
    assert setup.watcher.get("default", "s3-readonly-sa") == ROLE
    assert setup.fake.requests[0] == {}
    watch = setup.fake.requests[1]
    assert watch["watch"] == "true" and watch["resourceVersion"] == "2"
    # The webhook reading from this watcher now mutates that account's pods.
    app = make_app(
        cache=setup.watcher,
        settings=WebhookSettings.lab(),
        trace=Trace(ManualClock(LAB_EPOCH)),
        clock=ManualClock(LAB_EPOCH),
    )
    hook = setup.loop.serve("webhook", app, tls=setup.ca.issue().server_context())
    out = post_review(hook.url, setup.ca.client_context(), review_body("s3-readonly-sa"))
    assert out["response"]["patchType"] == "JSONPatch"


def test_a_change_made_between_the_list_and_the_watch_is_not_lost(setup: Setup) -> None:
    # The window the watcher's tests used to race: the change lands after the list's
    # resourceVersion and before the watch opens; the watch's replay must bring it.
    setup.fake.seed("ns", "a", {})

    def change_once() -> None:
        setup.fake.after_list = None
        setup.fake.set("ns", "a", ROLE)

    setup.fake.after_list = change_once
    setup.loop.call(setup.watcher.start(wait_s=PATIENCE_S))
    setup.until(lambda: setup.watcher.get("ns", "a") == ROLE, "the change")
    assert setup.fake.served[:2] == ["list", "watch"] and setup.watcher.lists == 1


def test_the_watcher_lists_again_when_the_watch_expires(setup: Setup) -> None:
    setup.fake.expire_next_watch = True
    setup.loop.call(setup.watcher.start(wait_s=PATIENCE_S))
    # Whenever it lands, the change arrives: in the second list or in the watch after it
    # (the first watch ended with 410 at once, so it cannot have carried it).
    setup.loop.call(setup.fake.change("ns", "late", ROLE))
    setup.until(lambda: setup.watcher.get("ns", "late") == ROLE, "the late account")
    assert setup.watcher.lists >= 2 and "too old" in setup.watcher.last_error


def test_a_change_made_while_the_watcher_lists_again_after_410_is_not_lost(setup: Setup) -> None:
    # The stall the old tests hit: the watch expires, the watcher lists again, and an
    # annotation lands between that list and the next watch.
    setup.fake.seed("ns", "a", {})
    setup.loop.call(setup.watcher.start(wait_s=PATIENCE_S))
    eventually(lambda: setup.fake.open_watches == 1, "the first watch")

    def change_once() -> None:
        setup.fake.after_list = None
        setup.fake.set("ns", "a", ROLE)

    setup.fake.after_list = change_once
    setup.loop.call(setup.fake.expire_open_watches())
    setup.until(lambda: setup.watcher.get("ns", "a") == ROLE, "the change made at the relist")
    assert setup.watcher.lists == 2 and setup.fake.served[-2:] == ["list", "watch"]


def test_the_watcher_never_syncs_with_a_wrong_token() -> None:
    fake = FakeApi(token="right")
    s = Setup(fake, "wrong")
    try:
        s.loop.call(s.watcher.start(wait_s=None))
        eventually(lambda: "HTTP 401" in s.watcher.last_error, "the failed list")
        assert not s.watcher.ready
        with pytest.raises(TimeoutError, match="not synced: RuntimeError: .*HTTP 401"):
            s.loop.call(s.watcher.start(wait_s=SHORT_GRACE_S))
    finally:
        s.loop.call(s.watcher.stop())
        s.loop.stop()


def test_the_watcher_gets_one_account_or_none(setup: Setup) -> None:
    setup.fake.seed("ns", "a", ROLE)
    setup.loop.call(setup.watcher.start(wait_s=PATIENCE_S))
    got = setup.loop.call(setup.watcher.get_service_account("ns", "a"))
    assert got is not None and got["metadata"]["annotations"] == ROLE
    assert setup.loop.call(setup.watcher.get_service_account("ns", "nobody")) is None


def test_a_lookup_through_the_watcher_gets_an_account_the_watch_has_not_brought_yet(
    setup: Setup,
) -> None:
    setup.loop.call(setup.watcher.start(wait_s=PATIENCE_S))
    setup.fake.hold = True
    setup.loop.call(setup.fake.change("ns", "new", ROLE))
    found = setup.loop.call(setup.watcher.lookup("ns", "new", grace_period_s=PATIENCE_S))
    assert found == Lookup(ROLE, "appeared")
    assert setup.cache.fetches == 1


def test_a_consistent_lookup_through_the_watcher_waits_for_a_late_watch(setup: Setup) -> None:
    setup.fake.seed("ns", "a", {})
    setup.loop.call(setup.watcher.start(wait_s=PATIENCE_S))
    setup.fake.hold = True
    setup.loop.call(setup.fake.change("ns", "a", ROLE))  # `kubectl annotate`, watch late

    # Without the watch the cache cannot get there: what it holds, once the grace is over.
    stale = setup.loop.call(
        setup.watcher.lookup("ns", "a", grace_period_s=SHORT_GRACE_S, consistent=True)
    )
    assert stale == Lookup({}, "stale")

    pending = setup.loop.submit(
        setup.watcher.lookup("ns", "a", grace_period_s=PATIENCE_S, consistent=True)
    )
    setup.until(lambda: setup.cache.waiting >= 1, "the lookup to wait")
    assert not pending.done()
    setup.loop.call(setup.fake.release())
    assert pending.result(PATIENCE_S) == Lookup(ROLE, "current")
