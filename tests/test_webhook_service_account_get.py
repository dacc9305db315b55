"""The cache's GET of one ServiceAccount: retries, sharing, cancelling; and Go's wording of
a mistyped value (the lookups that use the GET: test_webhook_cache.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from irsa_lab.webhook.go_json import json_kind, json_type, struct_field_error, value_error
from irsa_lab.webhook.service_account_get import (
    FETCH_RETRY_DELAYS_S,
    BackgroundTasks,
    ServerTimeout,
    SharedGets,
    get_with_retries,
)


class Getter:
    """Answers after ``timeouts`` ServerTimeouts; counts the calls."""

    def __init__(self, timeouts: int = 0, gate: asyncio.Event | None = None) -> None:
        self.timeouts = timeouts
        self.gate = gate
        self.calls = 0

    async def get_service_account(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.calls <= self.timeouts:
            raise ServerTimeout("the server timed out")
        return {"metadata": {"namespace": namespace, "name": name, "resourceVersion": "7"}}


def test_a_get_is_retried_after_each_server_timeout_but_the_last() -> None:
    getter = Getter(timeouts=len(FETCH_RETRY_DELAYS_S))
    got = asyncio.run(get_with_retries(getter, "ns", "a"))
    assert got is not None and got["metadata"]["name"] == "a"
    assert getter.calls == len(FETCH_RETRY_DELAYS_S) + 1

    getter = Getter(timeouts=len(FETCH_RETRY_DELAYS_S) + 1)
    with pytest.raises(ServerTimeout):
        asyncio.run(get_with_retries(getter, "ns", "a"))
    assert getter.calls == len(FETCH_RETRY_DELAYS_S) + 1


def test_an_empty_name_is_never_asked_for() -> None:
    getter = Getter()
    assert asyncio.run(get_with_retries(getter, "ns", "")) is None
    assert asyncio.run(get_with_retries(getter, "", "a")) is None
    assert getter.calls == 0


def test_callers_that_join_while_a_get_runs_share_the_next_one() -> None:
    async def burst() -> tuple[int, list[Any]]:
        gate = asyncio.Event()
        getter = Getter(gate=gate)
        shared = SharedGets(BackgroundTasks())
        first = asyncio.create_task(shared.read(getter, "ns", "a"))
        while getter.calls == 0:  # until the first GET runs, held at the gate
            await asyncio.sleep(0)
        joiners = [asyncio.create_task(shared.read(getter, "ns", "a")) for _ in range(5)]
        await asyncio.sleep(0)
        gate.set()
        answers = await asyncio.gather(first, *joiners)
        return getter.calls, answers

    calls, answers = asyncio.run(burst())
    assert calls == 2, "one GET running, one for all who joined while it ran"
    assert all(a is not None and a["metadata"]["name"] == "a" for a in answers)


def test_background_tasks_are_cancelled_and_awaited() -> None:
    async def run() -> bool:
        tasks = BackgroundTasks()
        never = asyncio.Event()

        async def wait_forever() -> None:
            await never.wait()

        task = tasks.spawn(wait_forever())
        await asyncio.sleep(0)
        await tasks.cancel()
        return task.cancelled()

    assert asyncio.run(run())


def test_go_names_json_kinds_as_its_decoder_does() -> None:
    kinds = [json_kind(v) for v in ("x", 1, 1.5, True, [], {}, None)]
    assert kinds == ["string", "number", "number", "bool", "array", "object", "object"]
    types = [json_type(v) for v in ("x", 1, 1.5, True, [], {}, None)]
    assert types == ["string", "number", "number", "boolean", "array", "object", "null"]
    assert struct_field_error(3, "ObjectMeta.metadata.name", "string") == (
        "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.name of type string"
    )
    assert value_error([], "v1.Pod") == "json: cannot unmarshal array into Go value of type v1.Pod"
