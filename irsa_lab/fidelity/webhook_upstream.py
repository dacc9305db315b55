"""The real side of the webhook suite: upstream's webhook processes and how to ask them.

Why: upstream reads its ServiceAccounts from an informer and its settings from flags,
so the suite starts one process per flag set, pointed at the lab's API server through
its kubeconfig and serving TLS with a certificate of the lab CA, and posts each
AdmissionReview over HTTPS as an API server would.
"""

from __future__ import annotations

import asyncio
import json
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp

from .. import constants as C
from ..backends.procs import log_tail
from ..httpd import free_port
from ..pki import LabCA, write_secret
from ..webhook.settings import WebhookSettings
from .webhook_cases import NAMESPACE, WebhookCase, review_body
from .webhook_compare import decode_patch
from .webhook_flags import GroupKey, upstream_flags

__all__ = [
    "PROGRAM",
    "SENTINEL_CC_SA",
    "SENTINEL_SA",
    "STARTUP_TIMEOUT_S",
    "UpstreamProcess",
    "post_review",
    "upstream_processes",
    "wait_synced",
]

PROGRAM = "amazon-eks-pod-identity-webhook"
SENTINEL_SA = "zz-sentinel"  # created after every case's ServiceAccount
SENTINEL_CC_SA = "zz-sentinel-cc"  # listed in every container-credentials config, never created
STARTUP_TIMEOUT_S = 60.0


@dataclass
class UpstreamProcess:
    """One running upstream webhook and the port settings it stands beside."""

    key: GroupKey
    settings: WebhookSettings  # with this process's identities
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    label: str

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the process's output, for an error message."""
        return log_tail(self.log, lines)


@contextmanager
def upstream_processes(
    binary: Path,
    groups: Mapping[GroupKey, list[WebhookCase]],
    tmp: Path,
    kubeconfig: Path,
    ca: LabCA,
) -> Iterator[list[UpstreamProcess]]:
    """Start one upstream webhook per flag set; stop every one of them on the way out."""
    cert = ca.issue()
    cert_file, key_file = tmp / "tls.crt", tmp / "tls.key"
    cert_file.write_bytes(cert.cert_pem)
    write_secret(key_file, cert.key_pem)
    started: list[UpstreamProcess] = []
    try:
        for n, (key, cases) in enumerate(groups.items()):
            cc_file: Path | None = None
            settings, raw = key[0], dict(key[1])
            cc = settings.container_credentials
            if cc is not None:
                pairs = {(NAMESPACE, c.sa_name) for c in cases if c.cc_listed}
                pairs.add((NAMESPACE, SENTINEL_CC_SA))
                identities = [{"namespace": ns, "serviceAccount": sa} for ns, sa in sorted(pairs)]
                cc_file = tmp / f"cc-{n}" / "config.json"
                cc_file.parent.mkdir()
                cc_file.write_text(json.dumps({"identities": identities}))
                settings = replace(
                    settings, container_credentials=replace(cc, identities=frozenset(pairs))
                )
            port, metrics_port = free_port(), free_port()
            log = tmp / f"webhook-{n}.log"
            args = [
                str(binary),
                "--in-cluster=false",
                f"--kubeconfig={kubeconfig}",
                f"--port={port}",
                f"--metrics-port={metrics_port}",
                f"--tls-cert={cert_file}",
                f"--tls-key={key_file}",
                "--logtostderr",
                *upstream_flags(key[0], cc_config=cc_file, raw=raw),
            ]
            with log.open("wb") as fh:
                proc = subprocess.Popen(
                    args, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            started.append(UpstreamProcess(key, settings, proc, port, log, cases[0].flags.name))
        yield started
    finally:
        for p in started:
            if p.proc.poll() is None:
                p.proc.send_signal(signal.SIGTERM)
        for p in started:
            try:
                p.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.proc.kill()
                p.proc.wait(timeout=5)


async def post_review(
    session: aiohttp.ClientSession, url: str, body: bytes, ssl_ctx: ssl.SSLContext
) -> dict[str, Any]:
    """POST ``body`` to the webhook at ``url`` as an API server does; its decoded answer."""
    async with session.post(
        url + C.WEBHOOK_MUTATE_PATH,
        data=body,
        headers={"Content-Type": C.WEBHOOK_CONTENT_TYPE},
        ssl=ssl_ctx,
    ) as resp:
        text = await resp.text()
        if resp.status != 200:
            raise RuntimeError(f"{url}: HTTP {resp.status}: {text[:200]}")
        answer: dict[str, Any] = json.loads(text)
        return answer


async def wait_synced(
    session: aiohttp.ClientSession, p: UpstreamProcess, ssl_ctx: ssl.SSLContext, deadline: float
) -> None:
    """Wait until ``p`` mutates a pod of the sentinel (IRSA) and, in container-credentials
    mode, of the listed sentinel: its informer then holds every ServiceAccount made before."""
    probes = [(SENTINEL_SA, "/spec/containers")]
    if p.settings.container_credentials is not None:
        probes.append((SENTINEL_CC_SA, "/metadata/labels"))
    for sa, expected_path in probes:
        pod = {
            "metadata": {"name": "sentinel"},
            "spec": {"serviceAccountName": sa, "containers": [{"name": "c"}]},
        }
        body = review_body("sentinel", NAMESPACE, pod)
        last = ""
        while True:
            if p.proc.poll() is not None:
                raise RuntimeError(
                    f"upstream webhook [{p.label}] exited with {p.proc.returncode}:\n{p.log_tail()}"
                )
            try:
                answer = await post_review(session, p.url, body, ssl_ctx)
                ops, _ = decode_patch(answer.get("response") or {})
                if ops and any(op.get("path") == expected_path for op in ops):
                    break
                last = "answered without mutating the sentinel pod"
            except (aiohttp.ClientError, OSError, RuntimeError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"upstream webhook [{p.label}] did not see the sentinel ServiceAccount in "
                    f"{STARTUP_TIMEOUT_S:.0f} s ({last}): its informer cannot list/watch "
                    f"ServiceAccounts from the embedded API server?\n{p.log_tail()}"
                )
            await asyncio.sleep(0.05)
