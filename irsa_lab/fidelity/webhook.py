"""The webhook suite: the Python port against the real upstream pod identity webhook.

Why: the lab's webhook (``irsa_lab.webhook``) claims to be a faithful port of
aws/amazon-eks-pod-identity-webhook, and the learner trusts every env var and volume
it shows. The fixtures of ``tests/test_webhook_conformance.py`` check it against
upstream's *expected* patches; this suite checks it against the *running* program,
built from the pinned source, over many more inputs than upstream ever wrote down.

How :func:`run` works:

1. an :class:`~irsa_lab.stack.EmbeddedLab` in a temporary folder is the Kubernetes
   API; the upstream binary lists and watches ServiceAccounts from it through the
   lab's kubeconfig, with a serving certificate from the lab CA;
2. one upstream process per distinct flag set (:data:`~.webhook_flags.FLAG_SETS`,
   plus the flags the upstream fixtures imply); container-credentials mode reads a
   ``--watch-container-credentials-config`` file listing the cases' identities;
3. every case's ServiceAccount is created first (unique names), then a sentinel
   ServiceAccount; once each process mutates a pod of the sentinel, its informer
   has seen every earlier ServiceAccount (a watch delivers in resourceVersion order);
4. each case's AdmissionReview goes to its process over HTTPS and to
   :func:`irsa_lab.webhook.server.review` in-process, with the same settings;
5. the answers are compared by meaning (:func:`~.webhook_compare.compare_answers`): ``allowed``, the
   denial message, the uid, the patch's operations, and the pods the two patches
   produce, after removing what Go's re-serialisation of containers adds or drops.
   A Pod Identity expiration of exactly 86400 s is jittered by upstream from its
   clock-seeded random source: it is checked against [79200, 86400] instead.

The suite is split by role: :mod:`.webhook_flags` (the flag sets), :mod:`.webhook_cases`
and :mod:`.webhook_generator` (the inputs), :mod:`.webhook_upstream` (the real program),
:mod:`.webhook_compare` (the comparison); this module drives them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import tempfile
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import aiohttp

from .. import constants as C
from ..backends import binaries
from ..pki import LabCA
from ..webhook.server import review
from ..webhook.service_account_cache import ServiceAccountCache
from .report import Difference, SuiteResult
from .webhook_cases import NAMESPACE, WebhookCase, fixture_cases, review_body, shared_fixtures_dir
from .webhook_compare import compare_answers
from .webhook_flags import GroupKey, group_key
from .webhook_generator import generate_cases
from .webhook_upstream import (
    PROGRAM,
    SENTINEL_SA,
    STARTUP_TIMEOUT_S,
    UpstreamProcess,
    post_review,
    upstream_processes,
    wait_synced,
)

__all__ = ["CONCURRENCY", "run"]

CONCURRENCY = 24
_ENVELOPE_ACCEPTED = (
    "upstream v0.6.17 answers without apiVersion/kind; the port echoes the request's, as "
    "upstream master does since #310, because a vanilla API server rejects an "
    "admission.k8s.io/v1 answer without them (docs/reference/webhook.md §6.1)"
)


def _run_async(coro: Any) -> Any:
    # Own loop in a worker thread: run() works from a notebook whose loop is running.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _create_service_accounts(
    session: aiohttp.ClientSession, api: str, items: Iterable[tuple[str, dict[str, str]]]
) -> None:
    sem = asyncio.Semaphore(CONCURRENCY)

    async def post(path: str, body: dict[str, Any]) -> None:
        async with sem, session.post(api + path, json=body) as resp:
            if resp.status not in (200, 201):
                raise RuntimeError(f"POST {path}: HTTP {resp.status}: {await resp.text()}")

    await post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
    )
    path = f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts"
    await asyncio.gather(
        *(
            post(
                path,
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": name, "annotations": ann},
                },
            )
            for name, ann in items
        )
    )


async def _drive(
    api: str,
    token: str,
    ca: LabCA,
    procs: Sequence[UpstreamProcess],
    service_accounts: list[tuple[str, dict[str, str]]],
    reviews: list[tuple[int, UpstreamProcess, bytes]],
) -> dict[int, dict[str, Any]]:
    ssl_ctx = ca.client_context()
    connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=CONCURRENCY * 2)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        await _create_service_accounts(session, api, service_accounts)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        await asyncio.gather(*(wait_synced(session, p, ssl_ctx, deadline) for p in procs))
        sem = asyncio.Semaphore(CONCURRENCY)
        answers: dict[int, dict[str, Any]] = {}

        async def one(index: int, p: UpstreamProcess, body: bytes) -> None:
            async with sem:
                answers[index] = await post_review(session, p.url, body, ssl_ctx)

        await asyncio.gather(*(one(i, p, b) for i, p, b in reviews))
    return answers


def _cases(
    result: SuiteResult, fixtures_dir: Path | None, generated: int, seed: int
) -> list[WebhookCase]:
    """Upstream's fixtures (when the folder is there) and then the generated cases."""
    cases: list[WebhookCase] = []
    folder = fixtures_dir if fixtures_dir is not None else shared_fixtures_dir()
    if folder.is_dir():
        fixtures = fixture_cases(folder)
        cases += fixtures
        result.notes.append(f"{len(fixtures)} upstream fixtures from {folder.name}/")
    else:
        result.notes.append(f"upstream fixtures skipped: {folder} not found")
    return cases + generate_cases(generated, seed)


def _port_caches(
    prefixes: Iterable[str], service_accounts: Sequence[tuple[str, dict[str, str]]]
) -> dict[str, ServiceAccountCache]:
    """The port's ServiceAccount cache per annotation prefix, holding what upstream's
    informers hold once synced."""
    caches: dict[str, ServiceAccountCache] = {}
    for prefix in prefixes:
        cache = ServiceAccountCache(prefix)
        for name, ann in service_accounts:
            cache.put(NAMESPACE, name, ann)
        caches[prefix] = cache
    return caches


def _compare_with_port(
    result: SuiteResult,
    cases: Sequence[WebhookCase],
    bodies: Sequence[tuple[int, UpstreamProcess, bytes]],
    answers: dict[int, dict[str, Any]],
    caches: dict[str, ServiceAccountCache],
) -> None:
    """Ask the port each case, in-process, and add to ``result`` how its answer differs
    from upstream's."""
    envelope = 0
    for i, proc, body in bodies:
        case = cases[i]
        settings = proc.settings
        outcome = review(body, lookup=caches[settings.annotation_prefix], settings=settings)
        mine: dict[str, Any] = dict(outcome.review)
        theirs = answers[i]
        # Where the port jittered (it takes the floor without a random source), upstream
        # drew from its clock-seeded source: only the range can be compared.
        cfg = outcome.result.config if outcome.result is not None else None
        jittered = cfg is not None and "jittered" in cfg.sources.get("expiration", "")
        jitter = cfg.volume_name if cfg is not None and jittered else None
        result.differences += compare_answers(
            case.name, case.pod, mine, theirs, jitter_volume=jitter
        )
        if {k: mine.get(k) for k in ("apiVersion", "kind")} != {
            k: theirs.get(k) for k in ("apiVersion", "kind")
        }:
            envelope += 1
        result.cases += 1
    if envelope:
        result.differences.append(
            Difference(
                f"{envelope} of {result.cases} cases",
                "answer apiVersion/kind",
                "admission.k8s.io/v1 AdmissionReview (echoed)",
                "absent",
                accepted=_ENVELOPE_ACCEPTED,
            )
        )


def run(*, generated: int = 1000, seed: int = 1, fixtures_dir: Path | None = None) -> SuiteResult:
    """Compare the port with the real webhook on the upstream fixtures and ``generated`` cases.

    Raises ``RuntimeError`` when the binary is not built (``make k8s-bin``) or a process
    cannot start or sync; every process and temporary file is gone when it returns.
    """
    from ..stack import EmbeddedLab  # the whole stack: imported only when a suite runs

    found = binaries.require([PROGRAM])[PROGRAM]
    result = SuiteResult(
        name="webhook",
        title="Pod identity webhook",
        standin="irsa_lab.webhook (Python port)",
        real=f"{PROGRAM} {binaries.PROGRAMS[PROGRAM].version}",
    )
    started = time.monotonic()
    cases = _cases(result, fixtures_dir, generated, seed)

    # Cases grouped by the flags their process runs with.
    groups: dict[GroupKey, list[WebhookCase]] = {}
    for case in cases:
        groups.setdefault(group_key(case.flags), []).append(case)

    service_accounts: list[tuple[str, dict[str, str]]] = [
        (c.sa_name, c.sa_annotations) for c in cases if c.sa_annotations is not None
    ]
    prefixes = sorted({settings.annotation_prefix for settings, _ in groups})
    service_accounts.append(
        (SENTINEL_SA, {f"{p}/{C.ROLE_ARN_SUFFIX}": C.ROLE_ARN for p in prefixes})
    )

    with (
        tempfile.TemporaryDirectory(
            prefix="irsa-lab-webhook-fidelity-", ignore_cleanup_errors=True
        ) as folder,
        ExitStack() as stack,
    ):
        tmp = Path(folder)
        lab = EmbeddedLab(state_dir=tmp / "state")
        lab.start()
        stack.callback(lab.stop)
        procs = stack.enter_context(
            upstream_processes(found.path, groups, tmp, tmp / "state" / "kubeconfig", lab.ca)
        )
        by_key = {p.key: p for p in procs}
        bodies: list[tuple[int, UpstreamProcess, bytes]] = []
        for i, case in enumerate(cases):
            proc = by_key[group_key(case.flags)]
            bodies.append((i, proc, review_body(f"uid-{i:05d}", NAMESPACE, case.pod)))
        answers: dict[int, dict[str, Any]] = _run_async(
            _drive(lab.endpoints.apiserver, lab.api_token, lab.ca, procs, service_accounts, bodies)
        )
    _compare_with_port(result, cases, bodies, answers, _port_caches(prefixes, service_accounts))

    elapsed = time.monotonic() - started
    result.notes += [
        f"{len(groups)} upstream processes (one per flag set); {result.cases} cases "
        f"({generated} generated from random.Random({seed})) in {elapsed:.1f} s",
        "compared: uid, allowed, denial message, patchType, the patch's (op, path) list, and "
        "the pod each patch produces, without Go's zero values and empty resources",
        "a Pod Identity expiration of exactly 86400 s is jittered by upstream from its clock: "
        "checked to lie in [79200, 86400]",
        "inputs are pods as an API server sends them (decoded, so well typed, before "
        "admission); a field of the wrong JSON type that the webhook never reads is out of "
        "scope: upstream's Go decoder refuses it, the port checks only the fields it reads",
    ]
    return result
