"""The API stand-in's store copies only the object a request writes or reads, never the
whole store: stored objects are shared (copy on write) by the watch history, the open
watches and the readers that only look, and every copy goes through ``store._clone``."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from typing import Any

import pytest

from irsa_lab.kube import store as store_mod
from irsa_lab.kube.store import Obj, Store

PODS = 300


def pod(name: str, namespace: str = "default") -> Obj:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {"containers": [{"name": "app", "image": "busybox", "env": [{"name": "A"}]}]},
    }


@pytest.fixture
def full_store() -> Store:
    s = Store(history=PODS * 4)
    for i in range(PODS):
        s.create("pods", pod(f"p{i}"))
    return s


@pytest.fixture
def copied(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The name of every object the store copies from now on (and no deepcopy at all)."""
    names: list[str] = []
    clone = store_mod._clone

    def counting(obj: Obj) -> Obj:
        names.append(obj["metadata"]["name"])
        return clone(obj)

    def no_deepcopy(value: Any, memo: Any = None) -> Any:
        raise AssertionError(f"copy.deepcopy called on {type(value).__name__}")

    monkeypatch.setattr(store_mod, "_clone", counting)
    monkeypatch.setattr(store_mod.copy, "deepcopy", no_deepcopy)
    yield names


def test_a_create_copies_only_the_pod_written_however_many_are_stored(
    full_store: Store, copied: list[str]
) -> None:
    full_store.create("pods", pod("new"))
    # Once into the store, once for the caller: never one of the 300 others.
    assert copied == ["new", "new"]


def test_update_mutate_and_delete_copy_only_their_own_object(
    full_store: Store, copied: list[str]
) -> None:
    current = full_store.require("pods", "default", "p7")
    current["metadata"]["labels"]["tier"] = "web"
    full_store.update("pods", current)
    full_store.mutate("pods", "default", "p8", lambda o: o["metadata"].update(uid="u8"))
    full_store.delete("pods", "default", "p9")
    assert set(copied) == {"p7", "p8", "p9"}
    assert len(copied) <= 7


def test_an_open_watch_receives_every_write_without_a_copy_per_event(
    full_store: Store, copied: list[str]
) -> None:
    async def run() -> list[str]:
        watch = full_store.watch("pods", "default", lambda o: True, None)
        full_store.create("pods", pod("watched"))
        seen = []
        while (event := await watch.next(0.05)) is not None:
            seen.append(f"{event.type} {event.object['metadata']['name']}")
        watch.close()
        return seen

    seen = asyncio.run(run())
    assert len(seen) == PODS + 1 and seen[-1] == "ADDED watched"
    # The 300 initial events and the new one share the stored objects.
    assert copied == ["watched", "watched"]


def test_a_filtered_read_copies_only_the_objects_it_returns(
    full_store: Store, copied: list[str]
) -> None:
    picked = full_store.select("pods", lambda o: o["metadata"]["name"] in ("p1", "p2"))
    assert [p["metadata"]["name"] for p in picked] == ["p1", "p2"]
    shared, rv = full_store.view("pods", "default", lambda o: o["metadata"]["name"] == "p3")
    assert [p["metadata"]["name"] for p in shared] == ["p3"] and rv == full_store.resource_version
    assert sorted(copied) == ["p1", "p2"]


def test_what_a_reader_or_writer_holds_cannot_change_the_stored_object(full_store: Store) -> None:
    body = pod("mine")
    returned = full_store.create("pods", body)
    body["spec"]["containers"][0]["image"] = "changed-by-the-caller"
    returned["spec"]["containers"][0]["env"].append({"name": "B"})
    read = full_store.require("pods", "default", "mine")
    read["metadata"]["labels"]["x"] = "y"
    stored = full_store.require("pods", "default", "mine")
    assert stored["spec"]["containers"][0] == {
        "name": "app",
        "image": "busybox",
        "env": [{"name": "A"}],
    }
    assert stored["metadata"]["labels"] == {"app": "mine"}


def test_an_update_leaves_the_earlier_event_in_the_history_as_it_was(full_store: Store) -> None:
    async def run() -> list[Obj]:
        since = full_store.resource_version
        full_store.mutate("pods", "default", "p1", lambda o: o["metadata"]["labels"].update(v="1"))
        full_store.mutate("pods", "default", "p1", lambda o: o["metadata"]["labels"].update(v="2"))
        full_store.delete("pods", "default", "p1")
        watch = full_store.watch("pods", "default", lambda o: True, since)
        events = [e.object for e in [await watch.next(0.05) for _ in range(3)] if e is not None]
        watch.close()
        return events

    first, second, gone = asyncio.run(run())
    assert first["metadata"]["labels"] == {"app": "p1", "v": "1"}
    assert second["metadata"]["labels"] == {"app": "p1", "v": "2"}
    rvs = [int(o["metadata"]["resourceVersion"]) for o in (first, second, gone)]
    assert rvs == sorted(rvs) and len(set(rvs)) == 3


def test_the_clone_is_a_deep_copy_of_a_json_tree() -> None:
    tree: Obj = {"metadata": {"name": "t"}, "a": [1, 2.5, True, None, {"b": ["c", {"d": []}]}]}
    twin = store_mod._clone(tree)
    assert twin == tree == copy.deepcopy(tree)
    twin["a"][4]["b"][1]["d"].append(1)
    twin["metadata"]["name"] = "u"
    assert tree == {"metadata": {"name": "t"}, "a": [1, 2.5, True, None, {"b": ["c", {"d": []}]}]}


def test_the_webhooks_consistent_lookup_can_read_the_account_from_the_store_itself() -> None:
    # StoreGetter: the lab's consistent lookup without an HTTPS GET per admitted pod.
    from irsa_lab.webhook.service_account_cache import ServiceAccountCache
    from irsa_lab.webhook.service_account_get import StoreGetter

    s = Store()
    role = "arn:aws:iam::123456789012:role/r"
    s.create(
        "serviceaccounts",
        {
            "metadata": {
                "name": "sa",
                "namespace": "default",
                "annotations": {"eks.amazonaws.com/role-arn": role, "other": "x"},
            }
        },
    )
    reads: list[tuple[str, str]] = []

    def read(namespace: str, name: str) -> Obj | None:
        reads.append((namespace, name))
        return s.get("serviceaccounts", namespace, name)

    # The watch has not delivered the account yet: the store's answer is what counts.
    cache = ServiceAccountCache(ready=True, getter=StoreGetter(read))
    found = asyncio.run(cache.lookup("default", "sa", grace_period_s=0.5, consistent=True))
    assert found.how == "current" and found.annotations == {"eks.amazonaws.com/role-arn": role}
    missing = asyncio.run(cache.lookup("default", "nobody", grace_period_s=0.5, consistent=True))
    assert missing.how == "missing" and missing.annotations is None
    assert reads == [("default", "sa"), ("default", "nobody")]
