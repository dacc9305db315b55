"""Notebook 01, the pod mutation: what the pod identity webhook adds to a pod, and when.

Every pod here goes through the real API server, so the webhook really runs: its
ServiceAccount cache, the MutatingWebhookConfiguration's objectSelector and
failurePolicy, the JSONPatch. :class:`Mutation` holds one pod as submitted, as stored,
and the webhook exchange the API server logged for it; the functions around it turn
that into the text a checked cell prints. :class:`MutationExplorer` is the widget
whose controls are the annotations the webhook reads.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import traitlets
import yaml

from .. import constants as C
from ..kube.admission import AdmissionRecord
from ..kube.admission_response import PatchError, apply_patch
from ..session import Lab
from ..ui import describe
from ..ui.diff import (
    API_SERVER,
    WEBHOOK,
    DiffResult,
    line_authors,
    patch_table,
    pod_yaml,
    side_by_side,
    summarize_mutation,
)
from ..ui.static import StaticFallback
from ..ui.text import escape
from ..webhook.annotations import parse_go_int64

__all__ = [
    "ARTICLE_CONTAINER",
    "HIDDEN_DEFAULTS",
    "LAST_APPLIED",
    "PROBE_POD",
    "HtmlView",
    "Mutation",
    "MutationExplorer",
    "admission_request_text",
    "admission_response_text",
    "last_applied",
    "token_expiration_note",
    "LATE_DEPLOYMENT",
    "LATE_SA",
    "LateAnnotation",
    "ROLLOUT_TIMEOUT_S",
    "annotated_too_late",
    "rollout_restart",
    "create_mypod",
    "create_pod",
    "describe_service_account",
    "describe_webhook_configuration",
    "env_text",
    "focus",
    "mypod_manifest",
    "probe_manifest",
    "skip_label_demo",
    "webhook_down_demo",
]

PROBE_POD = "probe"
# `kubectl apply` keeps the manifest it applied in this annotation.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# The article's container name, as its last-applied-configuration shows it.
ARTICLE_CONTAINER = C.POD_CONTAINER
_EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mypod.yaml"

# Fields the API server fills with defaults on every pod. They say nothing about IRSA,
# so the lesson's diff hides them (the summary below the diff still counts everything).
HIDDEN_DEFAULTS: dict[str, tuple[str, ...]] = {
    "spec": (
        "serviceAccount",  # deprecated copy of serviceAccountName
        "dnsPolicy",
        "enableServiceLinks",
        "preemptionPolicy",
        "priority",
        "restartPolicy",
        "schedulerName",
        "securityContext",
        "terminationGracePeriodSeconds",
        "tolerations",
    ),
    "container": (
        "imagePullPolicy",
        "resources",
        "terminationMessagePath",
        "terminationMessagePolicy",
    ),
}


# --- manifests ---------------------------------------------------------------------


def mypod_manifest() -> dict[str, Any]:
    """The article's pod (``examples/mypod.yaml``): the AWS CLI image, ``s3-readonly-sa``."""
    if _EXAMPLE.exists():
        return dict(yaml.safe_load(_EXAMPLE.read_text()))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": C.POD_NAME, "namespace": C.NAMESPACE},
        "spec": {
            "serviceAccountName": C.SERVICE_ACCOUNT,
            "containers": [
                {"name": ARTICLE_CONTAINER, "image": C.POD_IMAGE, "command": ["sleep", "infinity"]}
            ],
        },
    }


def probe_manifest(
    name: str = PROBE_POD,
    *,
    service_account: str = C.SERVICE_ACCOUNT,
    skip_containers: str = "",
    skip_label: bool = False,
) -> dict[str, Any]:
    """A two-container pod (``app`` and ``sidecar``) for trying annotations and labels."""
    meta: dict[str, Any] = {"name": name, "namespace": C.NAMESPACE}
    if skip_containers:
        meta["annotations"] = {C.SKIP_CONTAINERS_ANNOTATION: skip_containers}
    if skip_label:
        meta["labels"] = {C.SKIP_WEBHOOK_LABEL: "true"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {
            "serviceAccountName": service_account,
            "containers": [
                {"name": "app", "image": C.POD_IMAGE, "command": ["sleep", "infinity"]},
                {"name": "sidecar", "image": "busybox", "command": ["sleep", "infinity"]},
            ],
        },
    }


# --- describe views ------------------------------------------------------------------


def describe_service_account(lab: Lab, name: str = C.SERVICE_ACCOUNT) -> str:
    """``kubectl describe sa <name>``, read through the real API."""
    return describe.describe_service_account(lab.get_service_account(name))


def describe_webhook_configuration(lab: Lab, name: str = C.WEBHOOK_CONFIG_NAME) -> str:
    """``kubectl describe mutatingwebhookconfiguration <name>`` (CA bundle shortened)."""
    return describe.describe_mutating_webhook_configuration(
        lab.get_webhook_configuration(name), short_ca_bundle=True
    )


# --- one pod, submitted and stored -----------------------------------------------------


def last_applied(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """``manifest`` as ``kubectl apply`` sends it: with the
    ``kubectl.kubernetes.io/last-applied-configuration`` annotation, the manifest itself as
    compact JSON with sorted keys and ``"annotations":{}`` (what Go's encoder writes for
    the object kubectl read from the file), ending in a newline."""
    original = copy.deepcopy(dict(manifest))
    original.setdefault("metadata", {}).setdefault("annotations", {})
    text = json.dumps(original, sort_keys=True, separators=(",", ":")) + "\n"
    out = copy.deepcopy(original)
    out["metadata"]["annotations"] = {**out["metadata"]["annotations"], LAST_APPLIED: text}
    return out


def focus(pod: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``pod`` without the :data:`HIDDEN_DEFAULTS` fields, nor kubectl's
    last-applied copy of the manifest (the same on both sides of a diff, and long)."""
    out = copy.deepcopy(dict(pod))
    annotations = (out.get("metadata") or {}).get("annotations")
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        annotations.pop(LAST_APPLIED)
        if not annotations:
            out["metadata"].pop("annotations")
    spec = out.get("spec") or {}
    for key in HIDDEN_DEFAULTS["spec"]:
        spec.pop(key, None)
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            for key in HIDDEN_DEFAULTS["container"]:
                c.pop(key, None)
    return out


class HtmlView:
    """Shows ``html`` in JupyterLab and ``text`` everywhere else (and to nbval)."""

    def __init__(self, html: str, text: str) -> None:
        self.html = html
        self.text = text

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.text


@dataclass
class Mutation:
    """One pod through admission: as submitted, as stored, and the webhook exchange.

    ``record`` is None when the API server did not call the webhook (the pod carried
    the skip label), as the API server's records show.
    """

    submitted: dict[str, Any]
    stored: dict[str, Any]
    record: AdmissionRecord | None

    @property
    def name(self) -> str:
        return str(self.stored["metadata"]["name"])

    @property
    def webhook_called(self) -> bool:
        return self.record is not None

    @property
    def outcome(self) -> str:
        """``patched``, ``allowed`` (no patch), ``ignored`` (call failed, failurePolicy
        Ignore), or ``not called``."""
        return self.record.outcome if self.record is not None else "not called"

    def webhook_pair(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The pod as the API server sent it to the webhook, and that pod with the
        webhook's JSONPatch applied (the evidence of which lines the webhook wrote).
        None when the webhook was not called or its patch is not known."""
        r = self.record
        if r is None or r.before is None:
            return None
        after: dict[str, Any] | None = r.after
        if r.patch is not None:
            try:
                after = apply_patch(copy.deepcopy(r.before), r.patch)
            except PatchError:
                after = r.after
        elif r.outcome != "patched":
            after = r.before  # called, no patch: the webhook wrote nothing
        return None if after is None else (r.before, after)

    @property
    def diff(self) -> DiffResult:
        """Submitted vs stored, line by line, API-server defaults hidden, each added
        line attributed to the API server or the webhook."""
        submitted, stored = pod_yaml(focus(self.submitted)), pod_yaml(focus(self.stored))
        pair = self.webhook_pair()
        authors = line_authors(
            submitted,
            stored,
            to_webhook=pod_yaml(focus(pair[0])) if pair else None,
            from_webhook=pod_yaml(focus(pair[1])) if pair else None,
        )
        return side_by_side(submitted, stored, authors=authors)

    def diff_view(self) -> HtmlView:
        d = self.diff
        note = (
            '<p style="margin:2px 0;font-size:12px;line-height:1.35;"><i>Hidden: fields the API '
            "server fills with defaults on every pod "
            f"({escape(', '.join(HIDDEN_DEFAULTS['spec'] + HIDDEN_DEFAULTS['container']))}).</i></p>"
        )
        return HtmlView(d.html + note, d.summary + "\n" + d.text)

    @property
    def summary(self) -> str:
        """What changed, one line per env var, mount and volume, with who reads it."""
        return summarize_mutation(self.submitted, self.stored)

    def env(self, container: str | None = None) -> dict[str, str]:
        """The stored env of ``container`` (the first one by default)."""
        containers = self.stored["spec"]["containers"]
        c = next((c for c in containers if container in (None, c["name"])), containers[0])
        return {e["name"]: str(e.get("value", "")) for e in c.get("env") or []}

    def mutated_containers(self) -> list[str]:
        """Containers that got the token mount."""
        return [
            c["name"]
            for c in self.stored["spec"]["containers"]
            if any(m.get("name") == C.TOKEN_VOLUME_NAME for m in c.get("volumeMounts") or [])
        ]

    @property
    def token_volume(self) -> dict[str, Any] | None:
        """The ``serviceAccountToken`` source of the ``aws-iam-token`` volume, if any."""
        for v in self.stored["spec"].get("volumes") or []:
            if v.get("name") == C.TOKEN_VOLUME_NAME:
                for src in (v.get("projected") or {}).get("sources") or []:
                    if "serviceAccountToken" in src:
                        return dict(src["serviceAccountToken"])
        return None

    def facts(self, *, header: bool = True) -> str:
        """The plain facts a checked cell prints about this pod (without ``header``, only
        its env and token volume: for a pod whose name and admission a controller chose)."""
        lines = (
            [f"pod {self.name}: webhook {_OUTCOME_WORDS.get(self.outcome, self.outcome)}"]
            if header
            else []
        )
        if self.record is not None and self.record.error:
            lines.append(f"  error: {self.record.error}")
        for c in self.stored["spec"]["containers"]:
            aws = {k: v for k, v in self.env(c["name"]).items() if k.startswith("AWS_")}
            lines.append(f"  container {c['name']}:" + ("" if aws else " no AWS_ variables"))
            lines.extend(f"    {k}={v}" for k, v in aws.items())
        vol = self.token_volume
        lines.append(
            "  aws-iam-token volume: "
            + (
                f"audience {vol.get('audience', '(API server audiences)')}, "
                f"expirationSeconds {vol.get('expirationSeconds')}"
                if vol is not None
                else "none"
            )
        )
        return "\n".join(lines)


_OUTCOME_WORDS = {
    "patched": "called: patched the pod",
    "allowed": "called: allowed the pod without a patch (no role for its ServiceAccount)",
    "ignored": "call failed: ignored (failurePolicy Ignore), pod stored as submitted",
    "not called": "not called",
}


def env_text(env: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in env.items())


def create_pod(lab: Lab, manifest: Mapping[str, Any], *, recreate: bool = True) -> Mutation:
    """Create ``manifest`` through the API server (deleting an old pod of that name first)
    and return it with the pod identity webhook's exchange it caused, as the API server
    recorded it (the embedded one's log, or a real one's audit log): None when the API
    server did not call the webhook."""
    meta = manifest["metadata"]
    namespace = meta.get("namespace") or C.NAMESPACE
    if recreate:
        lab.delete_pod(meta["name"], namespace)
    mark = lab.admission_mark()
    stored = lab.create_pod(manifest)
    records = [
        r
        for r in lab.admission_records(namespace, stored["metadata"]["name"], mark)
        if r.webhook == C.WEBHOOK_NAME
    ]
    return Mutation(copy.deepcopy(dict(manifest)), stored, records[-1] if records else None)


def create_mypod(lab: Lab) -> Mutation:
    """``kubectl apply -f mypod.yaml``: the article's pod, with the annotation
    ``kubectl apply`` adds (:func:`last_applied`)."""
    return create_pod(lab, last_applied(mypod_manifest()))


# --- the AdmissionReview exchange ---------------------------------------------------------


def _abbreviate_object(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    spec = obj.get("spec") or {}
    return {
        "metadata": obj.get("metadata"),
        "spec": {
            "serviceAccountName": spec.get("serviceAccountName"),
            "containers": [
                {k: c[k] for k in ("name", "image", "env", "volumeMounts") if k in c}
                for c in spec.get("containers") or []
            ],
            "volumes": [v.get("name") for v in spec.get("volumes") or []],
            "...": "(other fields left out)",
        },
    }


def _yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, width=10_000)


def admission_request_text(record: AdmissionRecord, *, full: bool = False) -> str:
    """The AdmissionReview the API server POSTed to the webhook, as YAML.

    Without ``full`` the pod under ``request.object`` keeps only what the webhook reads.
    """
    review = copy.deepcopy(record.request)
    if not full:
        req = review.get("request") or {}
        req["object"] = _abbreviate_object(req.get("object"))
    head = f"POST {record.url or '(the webhook configuration has no URL)'}\n"
    if record.source != "dispatcher":
        head += (
            f"# rebuilt from the API server's {record.source}, which does not keep: "
            + ", ".join(record.unknown)
            + "\n"
        )
    return head + _yaml(review)


def _audit_answer_text(record: AdmissionRecord) -> str:
    """What a real API server's audit log keeps of the answer: the outcome and, at
    ``Request`` level, the JSONPatch it applied (the response body itself is not kept)."""
    key = f"round_{record.round}_index_{record.index}"
    lines = [f"# from the API server's {record.source}: the webhook's answer is not kept there"]
    lines.append(f"mutation.webhook.admission.k8s.io/{key}: outcome {record.outcome}")
    if record.error:
        lines.append(f"error: {record.error}")
    if record.patch is not None:
        lines.append(f"patch.webhook.admission.k8s.io/{key}: JSONPatch applied:")
        lines.append(_yaml(record.patch).rstrip())
    return "\n".join(lines)


def admission_response_text(record: AdmissionRecord, *, patch_chars: int = 48) -> str:
    """The webhook's answer as YAML, the base64 patch cut short, then the patch decoded."""
    if record.response is None and record.source != "dispatcher":
        return _audit_answer_text(record)
    if record.response is None:
        return f"no response: {record.error}"
    review = copy.deepcopy(record.response)
    resp = review.get("response") or {}
    raw = resp.get("patch")
    if isinstance(raw, str) and len(raw) > patch_chars:
        resp["patch"] = f"{raw[:patch_chars]}... ({len(raw)} base64 characters)"
    out = _yaml(review)
    if isinstance(raw, str):
        ops = json.loads(base64.b64decode(raw))
        out += "\nThe patch, base64-decoded (a JSONPatch, RFC 6902):\n" + patch_table(ops)
    return out


def _set_sa_annotations(lab: Lab, name: str, annotations: Mapping[str, str | None]) -> None:
    lab.annotate_service_account(name, annotations)


# --- the explorer widget --------------------------------------------------------------------


def token_expiration_note(value: str, applied: int | None = None) -> str:
    """What the webhook makes of a ``token-expiration`` annotation ``value`` (empty: not
    set), as upstream does: Go's ``strconv.ParseInt``; on a parse error the annotation
    is ignored and the default (86400 s) is used; a parsed value below 600 is raised to
    600; there is no upper clamp. ``applied``, the ``expirationSeconds`` of the pod the
    webhook patched, is named when given."""
    default, minimum = C.DEFAULT_TOKEN_EXPIRATION_S, C.MIN_TOKEN_EXPIRATION_S
    if value == "":
        note = f"not set: the webhook uses its default, {default} s"
    elif (n := parse_go_int64(value)) is None:
        note = (
            f"{value!r} is not a base-10 integer (Go's strconv.ParseInt fails): the webhook "
            f"ignores the annotation and uses its default, {default} s"
        )
    elif n < minimum:
        note = f"{n} is below the minimum: the webhook raises it to {minimum} s"
    else:
        note = f"{n} s, used as is (the webhook has no upper limit)"
    if applied is not None:
        note += f"; the new pod's token volume has expirationSeconds {applied}"
    return note


class MutationExplorer(StaticFallback, widgets.VBox):
    """Controls for the annotations the webhook reads, and the pod they produce.

    ServiceAccount annotations: ``audience``, ``sts_regional_endpoints`` (``""``,
    ``"true"`` or ``"false"``), ``token_expiration`` (seconds, as text). Pod:
    ``skip_containers`` (the annotation) and ``skip_label`` (the objectSelector label).
    An empty text means "annotation not set". Each is a traitlet, so Python can set
    and read it; :meth:`apply` writes the ServiceAccount, recreates the probe pod
    through the API server, and redraws the diff. The controls sit in one row right
    above the button and the result, so the diff they change is in view.
    """

    audience = traitlets.Unicode("")
    sts_regional_endpoints = traitlets.Unicode("")
    token_expiration = traitlets.Unicode("")
    skip_containers = traitlets.Unicode("")
    skip_label = traitlets.Bool(False)

    SA_FIELDS = {
        "audience": C.AUDIENCE_ANNOTATION,
        "sts_regional_endpoints": C.STS_REGIONAL_ANNOTATION,
        "token_expiration": C.TOKEN_EXPIRATION_ANNOTATION,
    }

    def __init__(
        self, lab: Lab, *, service_account: str = C.SERVICE_ACCOUNT, pod_name: str = PROBE_POD
    ) -> None:
        self.lab = lab
        self.service_account = service_account
        self.pod_name = pod_name
        self.last: Mutation | None = None
        self._applied_expiration: str | None = None  # the value the last pod was made with
        # Each label above its control: the annotation keys are long, the columns narrow.
        # No side margins: a control as wide as its column, never wider (no scrollbar).
        full = widgets.Layout(width="100%", margin="2px 0")

        def labelled(label: str, control: widgets.Widget) -> widgets.VBox:
            head = widgets.HTML(
                '<div style="font-size:12px;line-height:1.3;overflow-wrap:anywhere;">'
                f"{escape(label)}</div>",
                layout=widgets.Layout(width="100%", margin="0"),
            )
            return widgets.VBox([head, control], layout=widgets.Layout(min_width="0", margin="0"))

        # trait -> the control that sets it
        by_trait: dict[str, widgets.Widget] = {
            "audience": widgets.Text(placeholder=f"(not set: {C.DEFAULT_AUDIENCE})", layout=full),
            "sts_regional_endpoints": widgets.Dropdown(
                options=[("(not set)", ""), ("true", "true"), ("false", "false")], layout=full
            ),
            "token_expiration": widgets.Text(
                placeholder=f"(not set: {C.DEFAULT_TOKEN_EXPIRATION_S})", layout=full
            ),
            "skip_containers": widgets.Text(placeholder="(not set) e.g. sidecar", layout=full),
            "skip_label": widgets.Checkbox(
                description="set (any value)", indent=False, layout=full
            ),
        }
        labels = {
            "audience": f"SA {C.AUDIENCE_ANNOTATION}",
            "sts_regional_endpoints": f"SA {C.STS_REGIONAL_ANNOTATION}",
            "token_expiration": f"SA {C.TOKEN_EXPIRATION_ANNOTATION}",
            "skip_containers": f"pod {C.SKIP_CONTAINERS_ANNOTATION}",
            "skip_label": f"pod label {C.SKIP_WEBHOOK_LABEL}",
        }
        for trait, control in by_trait.items():
            widgets.link((control, "value"), (self, trait))
        self.controls = list(by_trait.values())
        self.token_note = widgets.HTML(layout=widgets.Layout(width="100%", margin="0"))
        self.apply_button = widgets.Button(
            description="Recreate the probe pod",
            icon="refresh",
            layout=widgets.Layout(width="auto", margin="4px 0"),
        )
        self.apply_button.on_click(lambda _b: self.apply())
        cells: list[widgets.Widget] = []
        for trait, control in by_trait.items():
            cell = labelled(labels[trait], control)
            if trait == "token_expiration":
                cell.children = (*cell.children, self.token_note)
            cells.append(cell)
        # One row of controls, the button under it, the result right below: what a control
        # changes is in view. The columns shrink with the cell (no fixed widths).
        row = widgets.GridBox(
            cells,
            layout=widgets.Layout(
                grid_template_columns=f"repeat({len(cells)}, minmax(0, 1fr))",
                grid_gap="0 8px",
            ),
        )
        self.facts_html = widgets.HTML("<p>Press the button to create the probe pod.</p>")
        self.diff_html = widgets.HTML()
        self.observe(self._show_token_note, names="token_expiration")
        self._show_token_note()
        super().__init__(
            children=[row, self.apply_button, self.facts_html, self.diff_html],
            layout=widgets.Layout(max_width="100%"),
        )

    def _show_token_note(self, _change: Any = None) -> None:
        self.token_note.value = (
            f'<div style="font-size:12px;line-height:1.3;margin:0 0 6px 0;opacity:0.85;">'
            f"{escape(self.token_note_text())}</div>"
        )

    def sa_annotations(self) -> dict[str, str | None]:
        """The ServiceAccount annotations the controls ask for (None: remove)."""
        return {key: (getattr(self, f) or None) for f, key in self.SA_FIELDS.items()}

    def manifest(self) -> dict[str, Any]:
        return probe_manifest(
            self.pod_name,
            service_account=self.service_account,
            skip_containers=self.skip_containers,
            skip_label=self.skip_label,
        )

    def apply(self) -> Mutation:
        """Annotate the ServiceAccount, recreate the probe pod, show what the webhook did."""
        _set_sa_annotations(self.lab, self.service_account, self.sa_annotations())
        m = create_pod(self.lab, self.manifest())
        self.last = m
        self._applied_expiration = self.token_expiration
        self._show_token_note()
        pre = (
            "margin:0 0 4px 0;font-size:12px;line-height:1.35;"
            "white-space:pre-wrap;overflow-wrap:anywhere;"
        )
        self.facts_html.value = f'<pre style="{pre}">{escape(m.facts())}</pre>'
        self.diff_html.value = m.diff_view().html
        return m

    def reset(self) -> Mutation:
        """Every control back to "not set" (the article's ServiceAccount), then apply."""
        self.audience = self.sts_regional_endpoints = self.token_expiration = ""
        self.skip_containers = ""
        self.skip_label = False
        return self.apply()

    def state(self) -> dict[str, Any]:
        """The controls and, after :meth:`apply`, what the webhook did with them."""
        out: dict[str, Any] = {
            "audience": self.audience,
            "sts_regional_endpoints": self.sts_regional_endpoints,
            "token_expiration": self.token_expiration,
            "skip_containers": self.skip_containers,
            "skip_label": self.skip_label,
        }
        if self.last is not None:
            d = self.last.diff
            out["webhook"] = self.last.outcome
            out["mutated_containers"] = self.last.mutated_containers()
            out["token_volume"] = self.last.token_volume
            out["lines_added"] = {API_SERVER: d.added_by(API_SERVER), WEBHOOK: d.added_by(WEBHOOK)}
        out["token_expiration_note"] = self.token_note_text()
        return out

    def token_note_text(self) -> str:
        """The note shown under the token-expiration field, as plain text."""
        applied = None
        if self.last is not None and self.last.token_volume is not None:
            if self._applied_expiration == self.token_expiration:
                applied = self.last.token_volume.get("expirationSeconds")
        return token_expiration_note(self.token_expiration, applied)

    # -- what the stored output shows before the cell runs -------------------------------
    def static_title(self) -> str:
        return "Mutation explorer"

    def static_lines(self) -> list[str]:
        def shown(value: str) -> str:
            return value if value else "(not set)"

        lines = [
            f"ServiceAccount {self.service_account}: "
            f"{C.AUDIENCE_ANNOTATION} {shown(self.audience)}, "
            f"{C.STS_REGIONAL_ANNOTATION} {shown(self.sts_regional_endpoints)}, "
            f"{C.TOKEN_EXPIRATION_ANNOTATION} {shown(self.token_expiration)}",
            f"pod {self.pod_name}: {C.SKIP_CONTAINERS_ANNOTATION} {shown(self.skip_containers)}, "
            f"label {C.SKIP_WEBHOOK_LABEL} {'set' if self.skip_label else '(not set)'}",
        ]
        if self.last is None:
            lines.append("No probe pod created yet: the button creates it and shows the diff.")
        else:
            lines.append(f"Last probe pod: webhook {self.last.outcome}; {self.last.diff.summary}")
        return lines


# --- failures learners meet ---------------------------------------------------------------


def webhook_down_demo(lab: Lab, name: str = "mypod-webhook-down") -> Mutation:
    """Stop the webhook, create a pod, start the webhook again.

    ``failurePolicy: Ignore``: the API server logs the failed call and stores the pod
    unmutated; nothing tells the person who created it.
    """
    manifest = mypod_manifest()
    manifest["metadata"]["name"] = name
    lab.control.stop_webhook()
    try:
        return create_pod(lab, manifest)
    finally:
        lab.control.start_webhook()


@dataclass
class LateAnnotation:
    """The "annotated too late" demo on a Deployment: its pod before the annotation, the
    same pod after it, the rollout command, and the pod the rollout made."""

    before: Mutation
    after_annotation: Mutation
    restart_command: str
    restart_output: str
    rolled_out: Mutation

    def text(self) -> str:
        return "\n".join(
            [
                "the Deployment's pod, created before the annotation:",
                self.before.facts(header=False),
                "the same pod after `kubectl annotate sa`: unchanged",
                self.after_annotation.facts(header=False),
                f"$ {self.restart_command}",
                self.restart_output,
                "the pod the rollout created, through the webhook again:",
                self.rolled_out.facts(header=False),
            ]
        )


LATE_SA, LATE_DEPLOYMENT = "late-sa", "late"
ROLLOUT_TIMEOUT_S = 90.0


def annotated_too_late(
    lab: Lab, *, sa: str = LATE_SA, deployment: str = LATE_DEPLOYMENT
) -> LateAnnotation:
    """A Deployment's pod created before its ServiceAccount got the role annotation, then
    ``kubectl rollout restart``: the webhook acts only when a pod is created, so the
    running pod keeps no role, and the rollout's new pod gets it."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    apps = client.AppsV1Api(lab.api_client)
    for delete in (
        lambda: apps.delete_namespaced_deployment(deployment, C.NAMESPACE),
        lambda: lab.core.delete_namespaced_service_account(sa, C.NAMESPACE),
    ):
        try:
            delete()
        except ApiException as err:
            if err.status != 404:
                raise
    _wait_pods(lab, deployment, lambda pods: not pods, "the old pods to go")
    lab.core.create_namespaced_service_account(
        C.NAMESPACE, {"metadata": {"name": sa, "namespace": C.NAMESPACE}}
    )
    template = mypod_manifest()
    template["spec"]["serviceAccountName"] = sa
    apps.create_namespaced_deployment(
        C.NAMESPACE,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": deployment, "labels": {"app": deployment}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": deployment}},
                "template": {"metadata": {"labels": {"app": deployment}}, "spec": template["spec"]},
            },
        },
    )
    first = _wait_pods(lab, deployment, lambda pods: len(pods) == 1, "the Deployment's pod")[0]
    _set_sa_annotations(lab, sa, {C.ROLE_ARN_ANNOTATION: C.ROLE_ARN})
    again = lab.get_pod(first["metadata"]["name"])
    command, output = rollout_restart(lab, deployment)
    old = first["metadata"]["name"]
    new = _wait_pods(
        lab,
        deployment,
        lambda pods: len(pods) == 1 and pods[0]["metadata"]["name"] != old,
        "the rollout's new pod",
    )[0]
    return LateAnnotation(
        Mutation(template, first, None),
        Mutation(template, again, None),
        command,
        output,
        Mutation(template, new, None),
    )


def rollout_restart(lab: Lab, deployment: str) -> tuple[str, str]:
    """``kubectl rollout restart deployment/<name>``, with the real kubectl when there is
    one (the one ``make k8s-bin`` built, else the one on PATH); else the same patch it
    sends (the pod template's ``kubectl.kubernetes.io/restartedAt``), through the client.
    Returns the command and what it printed."""
    import shutil
    import subprocess

    from ..backends import binaries

    found = binaries.find("kubectl")
    kubectl = str(found.path) if found else shutil.which("kubectl")
    shown = f"kubectl rollout restart deployment/{deployment}"
    if kubectl:
        done = subprocess.run(
            [kubectl, "--kubeconfig", str(lab.endpoints["kubeconfig"]), *shown.split()[1:]],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return shown, (done.stdout + done.stderr).strip()
    from datetime import UTC, datetime

    from kubernetes import client

    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    patch = {
        "spec": {
            "template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}
        }
    }
    client.AppsV1Api(lab.api_client).patch_namespaced_deployment(deployment, C.NAMESPACE, patch)
    return shown, (
        f"deployment.apps/{deployment} restarted "
        "(no kubectl here: the same patch was sent with the kubernetes client)"
    )


def _wait_pods(
    lab: Lab,
    app: str,
    done: Callable[[list[dict[str, Any]]], bool],
    what: str,
    timeout: float = ROLLOUT_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """The Running pods labelled ``app=<app>`` (none being deleted), once ``done`` says so."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        items = json.loads(
            lab.core.list_namespaced_pod(
                C.NAMESPACE, label_selector=f"app={app}", _preload_content=False
            ).data
        )["items"]
        live = [p for p in items if not p["metadata"].get("deletionTimestamp")]
        running = [p for p in live if (p.get("status") or {}).get("phase") == "Running"]
        if done(running) and len(running) == len(live):
            return running
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def skip_label_demo(lab: Lab, name: str = "mypod-skipped") -> Mutation:
    """The article's pod with the label the webhook configuration's objectSelector excludes."""
    manifest = mypod_manifest()
    manifest["metadata"]["name"] = name
    manifest["metadata"]["labels"] = {C.SKIP_WEBHOOK_LABEL: "true"}
    return create_pod(lab, manifest)
