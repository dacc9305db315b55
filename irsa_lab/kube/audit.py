"""The admission record of a real API server, read from its audit log.

The ``k8s`` and kind backends run the real kube-apiserver with the lab's audit policy
(``Request`` level for pod writes, :func:`irsa_lab.kind.config.audit_policy`), which
writes one JSON ``audit.k8s.io/v1`` Event a line. The event of a pod ``create`` at
stage ``ResponseComplete`` carries, for each mutating webhook the server called, these
annotations (seen on kube-apiserver v1.36.1 with the upstream webhook v0.6.17):

* ``mutation.webhook.admission.k8s.io/round_R_index_I``:
  ``{"configuration":"pod-identity-webhook","webhook":"iam-for-pods.amazonaws.com","mutated":true}``,
  for every call, answered or not (a failed call is ``"mutated":false``);
* ``patch.webhook.admission.k8s.io/round_R_index_I``:
  ``{"configuration":...,"webhook":...,"patch":[RFC 6902 ops],"patchType":"JSONPatch"}``,
  only when the call patched, and only at ``Request`` level or above;
* ``failed-open.mutation.webhook.admission.k8s.io/round_R_index_I``: the webhook's name,
  when the call failed under ``failurePolicy: Ignore`` (the reason is in the server's
  own log, not in the audit event);
* a call that failed under ``Fail`` fails the create: ``responseStatus`` is the 500
  ``Internal error occurred: failed calling webhook "<name>": ...``.

``I`` is the webhook's place in the server's list of *all* mutating webhooks (the
configurations sorted by name, then their webhooks in order), not among those that
matched the pod: a webhook whose objectSelector excludes the pod is not called and has
no annotation, so "not called" is the absence of evidence for that webhook.

:func:`admission_records` turns one event into
:class:`~irsa_lab.kube.admission.AdmissionRecord` values, the type the embedded API
server records, with ``source="audit log"``; :class:`AuditLog` finds the event of a
pod's create in the log file, waiting for the server to write it.

What the event does not hold is named in each record's ``unknown``: the AdmissionReview
``uid`` (the server draws one a call), the webhook's response body, the call's
duration, and the URL and failurePolicy unless the configurations are given. The
``requestObject`` is the pod as decoded and defaulted, *before* the in-tree admission
plugins; the object the webhook was sent is rebuilt from it with the lab's own copies of
those plugins (:mod:`~irsa_lab.kube.pod_rules`), the ``kube-api-access-`` suffix taken
from the patch when the patch names it.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from ..constants import KUBE_API_ACCESS_PREFIX
from .admission import AdmissionRecord, Outcome
from .admission_response import PatchError, apply_patch
from .admission_review import AdmissionReview, Obj, UserInfo, pod_create_review
from .pod_rules import (
    apply_pod_defaults,
    default_tolerations,
    priority_admission,
    service_account_admission,
)

__all__ = [
    "AUDIT_SOURCE",
    "FAILED_OPEN_ANNOTATION_PREFIX",
    "MUTATION_ANNOTATION_PREFIX",
    "PATCH_ANNOTATION_PREFIX",
    "UNKNOWN_SUFFIX",
    "AuditLog",
    "NoAuditEvent",
    "WebhookCall",
    "admission_records",
    "find_pod_create",
    "parse_events",
    "webhook_calls",
    "webhook_input",
]

# The annotation keys of k8s.io/apiserver's mutating webhook dispatcher, each followed
# by ``round_<round>_index_<index>``.
MUTATION_ANNOTATION_PREFIX = "mutation.webhook.admission.k8s.io/"
PATCH_ANNOTATION_PREFIX = "patch.webhook.admission.k8s.io/"
FAILED_OPEN_ANNOTATION_PREFIX = "failed-open.mutation.webhook.admission.k8s.io/"
AUDIT_SOURCE = "audit log"

# Stages after which the server writes no more for a request.
_FINAL_STAGES = ("ResponseComplete", "Panic")
_KEY = re.compile(r"^round_(\d+)_index_(\d+)$")
# The suffix is 5 characters of apimachinery's rand.String alphabet.
_KUBE_API_ACCESS = re.compile(r"\bkube-api-access-([bcdfghjklmnpqrstvwxz2456789]{5})\b")
_INTERNAL_ERROR_PREFIX = "Internal error occurred: "
# The ServiceAccount plugin's random volume suffix when no patch shows it: plainly a
# placeholder, never a name the server could draw.
UNKNOWN_SUFFIX = "?????"


class NoAuditEvent(TimeoutError):
    """Raised when the audit log holds no finished ``create`` of the pod within the timeout."""


@dataclass(frozen=True)
class WebhookCall:
    """One call as the annotations tell it: ``mutated``, the ``patch`` (None when the
    annotation is absent), and whether it ``failed_open``."""

    round: int
    index: int
    configuration: str
    webhook: str
    mutated: bool
    patch: list[Obj] | None
    patch_type: str
    failed_open: bool


# --- reading the file ---------------------------------------------------------------------


def parse_events(lines: Iterable[str | bytes]) -> list[Obj]:
    """The audit Events among ``lines`` (JSON objects; blank and undecodable lines skipped)."""
    events: list[Obj] = []
    for line in lines:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("kind") == "Event":
            events.append(event)
    return events


def find_pod_create(events: Iterable[Obj], *, namespace: str, name: str) -> Obj | None:
    """The first finished (``ResponseComplete`` or ``Panic``) ``create`` of pod
    ``namespace/name`` among ``events``, dry runs included; None if there is none."""
    for event in events:
        ref = event.get("objectRef") or {}
        if (
            event.get("verb") == "create"
            and event.get("stage") in _FINAL_STAGES
            and ref.get("resource") == "pods"
            and not ref.get("subresource")
            and ref.get("namespace") == namespace
            and ref.get("name") == name
        ):
            return event
    return None


class AuditLog:
    """The API server's audit log file (``endpoints["audit_log"]``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"AuditLog({str(self.path)!r})"

    def mark(self) -> int:
        """The current end of the log, to pass as ``since`` for what comes next."""
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def events(self, since: int = 0) -> list[Obj]:
        """The complete lines written after offset ``since``, as Events.

        A line the server is still writing (no newline yet) is left for the next read.
        """
        try:
            with self.path.open("rb") as f:
                f.seek(since)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        return parse_events(data[: end + 1].splitlines()) if end >= 0 else []

    def pod_create(self, *, namespace: str, name: str, since: int = 0, timeout: float = 5.0) -> Obj:
        """The event of the pod's ``create`` after ``since``, waiting up to ``timeout`` s.

        The server writes the line when it answers, a few milliseconds after the client
        has its answer; polling covers that. Raises :class:`NoAuditEvent`.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = find_pod_create(self.events(since), namespace=namespace, name=name)
            if found is not None:
                return found
            if time.monotonic() >= deadline:
                raise NoAuditEvent(
                    f"no finished create of pod {namespace}/{name} in {self.path} after "
                    f"offset {since} within {timeout:g} s (is the API server's audit "
                    "policy at Request level for pods?)"
                )
            time.sleep(0.05)

    def admission_records(
        self,
        *,
        namespace: str,
        name: str,
        since: int = 0,
        timeout: float = 5.0,
        configurations: Sequence[Obj] = (),
    ) -> list[AdmissionRecord]:
        """The webhook calls of the pod's ``create`` after ``since``, one record each.

        ``[]`` when the server called no webhook. ``configurations`` (the
        MutatingWebhookConfigurations, as now) fill each record's URL and failurePolicy.
        """
        event = self.pod_create(namespace=namespace, name=name, since=since, timeout=timeout)
        return admission_records(event, configurations=configurations)


# --- one event to records ---------------------------------------------------------------


def webhook_calls(annotations: Mapping[str, str]) -> list[WebhookCall]:
    """The calls the annotations of one event tell of, in the server's order."""
    found: dict[tuple[int, int], dict[str, Any]] = {}

    def slot(key: str, prefix: str) -> dict[str, Any] | None:
        m = _KEY.match(key[len(prefix) :]) if key.startswith(prefix) else None
        return found.setdefault((int(m[1]), int(m[2])), {}) if m else None

    for key, value in annotations.items():
        for prefix, what in (
            (MUTATION_ANNOTATION_PREFIX, "mutation"),
            (PATCH_ANNOTATION_PREFIX, "patch"),
            (FAILED_OPEN_ANNOTATION_PREFIX, "failed_open"),
        ):
            s = slot(key, prefix)
            if s is None:
                continue
            if what == "failed_open":
                s[what] = value
            else:
                try:
                    s[what] = json.loads(value)
                except ValueError:
                    s[what] = {}
    calls = []
    for (round_, index), s in sorted(found.items()):
        mutation = s.get("mutation") or {}
        patch = s.get("patch") or {}
        ops = patch.get("patch")
        calls.append(
            WebhookCall(
                round=round_,
                index=index,
                configuration=str(mutation.get("configuration") or patch.get("configuration", "")),
                webhook=str(
                    mutation.get("webhook") or patch.get("webhook") or s.get("failed_open", "")
                ),
                mutated=bool(mutation.get("mutated")) or isinstance(ops, list),
                patch=[dict(op) for op in ops] if isinstance(ops, list) else None,
                patch_type=str(patch.get("patchType", "")),
                failed_open="failed_open" in s,
            )
        )
    return calls


def webhook_input(request_object: Obj, namespace: str, patches: Iterable[list[Obj]] = ()) -> Obj:
    """The pod the first webhook was sent, rebuilt from the event's ``requestObject``.

    The server runs its in-tree mutating plugins (ServiceAccount, Priority,
    DefaultTolerationSeconds) after the audit log took ``requestObject`` and before the
    webhooks; this runs the lab's copies of them. The ServiceAccount plugin's volume
    name takes the suffix a patch shows (the webhook copies each container's mounts
    into its patch); when a patch rewrites the containers and names no
    ``kube-api-access-`` volume, the plugin added none (automount off).
    """
    pod = copy.deepcopy(request_object)
    pod.setdefault("metadata", {})["namespace"] = namespace
    apply_pod_defaults(pod)
    patches = list(patches)
    suffix = _kube_api_access_suffix(patches)
    rewritten = any(
        op.get("path") in ("/spec/containers", "/spec/initContainers")
        for ops in patches
        for op in ops
    )
    automount_off = rewritten and suffix is None
    service_account_admission(
        pod,
        namespace,
        lambda _name: {"automountServiceAccountToken": False} if automount_off else {},
        lambda: suffix or UNKNOWN_SUFFIX,
    )
    priority_admission(pod)
    default_tolerations(pod)
    return pod


def _kube_api_access_suffix(patches: Iterable[list[Obj]]) -> str | None:
    for ops in patches:
        for op in ops:
            m = _KUBE_API_ACCESS.search(json.dumps(op.get("value")))
            if m:
                return m[1]
    return None


def _user(event: Obj) -> UserInfo:
    raw = event.get("user") or {}
    user: UserInfo = {"username": str(raw.get("username", ""))}
    if raw.get("uid"):
        user["uid"] = str(raw["uid"])
    if raw.get("groups"):
        user["groups"] = [str(g) for g in raw["groups"]]
    if raw.get("extra"):
        user["extra"] = {str(k): [str(x) for x in v] for k, v in raw["extra"].items()}
    return user


def _review(event: Obj, pod: Obj, namespace: str) -> AdmissionReview:
    """The AdmissionReview the server would have sent: uid left empty (not logged)."""
    review = pod_create_review("", pod, namespace, _user(event))
    request = review["request"]
    query = parse_qs(urlsplit(str(event.get("requestURI", ""))).query)
    options: Obj = {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
    if query.get("dryRun"):
        options["dryRun"] = query["dryRun"]
        request["dryRun"] = True
    for key in ("fieldManager", "fieldValidation"):
        if query.get(key):
            options[key] = query[key][0]
    request["options"] = options
    return review


def _hooks_by_name(configurations: Sequence[Obj]) -> dict[tuple[str, str], Obj]:
    return {
        ((cfg.get("metadata") or {}).get("name", ""), hook.get("name", "")): hook
        for cfg in configurations
        for hook in cfg.get("webhooks") or []
    }


def admission_records(event: Obj, *, configurations: Sequence[Obj] = ()) -> list[AdmissionRecord]:
    """The webhook calls of one pod-create audit Event, as admission records.

    The outcome is told from evidence only: a patch annotation (or ``mutated: true``)
    is ``patched``; a failed-open annotation ``ignored``; a failed create whose status
    names the webhook (``failed calling webhook "<name>"``) ``failed``, or ``denied``
    for ``admission webhook "<name>" denied the request``; a call with none of these
    ``allowed``. A webhook with no annotation was not called and has no record.
    """
    calls = webhook_calls(event.get("annotations") or {})
    if not calls:
        return []
    ref = event.get("objectRef") or {}
    namespace = str(ref.get("namespace", ""))
    status = event.get("responseStatus") or {}
    failed = int(status.get("code") or 0) >= 400
    message = str(status.get("message", ""))
    hooks = _hooks_by_name(configurations)
    patches = [c.patch for c in calls if c.patch]
    current = webhook_input(event.get("requestObject") or {}, namespace, patches)
    # The volume's name, when the plugin added one that no patch shows.
    suffix_unknown = _kube_api_access_suffix(patches) is None and any(
        v.get("name") == f"{KUBE_API_ACCESS_PREFIX}{UNKNOWN_SUFFIX}"
        for v in current["spec"].get("volumes") or []
    )
    records: list[AdmissionRecord] = []
    for call in calls:
        unknown = ["request.uid", "response", "duration_ms", "warnings"]
        if suffix_unknown:
            unknown.append("kube-api-access suffix")
        hook = hooks.get((call.configuration, call.webhook))
        url = ((hook or {}).get("clientConfig") or {}).get("url", "") if hook else ""
        policy = str((hook or {}).get("failurePolicy", "")) if hook else ""
        if hook is None:
            unknown.append("url")
        outcome: Outcome = "allowed"
        error = ""
        if call.failed_open:
            outcome, policy = "ignored", "Ignore"
            error = (
                f'failed calling webhook "{call.webhook}" (failurePolicy Ignore); the reason '
                "is in the API server's log, not in its audit log"
            )
            unknown.append("error")
        elif failed and f'failed calling webhook "{call.webhook}"' in message:
            outcome, policy = "failed", "Fail"
            error = message.removeprefix(_INTERNAL_ERROR_PREFIX)
        elif failed and f'admission webhook "{call.webhook}" denied the request' in message:
            outcome, error = "denied", message
        elif call.mutated:
            outcome = "patched"
        if not policy:
            unknown.append("failure_policy")
        if call.mutated and call.patch is None:
            unknown.append("patch")  # below Request level the patch is not logged
        before = copy.deepcopy(current)
        after: Obj | None = before
        if call.patch:
            try:
                after = apply_pod_defaults(apply_patch(copy.deepcopy(before), call.patch))
            except PatchError:
                after = None
                unknown.append("after")
        elif call.mutated:
            after = None
            unknown.append("after")
        records.append(
            AdmissionRecord(
                configuration=call.configuration,
                webhook=call.webhook,
                round=call.round,
                url=str(url),
                failure_policy=policy,
                request=_review(event, before, namespace),
                patch=call.patch,
                before=before,
                after=copy.deepcopy(after) if after is not None else None,
                outcome=outcome,
                error=error,
                source=AUDIT_SOURCE,
                unknown=tuple(unknown),
                index=call.index,
            )
        )
        if after is not None:
            current = after
    return records
