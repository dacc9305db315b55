"""How the API server suite reaches a lab, and what an answer is.

Why: the suite must see each answer as the wire carried it (status, headers, raw
body), whichever client asked: the official ``kubernetes`` client with
``_preload_content=False``, raw HTTPS for anonymous and bad-token requests and the
discovery documents, or the real kubectl. Each becomes an :class:`Exchange`.
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["KUBECTL_TIMEOUT_S", "Exchange", "Side", "open_side"]

KUBECTL_TIMEOUT_S = 60.0
_HEADERS = ("content-type", "cache-control", "warning")


@dataclass(frozen=True)
class Exchange:
    """One answer: HTTP status, the compared headers (lower-case), the body.

    ``body`` is the parsed JSON, or the text when it is not JSON (kubectl output);
    ``raw`` is the body as sent, to check its wire form.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Any = None
    raw: str = ""


def _exchange(status: int, headers: Any, data: bytes | str | None) -> Exchange:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else (data or "")
    try:
        body: Any = json.loads(text) if text.strip() else None
    except ValueError:
        body = text
    return Exchange(status, _header_values(headers), body, text)


def _header_values(headers: Any) -> dict[str, str]:
    """The compared headers, lower-case, a repeated header's values joined with ", "
    (the real server sends one ``Warning`` header per warning, the stand-in one in all)."""
    got: dict[str, list[str]] = {}
    for name in list(dict.fromkeys((headers or {}).keys())):
        if hasattr(headers, "getlist"):  # urllib3's HTTPHeaderDict
            values = [str(v) for v in headers.getlist(name)]
        elif hasattr(headers, "get_all"):  # http.client's HTTPMessage
            values = [str(v) for v in headers.get_all(name) or []]
        else:
            values = [str(headers[name])]
        got.setdefault(name.lower(), []).extend(values)
    return {k: ", ".join(got[k]) for k in _HEADERS if k in got}


@dataclass
class Side:
    """One lab as the suite reaches it: its endpoints, a client, kubectl's settings."""

    label: str
    endpoints: Mapping[str, Any]
    api: Any  # kubernetes.client.ApiClient
    kubectl: Path
    home: Path

    @property
    def issuer(self) -> str:
        return str(self.endpoints["issuer"])

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Exchange:
        """A typed client call with ``_preload_content=False``, as an :class:`Exchange`."""
        from kubernetes.client.rest import ApiException

        try:
            resp = fn(*args, _preload_content=False, **kwargs)
        except ApiException as err:
            return _exchange(err.status, err.headers, err.body)
        return _exchange(resp.status, resp.headers, resp.data)

    def https(
        self, path: str, headers: Mapping[str, str] | None = None, base: str = ""
    ) -> Exchange:
        """A raw HTTPS GET without the lab's credentials (anonymous, or a given token)."""
        ctx = ssl.create_default_context(cafile=str(self.endpoints["ca_bundle"]))
        url = (base or str(self.endpoints["apiserver"])) + path
        req = urllib.request.Request(url, headers=dict(headers or {}))  # noqa: S310
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:  # noqa: S310
                return _exchange(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            return _exchange(err.code, err.headers, err.read())

    def run_kubectl(self, *args: str) -> Exchange:
        """The real kubectl with this lab's kubeconfig; the body is its stdout."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "KUBECONFIG": str(self.endpoints["kubeconfig"]),
            "TZ": "UTC",
        }
        done = subprocess.run(
            [str(self.kubectl), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=KUBECTL_TIMEOUT_S,
            check=False,
        )
        return Exchange(0 if done.returncode == 0 else 1, {}, done.stdout, done.stderr)


def open_side(label: str, state: Path, kubectl: Path, stack: ExitStack) -> Side:
    """A :class:`Side` for the lab whose state folder is ``state``.

    The client is what ``kubernetes.config.new_client_from_config`` builds, with one
    change: the certificate files the loader writes go into the suite's folder
    (``temp_file_path``), so they are removed with it instead of at interpreter exit.
    """
    from kubernetes import client, config

    from ..session import close_api_client

    endpoints = json.loads((state / "endpoints.json").read_text())
    cfg = client.Configuration()
    config.load_kube_config(
        config_file=str(endpoints["kubeconfig"]),
        client_configuration=cfg,
        persist_config=False,
        temp_file_path=str(state.parent / f"{label}-client"),
    )
    api = client.ApiClient(cfg)
    stack.callback(close_api_client, api)
    home = state.parent / f"{label}-home"
    home.mkdir(exist_ok=True)
    return Side(label, endpoints, api, kubectl, home)
