"""The API server suite: the embedded stand-in against the real kube-apiserver.

Why: every notebook talks to the embedded API server stand-in
(:mod:`irsa_lab.kube.apiserver`) and trusts what it answers: the TokenRequest and the
JWT the kubelet writes into the pod, the discovery documents STS fetches, the
``Status`` a learner reads when something is refused, the pod the webhook patched,
and what kubectl prints. This suite asks the real kube-apiserver (the ``k8s``
backend, built by ``make k8s-bin``) the same questions and lists every answer that
differs.

How :func:`run` works:

1. an :class:`~irsa_lab.stack.EmbeddedLab` (seeded) and a
   :class:`~irsa_lab.backends.k8s.K8sLab` start once, each in a temporary folder;
   both seed the article's scenario;
2. :func:`~.apiserver_script.observe` sends each lab the same script: the official
   ``kubernetes`` client with ``_preload_content=False`` (raw JSON and headers), raw
   HTTPS for the anonymous and bad-token requests and the discovery documents, and
   the real kubectl for the kubectl rows. Every answer becomes an
   :class:`~.apiserver_clients.Exchange`, keyed by case name;
3. :func:`~.apiserver_compare.compare` compares each pair after
   :func:`~.apiserver_masks.mask` has replaced generated values (uids, jti, times,
   kid, resourceVersions, generated names, URLs, CA bundles) by placeholders that
   name their format, so presence, JSON type and format are still compared. Token
   times are compared relative to ``iat`` (``exp - iat``, ``nbf - iat``,
   ``warnafter - iat``), ``iss`` against each lab's own issuer;
4. :data:`~.apiserver_accepted.ACCEPTED` says why each difference that remains is
   acceptable for teaching; anything it does not match is a defect of the stand-in.

The suite is split by role: :mod:`.apiserver_clients` (reaching a lab),
:mod:`.apiserver_script` (what is asked), :mod:`.apiserver_masks` and
:mod:`.apiserver_diff` (normalising and diffing), :mod:`.apiserver_compare` (the view
of each case), :mod:`.apiserver_accepted` (the known differences); this module runs them.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from ..backends import binaries
from .apiserver_accepted import accept
from .apiserver_clients import open_side
from .apiserver_compare import compare
from .apiserver_script import observe
from .report import SuiteResult

__all__ = ["SEED", "run"]

SEED = 20240327


def run() -> SuiteResult:
    """Compare the embedded API server with the real kube-apiserver (module docstring).

    Raises ``RuntimeError`` when a real program is not built (``make k8s-bin``); both
    labs are stopped and their temporary folders removed when it returns or raises.
    """
    from ..backends.k8s import K8sLab
    from ..stack import EmbeddedLab

    kubectl = binaries.require()["kubectl"]
    result = SuiteResult(
        name="apiserver",
        title="Kubernetes API server",
        standin="irsa_lab.kube.apiserver (embedded stand-in)",
        real=f"kube-apiserver {binaries.KUBERNETES_VERSION} (k8s backend)",
    )
    started = time.monotonic()
    with tempfile.TemporaryDirectory(
        prefix="irsa-lab-apiserver-fidelity-", ignore_cleanup_errors=True
    ) as folder:
        tmp = Path(folder)
        with ExitStack() as stack:
            real_lab = K8sLab(state_dir=tmp / "real")
            stack.enter_context(real_lab)
            embedded = EmbeddedLab(state_dir=tmp / "standin", seed=SEED)
            stack.enter_context(embedded)
            real = open_side("real", tmp / "real", kubectl.path, stack)
            standin = open_side("standin", tmp / "standin", kubectl.path, stack)
            theirs = observe(real)
            mine = observe(standin)
        cases, diffs = compare(standin, real, mine, theirs)
    result.cases = cases
    result.differences = accept(diffs)
    result.notes += [
        f"{cases} comparisons over {len(mine)} requests, both labs started once "
        f"({time.monotonic() - started:.1f} s); the embedded lab seeded with {SEED}",
        "clients: the official kubernetes Python client with _preload_content=False (raw "
        "JSON and headers), raw HTTPS for the anonymous and bad-token requests and the "
        "discovery documents, the real kubectl "
        f"{binaries.KUBERNETES_VERSION} with each lab's kubeconfig",
        "masked (compared by presence, JSON type and format): uids, jti, timestamps, kid, "
        "the JWKS modulus (by length), resourceVersions, the 5 characters of "
        "kube-api-access-*, container ids, local ports, CA bundles; managedFields reduced "
        "to manager/operation; token times compared relative to iat, iss against each "
        "lab's issuer, status.expirationTimestamp relative to creationTimestamp",
        "pod status compared loosely: field names, phase, qosClass, condition types and "
        "statuses in order, container status fields and state names, host and pod IPs "
        "(both come from the same kubelet stand-in; times are masked)",
        "headers compared: Content-Type, Cache-Control and Warning (not Audit-Id, the "
        "priority-and-fairness headers or Date)",
    ]
    return result
