"""aiohttp, the lab's HTTP client, loaded when first needed instead of at start.

The stand-ins serve with :mod:`irsa_lab.web`; aiohttp is only the client of three
calls: the API server's webhook calls, STS's OIDC discovery and JWKS fetches, and the
webhook's ServiceAccount watch. Importing it costs about a quarter of a second, so
``irsa-lab up`` leaves it out of the start and :func:`preload` loads it on a thread
once the servers have had a tenth of a second without a request (so the first
requests after the start are not slowed by it), before a learner's first pod needs
it. A call that needs aiohttp sooner imports it at once (:func:`aiohttp_module`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import Future
from types import ModuleType

from . import web

__all__ = ["aiohttp_module", "loaded", "preload"]

_started = threading.Lock()
_loaded: Future[ModuleType] | None = None  # set by the preload thread


def aiohttp_module() -> ModuleType:
    """The ``aiohttp`` module, imported on the first call (then from ``sys.modules``)."""
    import aiohttp

    return aiohttp


QUIET_S = 0.1  # how long the servers are idle before the preload imports
QUIET_WAIT_MAX_S = 2.0  # past this, it imports even under a steady stream of requests


def _load(done: Future[ModuleType]) -> None:
    deadline = time.monotonic() + QUIET_WAIT_MAX_S
    while web.quiet_for() < QUIET_S and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        done.set_result(aiohttp_module())
    except BaseException as err:  # noqa: BLE001 - raised again by loaded() in the caller
        done.set_exception(err)


def preload() -> Future[ModuleType]:
    """Import aiohttp on a daemon thread, once per process, when the servers are quiet;
    a caller that needs it first imports it (Python's import lock makes the other wait),
    so nothing is loaded twice."""
    global _loaded
    with _started:
        if _loaded is None:
            _loaded = Future()
            args = (_loaded,)
            threading.Thread(target=_load, args=args, name="irsa-lab-preload", daemon=True).start()
        return _loaded


async def loaded() -> None:
    """Wait, without blocking the event loop, until :func:`preload` has imported aiohttp
    (an import error is raised here). Shielded: a waiter cancelled with its lab must not
    cancel the one import the whole process shares."""
    await asyncio.shield(asyncio.wrap_future(preload()))
