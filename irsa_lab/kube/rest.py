"""A small synchronous JSON client for a real kube-apiserver, for the lab's own parts.

The kubelet stand-in and the ``k8s`` backend's set-up talk to the real API server
as the programs they stand in for would: over HTTPS, with a client certificate
(the kubelet's ``system:node:<name>``, the admin's ``system:masters``) or a bearer
token. It stays on the standard library so that starting a backend imports nothing
heavy; notebooks and tests use the official ``kubernetes`` client instead.
"""

from __future__ import annotations

import http.client
import json
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["KubeApiError", "KubeRest"]


class KubeApiError(RuntimeError):
    """Raised for a non-2xx answer; carries the HTTP status and the ``Status`` body."""

    def __init__(self, status: int, body: dict[str, Any] | str, method: str, path: str) -> None:
        self.status = status
        self.body = body
        msg = body.get("message", "") if isinstance(body, dict) else str(body)[:300]
        super().__init__(f"{method} {path}: HTTP {status}: {msg}")

    @property
    def reason(self) -> str:
        return str(self.body.get("reason", "")) if isinstance(self.body, dict) else ""


class KubeRest:
    """JSON over HTTPS to one API server, as one user."""

    def __init__(
        self,
        server: str,
        ssl_context: ssl.SSLContext,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        user_agent: str = "irsa-lab",
    ) -> None:
        parts = urlsplit(server)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 443
        self.ssl = ssl_context
        self.token = token
        self.timeout = timeout
        self.user_agent = user_agent

    def _conn(self, timeout: float | None) -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(
            self.host, self.port, context=self.ssl, timeout=timeout or self.timeout
        )

    def _headers(self, content_type: str | None) -> dict[str, str]:
        h = {"Accept": "application/json", "User-Agent": self.user_agent}
        if content_type:
            h["Content-Type"] = content_type
        if self.token:
            h["Authorization"] = f"Bearer {self.token}"
        return h

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """Send one request; returns the decoded JSON, raises :class:`KubeApiError`."""
        if query:
            path = f"{path}?{urlencode(query)}"
        data = None if body is None else json.dumps(body).encode()
        conn = self._conn(timeout)
        try:
            conn.request(
                method, path, body=data, headers=self._headers(content_type if data else None)
            )
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            decoded: Any = json.loads(raw) if raw else {}
        except ValueError:
            decoded = raw.decode(errors="replace")
        if not 200 <= resp.status < 300:
            raise KubeApiError(resp.status, decoded, method, path)
        return decoded if isinstance(decoded, dict) else {"raw": decoded}

    def get(self, path: str, **query: str) -> dict[str, Any]:
        return self.request("GET", path, query=query or None)

    def create(self, path: str, obj: dict[str, Any], **query: str) -> dict[str, Any]:
        return self.request("POST", path, obj, query=query or None)

    def merge_patch(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.request("PATCH", path, patch, content_type="application/merge-patch+json")

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("DELETE", path, body)

    def apply_if_absent(self, path: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Create ``obj`` in the collection at ``path``; None if it already exists."""
        try:
            return self.create(path, obj)
        except KubeApiError as err:
            if err.status == 409:
                return None
            raise

    def watch(
        self,
        path: str,
        *,
        resource_version: str = "",
        timeout_seconds: int = 300,
        holder: list[http.client.HTTPSConnection] | None = None,
        **query: str,
    ) -> Iterator[dict[str, Any]]:
        """Yield watch events (``{"type": ..., "object": ...}``) until the server ends it.

        ``holder`` receives the open connection, so another thread can end the watch
        at once (``shutdown`` on its socket) instead of waiting for the server.
        """
        q = {"watch": "1", "timeoutSeconds": str(timeout_seconds), **query}
        if resource_version:
            q["resourceVersion"] = resource_version
            q["allowWatchBookmarks"] = "true"
        conn = self._conn(timeout_seconds + 30)
        if holder is not None:
            holder[:] = [conn]
        try:
            conn.request("GET", f"{path}?{urlencode(q)}", headers=self._headers(None))
            resp = conn.getresponse()
            if resp.status != 200:
                raw = resp.read()
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                raise KubeApiError(resp.status, body, "WATCH", path)
            while True:
                line = resp.readline()
                if not line:
                    return
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()
