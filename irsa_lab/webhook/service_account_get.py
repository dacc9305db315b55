"""The webhook's GET of one ServiceAccount, as its cache makes it (docs/reference/webhook.md §6.4).

Upstream's cache GETs an account it does not hold when a pod asks for it during the
``--service-account-lookup-grace-period``: rate limited to 10 a second with a burst
of 20, each call within 1 s, retried on ``ServerTimeout`` with client-go's
``retry.DefaultBackoff`` (4 steps from 10 ms, factor 5; its 10 % jitter left out).
Here:

* :class:`ServiceAccountGetter` is what makes the call (the watcher, in the lab), and
  :class:`ServerTimeout` the one failure worth a retry; :func:`get_with_retries` is
  the call with upstream's retries;
* :class:`RateLimiter` is the token bucket in front of it;
* :class:`SharedGets` lets the lookups of one account that arrive while a GET runs
  share the next one (the lab's consistent lookup asks for every pod);
* :class:`BackgroundTasks` keeps the GETs running in the background, so they can be
  cancelled before the event loop closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "FETCH_BURST",
    "FETCH_RATE_PER_S",
    "FETCH_RETRY_DELAYS_S",
    "FETCH_TIMEOUT_S",
    "BackgroundTasks",
    "RateLimiter",
    "ServerTimeout",
    "ServiceAccountGetter",
    "SharedGets",
    "StoreGetter",
    "get_with_retries",
]

FETCH_RATE_PER_S = 10.0
FETCH_BURST = 20
FETCH_TIMEOUT_S = 1.0
FETCH_RETRY_DELAYS_S = (0.01, 0.05, 0.25)

ServiceAccount = Mapping[str, Any]


class ServerTimeout(Exception):
    """Raised by a getter when the API server answers with a ``ServerTimeout`` Status.

    The only error upstream retries a ServiceAccount GET on.
    """


class ServiceAccountGetter(Protocol):
    """Reads one ServiceAccount from the API server (upstream's ``ServiceAccountsGetter``)."""

    async def get_service_account(self, namespace: str, name: str) -> ServiceAccount | None:
        """The object as served, or ``None`` when the server has no such account.

        Raises :class:`ServerTimeout`, or any other exception, when the call fails.
        """
        ...


class StoreGetter:
    """A getter over a function that reads the account as the API server holds it now
    (the embedded API server's ``store.get``): the same object and resourceVersion a
    GET answers, without an HTTPS round trip on the event loop that the admission call
    is waiting on. For the lab's consistent lookup, which asks for every pod."""

    def __init__(self, read: Callable[[str, str], ServiceAccount | None]) -> None:
        self._read = read

    async def get_service_account(self, namespace: str, name: str) -> ServiceAccount | None:
        return self._read(namespace, name)


async def get_with_retries(
    getter: ServiceAccountGetter, namespace: str, name: str
) -> ServiceAccount | None:
    """``getter``'s GET, retried after each :class:`ServerTimeout` but the last."""
    if not namespace or not name:
        return None  # client-go refuses an empty name before any request
    for delay in FETCH_RETRY_DELAYS_S:
        try:
            return await getter.get_service_account(namespace, name)
        except ServerTimeout:
            await asyncio.sleep(delay)
    return await getter.get_service_account(namespace, name)


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
        """Take a token, after waiting for it when the bucket is empty."""
        now = self._now()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        # Reserve the token now (the count may go negative), then wait for the debt.
        self._tokens -= 1.0
        if self._tokens < 0:
            await self._sleep(-self._tokens / self._rate)


class BackgroundTasks:
    """Tasks started on the running loop and kept until they end, so they can be cancelled."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Start ``coro`` on the running loop."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def cancel(self) -> None:
        """Cancel the tasks still running and wait for them (on the loop they run on)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


@dataclass
class _Flight:
    """The GETs of one account: the one running, and the next one to join."""

    loop: asyncio.AbstractEventLoop
    next: asyncio.Future[ServiceAccount | None] | None = None
    task: asyncio.Task[None] | None = None


class SharedGets:
    """GETs of an account shared by the callers that join before each one starts.

    Pods of one ServiceAccount come in bursts (a Deployment scaling up, a load test):
    while one GET runs, the callers that arrive join the next one, so a burst costs
    two GETs, not one per pod, and each caller still reads the state of its own
    moment or later. The GETs run in ``tasks``.
    """

    def __init__(self, tasks: BackgroundTasks) -> None:
        self._tasks = tasks
        self._flights: dict[tuple[str, str], _Flight] = {}

    async def read(
        self, getter: ServiceAccountGetter, namespace: str, name: str
    ) -> ServiceAccount | None:
        """A GET of the account (with retries) that starts after this call did."""
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
            flight.task = self._tasks.spawn(self._fly(flight, getter, namespace, name))
        return await asyncio.shield(joined)

    async def _fly(
        self, flight: _Flight, getter: ServiceAccountGetter, namespace: str, name: str
    ) -> None:
        try:
            while flight.next is not None:
                answer, flight.next = flight.next, None
                try:
                    answer.set_result(await get_with_retries(getter, namespace, name))
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
