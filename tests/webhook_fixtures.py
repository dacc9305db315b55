"""Shared helpers for the webhook tests: the fixture harness, a running webhook, a fake API.

* :func:`load_case` / :func:`case_inputs` reproduce upstream's fixture harness
  (docs/reference/webhook.md §7.1): the ``testing.eks.amazonaws.com/*`` annotations of a pod
  file become the ServiceAccount's annotations, the flags and the container
  credentials config; :func:`normalise_patch` removes Go serialisation artifacts (§7.3).
* :func:`running_webhook` serves the webhook over HTTPS with a fresh lab CA.
* :func:`fake_serviceaccount_api` is a tiny aiohttp app serving the list and watch of
  ``/api/v1/serviceaccounts`` behind a bearer token, with SAs added while it runs.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from irsa_lab import constants as C
from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.constants import VOLUME_MOUNT_FIELDS
from irsa_lab.httpd import ServerLoop
from irsa_lab.pki import LabCA
from irsa_lab.trace import Trace
from irsa_lab.webhook.annotations import parse_go_bool, parse_go_int64
from irsa_lab.webhook.server import make_app
from irsa_lab.webhook.service_account_cache import ServiceAccountCache
from irsa_lab.webhook.settings import ContainerCredentialsSettings, WebhookSettings

REPO = Path(__file__).resolve().parents[1]
CASES_DIR = REPO / "irsa_lab" / "webhook" / "cases"
SKIP_REASON = "../shared/webhook-fixtures not found; set IRSA_LAB_SHARED_DIR"

T = "testing.eks.amazonaws.com/"


def shared_fixtures_dir() -> Path:
    """``../shared/webhook-fixtures`` beside the repo, or under ``$IRSA_LAB_SHARED_DIR``."""
    override = os.environ.get("IRSA_LAB_SHARED_DIR")
    base = Path(override) if override else REPO.parent / "shared"
    return base / "webhook-fixtures"


def fixture_files(folder: Path) -> list[Path]:
    """Every ``*.pod.yaml`` directly in ``folder``, sorted by name."""
    return sorted(folder.glob("*.pod.yaml"))


@dataclass
class Case:
    """One fixture: the pod to mutate, its SA, the flags and the expected patch."""

    path: Path
    pod: dict[str, Any]
    sa_annotations: dict[str, str]
    settings: WebhookSettings
    expected: list[dict[str, Any]]
    skip: bool = False


def load_case(path: Path) -> Case:
    """Read a fixture file and map its testing annotations as upstream's harness does."""
    pod = yaml.safe_load(path.read_text())
    ann: dict[str, str] = pod["metadata"].get("annotations") or {}
    # The harness pins the pod to default/default whatever the file says.
    pod["metadata"]["namespace"] = "default"
    pod["spec"]["serviceAccountName"] = "default"

    sa: dict[str, str] = {}
    if T + "serviceAccount/roleArn" in ann:
        sa[C.ROLE_ARN_ANNOTATION] = ann[T + "serviceAccount/roleArn"]
    sa[C.AUDIENCE_ANNOTATION] = ann.get(T + "serviceAccount/audience", C.DEFAULT_AUDIENCE)
    # The fake cache takes the SA's value, else the injectSTS "flag"; invalid means false.
    sts_raw = ann.get(T + "serviceAccount/sts-regional-endpoints", ann.get(T + "handler/injectSTS"))
    sts = parse_go_bool(sts_raw) if sts_raw is not None else None
    sa[C.STS_REGIONAL_ANNOTATION] = "true" if sts else "false"
    exp_raw = ann.get(T + "serviceAccount/token-expiration", ann.get(T + "handler/expiration"))
    exp = parse_go_int64(exp_raw) if exp_raw is not None else None
    sa[C.TOKEN_EXPIRATION_ANNOTATION] = str(
        exp if exp is not None else C.DEFAULT_TOKEN_EXPIRATION_S
    )

    flags: dict[str, Any] = {"aws_default_region": ann.get(T + "handler/region", "")}
    if ann.get(T + "handler/mountPath"):
        flags["token_mount_path"] = ann[T + "handler/mountPath"]
    if ann.get(T + "containercredentials/uri"):
        flags["container_credentials"] = ContainerCredentialsSettings(
            identities=frozenset({("default", "default")}),
            audience=ann.get(T + "containercredentials/audience", ""),
            mount_path=ann.get(T + "containercredentials/mountPath", ""),
            volume_name=ann.get(T + "containercredentials/volumeName", ""),
            token_path=ann.get(T + "containercredentials/tokenPath", ""),
            full_uri=ann[T + "containercredentials/uri"],
        )
    skip_raw = ann.get(T + "skip")
    return Case(
        path=path,
        pod=pod,
        sa_annotations=sa,
        settings=WebhookSettings(**flags),
        expected=json.loads(ann[T + "expectedPatch"]),
        skip=bool(parse_go_bool(skip_raw)) if skip_raw is not None else False,
    )


def normalise(value: Any, key: str = "") -> Any:
    """Remove what Go's re-serialisation adds or drops, so patches compare by meaning.

    Drops ``null`` members, an empty ``resources``, ``"mountPath": ""``, and keys of a
    volumeMount that are not VolumeMount fields (the bogus ``path`` of one fixture).
    """
    if isinstance(value, list):
        return [normalise(v, key) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if v is None or (k == "resources" and v == {}) or (k == "mountPath" and v == ""):
            continue
        if key == "volumeMounts" and k not in VOLUME_MOUNT_FIELDS:
            continue
        out[k] = normalise(v, k)
    return out


def normalise_patch(patch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A patch with each op's value normalised (op and path kept as they are)."""
    return [
        {**op, "value": normalise(op.get("value"), op["path"].rsplit("/", 1)[-1])} for op in patch
    ]


# --- a running webhook ------------------------------------------------------------------


@dataclass
class RunningWebhook:
    """A webhook served over HTTPS on loopback, with what a test needs to reach it."""

    url: str
    ca: LabCA
    loop: ServerLoop
    cache: ServiceAccountCache
    trace: Trace
    settings: WebhookSettings = field(default_factory=WebhookSettings)


@contextlib.contextmanager
def running_webhook(
    cache: Any = None, settings: WebhookSettings | None = None, ca: LabCA | None = None
) -> Iterator[RunningWebhook]:
    """Serve the webhook app with a fresh lab CA; stops it on exit."""
    ca = ca or LabCA.create()
    cache = cache if cache is not None else ServiceAccountCache()
    settings = settings or WebhookSettings.lab()
    clock = ManualClock(LAB_EPOCH)
    trace = Trace(clock)
    loop = ServerLoop("webhook-test").start()
    try:
        app = make_app(cache=cache, settings=settings, trace=trace, clock=clock)
        served = loop.serve("webhook", app, tls=ca.issue().server_context())
        yield RunningWebhook(served.url, ca, loop, cache, trace, settings)
    finally:
        loop.stop()
