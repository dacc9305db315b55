"""aiohttp, the lab's HTTP client, loaded when first needed instead of at start.

The stand-ins serve with :mod:`irsa_lab.web`; aiohttp is only the client of three
calls: the API server's webhook calls, STS's OIDC discovery and JWKS fetches, and the
webhook's ServiceAccount watch. Importing it costs about a quarter of a second, so
``irsa-lab up`` leaves it out of the start and :func:`preload` loads it on a thread
once the lab answers, before a learner's first pod needs it.
"""

from __future__ import annotations

import asyncio
import threading
from types import ModuleType

__all__ = ["aiohttp_module", "loaded", "preload"]

_loaded = threading.Event()
_started = threading.Lock()
_thread: threading.Thread | None = None


def aiohttp_module() -> ModuleType:
    """The ``aiohttp`` module, imported on the first call (then from ``sys.modules``)."""
    import aiohttp

    return aiohttp


def _load() -> None:
    aiohttp_module()
    _loaded.set()


def preload() -> None:
    """Import aiohttp on a daemon thread, once per process; a caller that needs it
    first waits for it (Python's import lock), so nothing is loaded twice."""
    global _thread
    with _started:
        if _thread is None:
            _thread = threading.Thread(target=_load, name="irsa-lab-preload", daemon=True)
            _thread.start()


async def loaded() -> None:
    """Wait, without blocking the event loop, until :func:`preload` has imported aiohttp."""
    preload()
    while not _loaded.is_set():
        if _thread is not None and not _thread.is_alive() and not _loaded.is_set():
            aiohttp_module()  # the thread failed: import here, and raise what it raised
        await asyncio.sleep(0.005)
