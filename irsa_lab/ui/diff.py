"""The pod as submitted next to the pod as stored: what the admission chain changed.

docs/reference/teaching.md §6.1. Both pods are normalised first (server-set noise such as
``uid``, ``resourceVersion``, ``managedFields`` and ``status`` dropped), dumped to YAML
in one fixed key order, then compared line by line with :mod:`difflib`. The HTML is
our own two-column table, not ``difflib.HtmlDiff``: HtmlDiff's anchor ids come from a
class-level counter that changes with call order, which breaks nbval.

Who wrote each added line comes from evidence, not from line patterns:
:func:`line_authors` follows each stored line back through the pod the webhook
received and the pod its JSONPatch made (both kept by the API server's admission
record). A line the webhook's patch added is the webhook's; any other added line was
written by the API server (its ServiceAccount admission plugin, which runs before the
webhooks, and its defaulting, which runs after them).

:func:`summarize_mutation` is the plain-text companion a checked notebook cell
prints: which env vars, volumes and mounts appeared, and which program reads each.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..constants import (
    ENV_DEFAULT_REGION,
    ENV_REGION,
    ENV_ROLE_ARN,
    ENV_STS_REGIONAL_ENDPOINTS,
    ENV_WEB_IDENTITY_TOKEN_FILE,
    KUBE_API_ACCESS_PREFIX,
    TOKEN_VOLUME_NAME,
)
from .text import (
    FAIL,
    OK,
    SKIP,
    STYLE_CHANGED,
    STYLE_FAIL,
    STYLE_OK,
    escape,
    text_table,
)

__all__ = [
    "API_SERVER",
    "DEFAULT_DROP",
    "ENV_READERS",
    "WEBHOOK",
    "DiffResult",
    "line_authors",
    "patch_table",
    "pod_yaml",
    "side_by_side",
    "summarize_mutation",
]

# Fields the API server sets on every object; they differ run to run and say
# nothing about the mutation.
DEFAULT_DROP: tuple[str, ...] = (
    "metadata.uid",
    "metadata.resourceVersion",
    "metadata.creationTimestamp",
    "metadata.managedFields",
    "metadata.generation",
    "status",
)

# Who reads each injected variable (docs/reference/sts.md §4.1, §4.7).
ENV_READERS: dict[str, str] = {
    ENV_ROLE_ARN: "read by the AWS SDK's web-identity credential provider: the role to assume",
    ENV_WEB_IDENTITY_TOKEN_FILE: (
        "read by the AWS SDK's web-identity credential provider: the token it sends to STS "
        "(without this variable the provider is skipped)"
    ),
    ENV_REGION: "read by the Go, Java and JavaScript SDKs to resolve the region (botocore ignores it)",
    ENV_DEFAULT_REGION: "read by boto3/botocore and the AWS CLI to resolve the region",
    ENV_STS_REGIONAL_ENDPOINTS: (
        "read by the AWS SDK to pick the STS endpoint "
        "(regional: sts.<region>.amazonaws.com; legacy: sts.amazonaws.com)"
    ),
}

# Key order, kubectl-like at the top and "as people write it" below, so the webhook's
# additions show as inserted lines rather than as rewritten ones. Keys not listed
# follow in alphabetical order (what ``kubectl get -o yaml`` does everywhere).
_ORDER: dict[str, tuple[str, ...]] = {
    "": ("apiVersion", "kind", "metadata", "spec", "status"),
    "metadata": ("name", "generateName", "namespace", "labels", "annotations", "ownerReferences"),
    "spec": (
        "serviceAccountName",
        "serviceAccount",
        "nodeName",
        "initContainers",
        "containers",
        "volumes",
    ),
    "container": (
        "name",
        "image",
        "command",
        "args",
        "workingDir",
        "ports",
        "env",
        "envFrom",
        "resources",
        "volumeMounts",
    ),
    "env": ("name", "value", "valueFrom"),
    "volumeMounts": ("name", "mountPath", "readOnly", "subPath"),
    "volumes": ("name",),
    "serviceAccountToken": ("audience", "expirationSeconds", "path"),
    "projected": ("sources", "defaultMode"),
}
_CONTEXT_OF_ITEMS = {
    "containers": "container",
    "initContainers": "container",
    "ephemeralContainers": "container",
}


def _ordered(value: Any, context: str) -> Any:
    if isinstance(value, Mapping):
        first = _ORDER.get(context, ())
        keys = [k for k in first if k in value]
        keys += sorted(k for k in value if k not in first)
        return {k: _ordered(value[k], k) for k in keys}
    if isinstance(value, list):
        item_context = _CONTEXT_OF_ITEMS.get(context, context)
        return [_ordered(v, item_context) for v in value]
    return value


def _drop(obj: dict[str, Any], dotted: str) -> None:
    parts = dotted.split(".")
    node: Any = obj
    for p in parts[:-1]:
        if not isinstance(node, dict) or p not in node:
            return
        node = node[p]
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def pod_yaml(pod: Mapping[str, Any], *, drop: Iterable[str] = DEFAULT_DROP) -> str:
    """The pod as YAML in a fixed key order, without the ``drop`` fields (dotted paths).

    Empty maps left behind (``metadata: {}``) are kept: they are part of the object.
    """
    obj = copy.deepcopy(dict(pod))
    for path in drop:
        _drop(obj, path)
    ordered = _ordered(obj, "")
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=False, width=10_000)


Row = tuple[str, str | None, str | None]

# The two authors of a stored pod's added lines, as the diff names them.
API_SERVER = "API server"
WEBHOOK = "webhook"
_AUTHOR_STYLE = {WEBHOOK: STYLE_OK, API_SERVER: "background:rgba(56,139,253,0.18);"}
_AUTHOR_COLOUR = {WEBHOOK: "green", API_SERVER: "blue"}


@dataclass(frozen=True)
class DiffResult:
    """A two-column diff.

    ``rows`` are ``(marker, left_line, right_line)``: marker ``" "`` same, ``"+"``
    added on the right, ``"-"`` removed from the left, ``"~"`` changed; a missing
    side is ``None``. ``authors`` runs beside ``rows``: who wrote the right-hand line
    of an added or changed row (:data:`API_SERVER` or :data:`WEBHOOK`), ``""`` for
    the other rows or when no authors were given. ``html`` and ``text`` render the
    same rows.
    """

    rows: list[Row]
    added: int
    removed: int
    changed: int
    html: str
    text: str
    authors: list[str] = field(default_factory=list)

    def added_by(self, author: str) -> int:
        """How many added lines ``author`` wrote."""
        return sum(
            1
            for (marker, _l, _r), who in zip(self.rows, self.authors, strict=False)
            if marker == "+" and who == author
        )

    @property
    def summary(self) -> str:
        return _summary(self.rows, self.authors)

    def _repr_html_(self) -> str:
        return self.html


def _lines(side: Mapping[str, Any] | str) -> list[str]:
    text = side if isinstance(side, str) else pod_yaml(side)
    return text.splitlines()


def _rows(left: list[str], right: list[str]) -> list[Row]:
    rows: list[Row] = []
    matcher = difflib.SequenceMatcher(None, left, right, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            rows.extend(
                (" ", left[i], right[j]) for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            )
        elif tag == "delete":
            rows.extend(("-", left[i], None) for i in range(i1, i2))
        elif tag == "insert":
            rows.extend(("+", None, right[j]) for j in range(j1, j2))
        else:  # replace: pair lines up, the surplus is added or removed
            n = min(i2 - i1, j2 - j1)
            rows.extend(("~", left[i1 + k], right[j1 + k]) for k in range(n))
            rows.extend(("-", left[i], None) for i in range(i1 + n, i2))
            rows.extend(("+", None, right[j]) for j in range(j1 + n, j2))
    return rows


def _numbered(rows: Sequence[Row]) -> list[tuple[str, int | None, str, int | None, str]]:
    out = []
    ln = rn = 0
    for marker, left, right in rows:
        lno = rno = None
        if left is not None:
            ln += 1
            lno = ln
        if right is not None:
            rn += 1
            rno = rn
        out.append((marker, lno, left or "", rno, right or ""))
    return out


_MARKER_STYLE = {"+": STYLE_OK, "-": STYLE_FAIL, "~": STYLE_CHANGED, " ": ""}
_MARKER_WORD = {"+": "added", "-": "removed", "~": "changed", " ": ""}


def _summary(rows: Sequence[Row], authors: Sequence[str]) -> str:
    added = sum(1 for r in rows if r[0] == "+")
    removed = sum(1 for r in rows if r[0] == "-")
    changed = sum(1 for r in rows if r[0] == "~")
    by = ""
    if any(authors):
        counts = {
            who: sum(1 for r, a in zip(rows, authors, strict=True) if r[0] == "+" and a == who)
            for who in (API_SERVER, WEBHOOK)
        }
        by = f" ({counts[API_SERVER]} by the {API_SERVER}, {counts[WEBHOOK]} by the {WEBHOOK})"
    return f"{added} lines added{by}, {removed} removed, {changed} changed"


def _render_text(rows: Sequence[Row], titles: tuple[str, str], authors: Sequence[str] = ()) -> str:
    numbered = _numbered(rows)
    width = max([len(titles[0])] + [len(r[2]) for r in numbered])
    who = list(authors) or [""] * len(rows)
    by = max(len(API_SERVER), len("by")) if any(who) else 0
    head = f"{'by':<{by}} " if by else ""
    lines = [f"  {head}{'':>3} {titles[0]:<{width}} | {'':>3} {titles[1]}".rstrip()]
    for (marker, lno, left, rno, right), author in zip(numbered, who, strict=True):
        ls = "" if lno is None else str(lno)
        rs = "" if rno is None else str(rno)
        tag = f"{author:<{by}} " if by else ""
        lines.append(f"{marker} {tag}{ls:>3} {left:<{width}} | {rs:>3} {right}".rstrip())
    return "\n".join(lines)


# One compact row per YAML line, the same in a notebook output and inside a widget (whose
# HTML would otherwise take the widget's own font and line height). Fixed layout: the
# table is as wide as the cell and long lines wrap instead of widening it.
_DIFF_TABLE = (
    "border-collapse:collapse;font-family:var(--jp-code-font-family,monospace);"
    "font-size:12px;line-height:1.35;width:100%;max-width:100%;table-layout:fixed;"
    "box-sizing:border-box;"
)
# line-height on each cell: JupyterLab's rendered-HTML rules set ``line-height: normal`` on
# cells, a widget's HTML inherits 28 px; the same explicit value makes both rows alike.
_DIFF_CELL = (
    "border:1px solid rgba(128,128,128,0.25);padding:0 4px;vertical-align:top;text-align:left;"
    "line-height:1.3;font-size:12px;"
)
_DIFF_CODE = "white-space:pre-wrap;overflow-wrap:anywhere;word-break:break-all;text-align:left;"
_DIFF_NUM = "text-align:right;opacity:0.6;user-select:none;"


def _legend(authors: Sequence[str]) -> str:
    marks = f"Markers: {OK} added, {FAIL} removed, {SKIP} changed."
    if not any(authors):
        return marks
    keys = "".join(
        f' <span style="{_AUTHOR_STYLE[who]}padding:0 4px;">{escape(who)}</span>'
        for who in (API_SERVER, WEBHOOK)
    )
    return f"{marks} Column “by”, and colour, name who added the line:{keys}."


def _render_html(
    rows: Sequence[Row], titles: tuple[str, str], summary: str, authors: Sequence[str] = ()
) -> str:
    who = list(authors) or [""] * len(rows)
    with_by = any(who)
    # The submitted side is the shorter one: give the stored side the larger share.
    cols = ["1.4em", *(["7.6em"] if with_by else []), "2.6em", "34%", "2.6em", ""]
    colgroup = "".join(f'<col style="width:{w};">' if w else "<col>" for w in cols)
    head_by = f'<th style="{_DIFF_CELL}" title="who added the line">by</th>' if with_by else ""
    out = [
        f'<div class="irsa-diff" style="max-width:100%;line-height:1.35;"><p style="margin:0 0 4px 0;">'
        f"{escape(summary)}. {_legend(who)}</p>",
        f'<table style="{_DIFF_TABLE}"><colgroup>{colgroup}</colgroup><thead><tr>'
        f'<th style="{_DIFF_CELL}" title="change marker">±</th>{head_by}'
        f'<th style="{_DIFF_CELL}{_DIFF_CODE}" colspan="2">{escape(titles[0])}</th>'
        f'<th style="{_DIFF_CELL}{_DIFF_CODE}" colspan="2">{escape(titles[1])}</th></tr></thead><tbody>',
    ]
    for (marker, lno, left, rno, right), author in zip(_numbered(rows), who, strict=True):
        style = _MARKER_STYLE[marker]
        word = _MARKER_WORD[marker]
        lstyle = style if marker in "-~" else ""
        rstyle = style if marker in "+~" else ""
        if author and marker in "+~":
            rstyle = _AUTHOR_STYLE[author]
        if word and author and marker in "+~":
            word = f"{word} by the {author}"
        title = f' title="{escape(word)}"' if word else ""
        by = (
            f'<td style="{_DIFF_CELL}white-space:nowrap;{rstyle if author else ""}">'
            f"{escape(author)}</td>"
            if with_by
            else ""
        )
        out.append(
            f"<tr{title}>"
            f'<td style="{_DIFF_CELL}{_DIFF_CODE}">{escape(marker)}</td>{by}'
            f'<td style="{_DIFF_CELL}{_DIFF_NUM}{lstyle}">{"" if lno is None else lno}</td>'
            f'<td style="{_DIFF_CELL}{_DIFF_CODE}{lstyle}">{escape(left)}</td>'
            f'<td style="{_DIFF_CELL}{_DIFF_NUM}{rstyle}">{"" if rno is None else rno}</td>'
            f'<td style="{_DIFF_CELL}{_DIFF_CODE}{rstyle}">{escape(right)}</td>'
            "</tr>"
        )
    out.append("</tbody></table></div>")
    return "".join(out)


def side_by_side(
    before: Mapping[str, Any] | str,
    after: Mapping[str, Any] | str,
    *,
    titles: tuple[str, str] = ("as submitted", "as stored"),
    authors: Sequence[str] | None = None,
) -> DiffResult:
    """Compare two pods (dicts, normalised with :func:`pod_yaml`) or two YAML texts.

    ``authors``, one per line of ``after`` (see :func:`line_authors`), adds a "by"
    column and colours each added or changed line by who wrote it.
    """
    right = _lines(after)
    rows = _rows(_lines(before), right)
    who: list[str] = []
    if authors is not None:
        if len(authors) != len(right):
            raise ValueError(f"{len(authors)} authors for {len(right)} lines")
        it = iter(authors)
        who = [next(it) if r is not None else "" for _m, _l, r in rows]
        who = [a if m in "+~" else "" for (m, _l, _r), a in zip(rows, who, strict=True)]
    summary = _summary(rows, who)
    return DiffResult(
        rows=rows,
        added=sum(1 for r in rows if r[0] == "+"),
        removed=sum(1 for r in rows if r[0] == "-"),
        changed=sum(1 for r in rows if r[0] == "~"),
        html=_render_html(rows, titles, summary, who),
        text=_render_text(rows, titles, who),
        authors=who,
    )


def _matched(a: list[str], b: list[str]) -> dict[int, int]:
    """Index in ``b`` -> index in ``a`` of every line the two texts share, in order."""
    out: dict[int, int] = {}
    for block in difflib.SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks():
        out.update((block.b + k, block.a + k) for k in range(block.size))
    return out


def line_authors(
    submitted: str, stored: str, *, to_webhook: str | None = None, from_webhook: str | None = None
) -> list[str]:
    """Who wrote each line of ``stored``: ``""`` (it was submitted), :data:`WEBHOOK` or
    :data:`API_SERVER`.

    ``to_webhook`` is the pod as the API server sent it to the webhook and
    ``from_webhook`` the same pod with the webhook's JSONPatch applied (YAML texts,
    normalised like the other two). A stored line that traces back to a line the patch
    added is the webhook's; every other added line is the API server's. Without the
    webhook's pair (it was not called, or did not answer) every added line is the API
    server's.
    """
    sub, out = submitted.splitlines(), stored.splitlines()
    kept = _matched(sub, out)
    webhook_lines: set[int] = set()
    if to_webhook is not None and from_webhook is not None:
        before, after = to_webhook.splitlines(), from_webhook.splitlines()
        unchanged = set(_matched(before, after))
        patched = {k for k in range(len(after)) if k not in unchanged}
        traced = _matched(after, out)
        webhook_lines = {j for j, k in traced.items() if k in patched}
    return [
        "" if j in kept else WEBHOOK if j in webhook_lines else API_SERVER for j in range(len(out))
    ]


# --- the semantic summary -------------------------------------------------------


def _containers(pod: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    spec = pod.get("spec") or {}
    out = []
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            label = (
                f'init container "{c.get("name")}"'
                if kind == "initContainers"
                else f'container "{c.get("name")}"'
            )
            out.append((label, c))
    return out


def _env_value(e: Mapping[str, Any]) -> str:
    if "value" in e:
        return str(e["value"])
    if "valueFrom" in e:
        return "(from " + json.dumps(e["valueFrom"], sort_keys=True, separators=(",", ":")) + ")"
    return ""


def _volume_text(v: Mapping[str, Any]) -> str:
    name = v.get("name")
    projected = v.get("projected")
    if projected:
        parts = []
        for src in projected.get("sources") or []:
            sat = src.get("serviceAccountToken")
            if sat:
                aud = sat.get("audience", "(the API server's audiences)")
                parts.append(
                    f"service-account token for audience {aud}, "
                    f"expirationSeconds {sat.get('expirationSeconds', 3600)}, "
                    f"file {sat.get('path')}"
                )
            else:
                parts.extend(sorted(src))
        what = "projected volume: " + "; ".join(parts)
    else:
        kinds = sorted(k for k in v if k != "name")
        what = (kinds[0] if kinds else "volume") + " volume"
    if name == TOKEN_VOLUME_NAME:
        who = " (added by the pod identity webhook)"
    elif str(name).startswith(KUBE_API_ACCESS_PREFIX):
        who = " (added by the API server's ServiceAccount admission plugin)"
    else:
        who = ""
    return f'volume "{name}": {what}{who}'


def summarize_mutation(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """What changed between the submitted and the stored pod, in plain sentences.

    Lines start with ``+`` (added), ``-`` (removed) or ``~`` (changed). Each added
    AWS variable names the program that reads it. Order follows the pod, so the
    output is stable.
    """
    lines: list[str] = []
    old_containers = dict(_containers(before))
    for label, c in _containers(after):
        old = old_containers.get(label, {})
        old_env = {e.get("name"): e for e in old.get("env") or []}
        new_env = {e.get("name"): e for e in c.get("env") or []}
        for name, e in new_env.items():
            reader = ENV_READERS.get(str(name))
            suffix = f"\n      {reader}" if reader else ""
            if name not in old_env:
                lines.append(f"+ {label}: env {name}={_env_value(e)}{suffix}")
            elif _env_value(old_env[name]) != _env_value(e):
                lines.append(
                    f"~ {label}: env {name} changed from {_env_value(old_env[name])} "
                    f"to {_env_value(e)}{suffix}"
                )
        for name in old_env:
            if name not in new_env:
                lines.append(f"- {label}: env {name} removed")
        old_mounts = {m.get("mountPath"): m for m in old.get("volumeMounts") or []}
        for m in c.get("volumeMounts") or []:
            if m.get("mountPath") not in old_mounts:
                mode = "read-only" if m.get("readOnly") else "read-write"
                lines.append(
                    f'+ {label}: mount of volume "{m.get("name")}" at {m.get("mountPath")} ({mode})'
                )
    old_vols = {v.get("name") for v in (before.get("spec") or {}).get("volumes") or []}
    for v in (after.get("spec") or {}).get("volumes") or []:
        if v.get("name") not in old_vols:
            lines.append("+ " + _volume_text(v))
    new_vols = {v.get("name") for v in (after.get("spec") or {}).get("volumes") or []}
    for name in sorted(str(n) for n in old_vols - new_vols):
        lines.append(f'- volume "{name}" removed')
    if not lines:
        return "No change: the pod was stored as submitted."
    head = f"{len(lines)} change{'s' if len(lines) != 1 else ''} between the pod as submitted and as stored:"
    return "\n".join([head, *lines])


def _pointer_text(path: str) -> str:
    # JSON Pointer escapes: "~1" is "/", "~0" is "~" (RFC 6901).
    return path.replace("~1", "/").replace("~0", "~")


def _short(value: Any, width: int) -> str:
    text = json.dumps(value, separators=(", ", ": "), ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


def patch_table(
    patch: Sequence[Mapping[str, Any]] | str | bytes, *, width: int = 60, full: bool = True
) -> str:
    """A JSONPatch (RFC 6902) as a numbered table, then each value in YAML when ``full``.

    Paths are shown decoded (``eks.amazonaws.com/role-arn``, not ``~1``).
    """
    ops = json.loads(patch) if isinstance(patch, str | bytes) else list(patch)
    rows = []
    for i, op in enumerate(ops, 1):
        value = op.get("value", op.get("from", ""))
        rows.append(
            (
                str(i),
                op.get("op", "?"),
                _pointer_text(str(op.get("path", ""))),
                _short(value, width) if "value" in op else str(value),
            )
        )
    out = [text_table(("#", "op", "path", "value"), rows)]
    if full:
        for i, op in enumerate(ops, 1):
            if "value" not in op or not isinstance(op["value"], dict | list):
                continue
            body = yaml.safe_dump(
                _ordered(op["value"], _context_for(str(op.get("path", "")))),
                sort_keys=False,
                default_flow_style=False,
                width=10_000,
            )
            indented = "\n".join("    " + line for line in body.rstrip("\n").splitlines())
            out.append(
                f"\n{i}. {op.get('op')} {_pointer_text(str(op.get('path', '')))}:\n{indented}"
            )
    return "\n".join(out)


def _context_for(path: str) -> str:
    segs = [p for p in path.split("/") if p]
    if not segs:
        return ""
    if segs[-1].isdigit() or segs[-1] == "-":
        parent = segs[-2] if len(segs) > 1 else ""
        return _CONTEXT_OF_ITEMS.get(parent, parent)
    return segs[-1]
