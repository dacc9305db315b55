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
2. :func:`observe` sends each lab the same script: the official ``kubernetes``
   client with ``_preload_content=False`` (raw JSON and headers), raw HTTPS for the
   anonymous and bad-token requests and the discovery documents, and the real
   kubectl for the kubectl rows. Every answer becomes an :class:`Exchange`, keyed
   by case name;
3. :func:`compare` compares each pair after :func:`mask` has replaced generated
   values (uids, jti, times, kid, resourceVersions, generated names, URLs, CA
   bundles) by placeholders that name their format, so presence, JSON type and
   format are still compared. Token times are compared relative to ``iat``
   (``exp - iat``, ``nbf - iat``, ``warnafter - iat``), ``iss`` against each lab's
   own issuer;
4. :data:`ACCEPTED` says why each difference that remains is acceptable for
   teaching; anything it does not match is a defect of the stand-in.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import fnmatch
import json
import os
import re
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .. import constants as C
from ..backends import binaries
from .report import Difference, SuiteResult

__all__ = [
    "ACCEPTED",
    "Acceptance",
    "Exchange",
    "Side",
    "accept",
    "compare",
    "compare_claims",
    "compare_jose_header",
    "compare_json",
    "compare_key_order",
    "compare_lines",
    "mask",
    "mask_text",
    "observe",
    "parse_warnings",
    "run",
]

SEED = 20240327
POD_MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "mypod.yaml"
PROBE_WEBHOOK_CONFIG = "fidelity-probe"
SCHEDULE_TIMEOUT_S = 30.0
BIND_GRACE_S = 2.0
KUBECTL_TIMEOUT_S = 60.0
_ABSENT = "<absent>"
_TOKEN_PATH = f"/api/v1/namespaces/{C.NAMESPACE}/serviceaccounts/{C.SERVICE_ACCOUNT}/token"
_HEADERS = ("content-type", "cache-control", "warning")

# --- what an answer is -----------------------------------------------------------------


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


# --- masking ----------------------------------------------------------------------------

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
_JWT = re.compile(r"^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]+$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]+$")
_DIGITS = re.compile(r"^\d+$")
_GENERATED_NAME = re.compile(r"\bkube-api-access-[bcdfghjklmnpqrstvwxz2456789]{5}\b")
_CONTAINER_ID = re.compile(r"irsa-lab://[0-9a-f]{64}")
_LOCAL_URL = re.compile(r"https://127\.0\.0\.1:\d+")


def _b64url_len(text: str) -> int | None:
    try:
        return len(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        return None


def _mask_string(key: str, value: str, issuer: str) -> str:
    if issuer and value.startswith(issuer):
        value = "<issuer>" + value[len(issuer) :]
    if _UUID.match(value):
        return "<uuid>"
    if _TIME.match(value):
        return "<time>"
    if _JWT.match(value):
        return "<jwt>"
    if key == "resourceVersion" and _DIGITS.match(value):
        return "<resourceVersion>"
    if key == "kid" and len(value) == 43 and _B64URL.match(value):
        return "<kid: 43 base64url chars>"
    if key == "n" and _B64URL.match(value):
        return f"<modulus: {_b64url_len(value)} bytes>"
    if key == "caBundle":
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
        kind = "PEM" if decoded.startswith(b"-----BEGIN CERTIFICATE-----") else "not PEM"
        return f"<caBundle: base64 of {kind}>"
    value = _GENERATED_NAME.sub("kube-api-access-<5 chars>", value)
    value = _CONTAINER_ID.sub("irsa-lab://<64 hex>", value)
    return _LOCAL_URL.sub("https://127.0.0.1:<port>", value)


def _managed_field(entry: Any) -> str:
    if not isinstance(entry, Mapping):
        return repr(entry)
    parts = [str(entry.get("manager")), str(entry.get("operation"))]
    if entry.get("subresource"):
        parts.append(str(entry["subresource"]))
    return "/".join(parts)


def mask(value: Any, *, issuer: str = "", key: str = "") -> Any:
    """A copy of ``value`` with generated values replaced by placeholders.

    Why: uids, ``jti``, times, the key id, resourceVersions, the 5 random characters
    of ``kube-api-access-``, local ports and CA bundles differ run to run and lab to
    lab. Each placeholder names the format it replaced (``<uuid>``, ``<time>``,
    ``<kid: 43 base64url chars>``...), so a value of the wrong format or type stays
    visible. ``issuer`` (the lab's own) becomes ``<issuer>``; ``managedFields`` is
    reduced to ``manager/operation[/subresource]`` entries.
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "managedFields" and isinstance(v, list):
                out[k] = [_managed_field(e) for e in v]
            else:
                out[k] = mask(v, issuer=issuer, key=str(k))
        return out
    if isinstance(value, list):
        return [mask(v, issuer=issuer, key=key) for v in value]
    if isinstance(value, str):
        return _mask_string(key, value, issuer)
    return value


_TEXT_MASKS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"), "<uuid>"),
    (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>"),
    (re.compile(r'(resourceVersion: )"\d+"'), r'\1"<resourceVersion>"'),
    (re.compile(r"(Resource Version:\s+)\d+"), r"\1<resourceVersion>"),
    (re.compile(r"(Ca Bundle:\s+)[A-Za-z0-9+/=]+"), r"\1<caBundle>"),
    (_GENERATED_NAME, "kube-api-access-<5 chars>"),
    (_CONTAINER_ID, "irsa-lab://<64 hex>"),
    (_LOCAL_URL, "https://127.0.0.1:<port>"),
)


def mask_text(text: str, *, issuer: str = "") -> str:
    """:func:`mask` for text (kubectl output): the same placeholders, found by pattern."""
    if issuer:
        text = text.replace(issuer, "<issuer>")
    for pattern, placeholder in _TEXT_MASKS:
        text = pattern.sub(placeholder, text)
    return text


# --- comparing ----------------------------------------------------------------------------


def _short(value: Any, limit: int = 160) -> str:
    if value is _ABSENT:
        return _ABSENT
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def compare_json(case: str, standin: Any, real: Any, where: str = "") -> list[Difference]:
    """Every place two JSON values differ: a key on one side only, a list of another
    length, another JSON type or another value. ``where`` prefixes the paths."""
    if isinstance(standin, Mapping) and isinstance(real, Mapping):
        diffs: list[Difference] = []
        keys = list(real) + [k for k in standin if k not in real]
        for k in keys:
            path = f"{where}.{k}" if where else str(k)
            if k not in standin:
                diffs.append(Difference(case, path, _ABSENT, _short(real[k])))
            elif k not in real:
                diffs.append(Difference(case, path, _short(standin[k]), _ABSENT))
            else:
                diffs += compare_json(case, standin[k], real[k], path)
        return diffs
    if isinstance(standin, list) and isinstance(real, list):
        if len(standin) != len(real):
            return [
                Difference(
                    case,
                    f"{where or '(value)'} (length {len(standin)} vs {len(real)})",
                    _short(standin),
                    _short(real),
                )
            ]
        diffs = []
        for i, (a, b) in enumerate(zip(standin, real, strict=True)):
            diffs += compare_json(case, a, b, f"{where}[{i}]")
        return diffs
    if _type(standin) != _type(real):
        return [
            Difference(
                case,
                where or "(value)",
                f"{_short(standin)} ({_type(standin)})",
                f"{_short(real)} ({_type(real)})",
            )
        ]
    if standin != real:
        return [Difference(case, where or "(value)", _short(standin), _short(real))]
    return []


def compare_key_order(
    case: str, standin: Any, real: Any, paths: Iterable[str], what: str = "key order"
) -> list[Difference]:
    """The order of the keys both objects hold at each dotted path (``spec.containers.0``)."""
    diffs = []
    for path in paths:
        a, b = standin, real
        for part in path.split(".") if path else []:
            index: Any = int(part) if part.isdigit() else part
            try:
                a, b = a[index], b[index]
            except (KeyError, IndexError, TypeError):
                a = b = None
                break
        if not isinstance(a, Mapping) or not isinstance(b, Mapping):
            continue
        common_a = [k for k in a if k in b]
        common_b = [k for k in b if k in a]
        if common_a != common_b:
            diffs.append(
                Difference(
                    case, f"{what} of {path or '(top)'}", ",".join(common_a), ",".join(common_b)
                )
            )
    return diffs


def _relative_claims(claims: Mapping[str, Any], issuer: str) -> dict[str, Any]:
    """Claims with times made relative to ``iat`` and generated values masked."""
    out = dict(mask(dict(claims), issuer=issuer))
    iat = claims.get("iat")
    if isinstance(iat, int) and not isinstance(iat, bool):
        out["iat"] = "<iat>"
        for key in ("exp", "nbf"):
            if isinstance(claims.get(key), int):
                out[key] = f"iat{claims[key] - iat:+d}"
        kube = claims.get("kubernetes.io")
        if isinstance(kube, Mapping) and isinstance(kube.get("warnafter"), int):
            masked_kube = dict(out["kubernetes.io"])
            masked_kube["warnafter"] = f"iat{kube['warnafter'] - iat:+d}"
            out["kubernetes.io"] = masked_kube
    return out


def compare_claims(
    case: str,
    standin: Mapping[str, Any],
    real: Mapping[str, Any],
    *,
    standin_issuer: str = "",
    real_issuer: str = "",
) -> list[Difference]:
    """Compare two JWT claim sets: the set of claims, each claim's JSON type, and the
    values after masking, with ``exp``/``nbf``/``warnafter`` relative to ``iat`` and
    ``iss`` against each side's own issuer (``<issuer>`` when it is that issuer)."""
    diffs = []
    if sorted(standin) != sorted(real):
        diffs.append(
            Difference(case, "claim names", ",".join(sorted(standin)), ",".join(sorted(real)))
        )
    for key in sorted(set(standin) & set(real)):
        if _type(standin[key]) != _type(real[key]):
            diffs.append(
                Difference(case, f"type of claim {key}", _type(standin[key]), _type(real[key]))
            )
    a = _relative_claims(standin, standin_issuer)
    b = _relative_claims(real, real_issuer)
    common = set(a) & set(b)
    diffs += compare_json(
        case,
        {k: v for k, v in a.items() if k in common},
        {k: v for k, v in b.items() if k in common},
        "claims",
    )
    return diffs


def compare_jose_header(
    case: str,
    standin: Mapping[str, Any],
    real: Mapping[str, Any],
    *,
    standin_kids: Sequence[str] = (),
    real_kids: Sequence[str] = (),
) -> list[Difference]:
    """Compare two JWS headers: names (order ignored), ``alg``, and the ``kid``'s
    format and whether it is one of that lab's JWKS key ids."""

    def shape(header: Mapping[str, Any], kids: Sequence[str]) -> dict[str, Any]:
        out = {k: mask(v, key=k) for k, v in sorted(header.items())}
        if "kid" in header:
            out["kid in the lab's JWKS"] = header["kid"] in kids
        return out

    return compare_json(case, shape(standin, standin_kids), shape(real, real_kids), "header")


def compare_lines(case: str, standin: str, real: str) -> list[Difference]:
    """Line-by-line differences of two (masked) texts: one per changed block of lines,
    numbered as in the real program's output."""
    a, b = standin.splitlines(), real.splitlines()
    diffs = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        where = f"line {j1 + 1}" if j2 - j1 <= 1 else f"lines {j1 + 1}-{j2}"
        diffs.append(
            Difference(
                case,
                where if j2 > j1 else f"after line {j1}",
                " / ".join(s.strip() for s in a[i1:i2]) or _ABSENT,
                " / ".join(s.strip() for s in b[j1:j2]) or _ABSENT,
            )
        )
    return diffs


_WARNING = re.compile(r'\d{3} [^ ]+ "((?:[^"\\]|\\.)*)"')


def parse_warnings(header: str | None) -> list[str]:
    """The texts of a ``Warning`` header (RFC 7234 ``299 - "text"`` values, comma-joined
    when a client folds several headers into one)."""
    return [re.sub(r"\\(.)", r"\1", m) for m in _WARNING.findall(header or "")]


# --- acceptance -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Acceptance:
    """A known difference and why it is acceptable; fields are ``fnmatch`` patterns."""

    case: str
    what: str
    reason: str
    standin: str = "*"
    real: str = "*"

    def matches(self, d: Difference) -> bool:
        return (
            fnmatch.fnmatchcase(d.case, self.case)
            and fnmatch.fnmatchcase(d.what, self.what)
            and fnmatch.fnmatchcase(d.standin, self.standin)
            and fnmatch.fnmatchcase(d.real, self.real)
        )


_MANAGED_FIELDS = (
    "the stand-in records no managedFields (server-side apply's bookkeeping of who set "
    "which field); kubectl hides them by default and nothing in the IRSA chain reads them"
)
_KEY_ORDER = (
    "JSON object keys carry no order (RFC 8259); the real server writes Go struct order, "
    "the stand-in the order the pipeline filled the fields in. kubectl -o yaml/-o json "
    "sort keys and the lessons order fields themselves, so no learner sees it"
)
_EKS_ISSUER_HOST = (
    "the embedded lab's OIDC host imitates EKS's public issuer "
    "(oidc.eks.<region>.amazonaws.com adds authorization_endpoint and claims_supported, "
    "and its jwks_uri ends in /keys); the k8s backend points STS at the API server's own "
    "endpoints, as a self-hosted cluster does"
)
ACCEPTED: tuple[Acceptance, ...] = (
    Acceptance("*", "*managedFields*", _MANAGED_FIELDS),
    Acceptance("*", "key order of *", _KEY_ORDER),
    Acceptance(
        "*",
        "claims.kubernetes.io.node.uid",
        "the embedded lab serves no Node objects, so its API server embeds only the node's "
        "name, as a real server does when the bound pod's Node is missing; STS ignores the "
        "private kubernetes.io claim",
        standin=_ABSENT,
    ),
    Acceptance(
        "discovery document (API server path)",
        "body.values.jwks_uri",
        "jwks_uri is configuration: the k8s backend passes --service-account-jwks-uri with "
        "its own address (kind-config.yaml's extraArgs); the stand-in publishes "
        "<issuer>/openid/v1/jwks. STS reads the issuer host's document (next row)",
        standin="<issuer>/openid/v1/jwks",
    ),
    *(
        Acceptance("discovery document (the issuer host STS fetches)", what, _EKS_ISSUER_HOST)
        for what in (
            "body.keys (length 7 vs 5)",
            "body.types.authorization_endpoint",
            "body.types.claims_supported",
            "body.values.authorization_endpoint",
            "body.values.claims_supported",
            "body.values.jwks_uri",
        )
    ),
    Acceptance(
        "JWKS (the issuer host STS fetches)",
        "headers.content-type",
        "EKS's issuer host serves its keys as application/json, the API server as "
        "application/jwk-set+json; each backend serves what its real counterpart does",
    ),
    Acceptance(
        "403 anonymous list pods",
        "*",
        "the stand-in has no anonymous authentication and no RBAC (docs/reference/kubernetes.md "
        "§6.2): a request without the lab's bearer token is 401 Unauthorized, which "
        "tests/test_apiserver.py pins; the real server authenticates it as system:anonymous "
        "and RBAC answers 403",
    ),
    Acceptance(
        "403 pod with a missing ServiceAccount",
        "body.message",
        "the cause the learner reads is the same ('error looking up service account "
        'default/nope: serviceaccount "nope" not found\'); the real server prefixes '
        "'pods \"nosa\" is forbidden: '. tests/test_apiserver.py pins the unprefixed "
        "message, so the fix waits for its owner",
    ),
    Acceptance(
        "403 pod with a missing ServiceAccount",
        "body.details",
        "the real server names the pod in details (name, kind pods); the stand-in's "
        "admission error carries no details until the message above is aligned",
    ),
    Acceptance(
        "kubectl describe mutatingwebhookconfiguration pod-identity-webhook",
        "*",
        "the embedded lab calls the webhook through clientConfig.service, the k8s backend "
        "through clientConfig.url (docs/fidelity.md lists this deviation: no kube-proxy "
        "routes a Service); kubectl aligns the block's values to its longest key",
        standin="*Service:*",
        real="*URL:*",
    ),
    Acceptance(
        "kubectl describe mutatingwebhookconfiguration pod-identity-webhook",
        "*",
        "the embedded lab seeds the article's EKS configuration (reinvocationPolicy "
        "IfNeeded, irsa_lab.webhook.config); the k8s backend seeds upstream's "
        "deploy/mutatingwebhook.yaml, which leaves the default Never. The API server's "
        "defaulting is compared on the identical fidelity-probe configuration",
        standin="Reinvocation Policy:*IfNeeded*",
        real="Reinvocation Policy:*Never*",
    ),
)


def accept(diffs: Iterable[Difference], rules: Iterable[Acceptance] = ACCEPTED) -> list[Difference]:
    """``diffs`` with the reason of the first rule that matches each one filled in."""
    rules = tuple(rules)
    out = []
    for d in diffs:
        rule = next((r for r in rules if r.matches(d)), None)
        out.append(replace(d, accepted=rule.reason) if rule and not d.accepted else d)
    return out


# --- talking to a lab ------------------------------------------------------------------------


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


def _pod(name: str, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if "annotations" in spec:
        meta["annotations"] = spec.pop("annotations")
    body: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": body}


def _probe_webhook_configuration() -> dict[str, Any]:
    """A configuration both labs store alike, to compare the API server's defaulting.

    It matches no pod (an objectSelector label nobody sets) and fails open.
    """
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": PROBE_WEBHOOK_CONFIG},
        "webhooks": [
            {
                "name": "probe.fidelity.irsa-lab.example",
                "admissionReviewVersions": ["v1"],
                "clientConfig": {"url": "https://127.0.0.1:9/never"},
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "objectSelector": {"matchLabels": {"irsa-lab.example/fidelity-probe": "never"}},
                "rules": [
                    {
                        "operations": ["CREATE"],
                        "apiGroups": [""],
                        "apiVersions": ["v1"],
                        "resources": ["pods"],
                    }
                ],
            }
        ],
    }


# The pods whose creation should (or should not) make the server warn: dry runs.
WARNING_PODS: dict[str, dict[str, Any]] = {
    **{
        f"warning: nodeSelector {label}": _pod("warn", nodeSelector={label: "x"})
        for label in (
            "beta.kubernetes.io/os",
            "beta.kubernetes.io/arch",
            "failure-domain.beta.kubernetes.io/zone",
            "failure-domain.beta.kubernetes.io/region",
            "beta.kubernetes.io/instance-type",
        )
    },
    "warning: seccomp pod annotation": _pod(
        "warn", annotations={"seccomp.security.alpha.kubernetes.io/pod": "runtime/default"}
    ),
    "warning: seccomp container annotation": _pod(
        "warn", annotations={"container.seccomp.security.alpha.kubernetes.io/c": "runtime/default"}
    ),
    "warning: nodeSelector, pod and container annotations together": _pod(
        "warn",
        nodeSelector={"beta.kubernetes.io/os": "linux"},
        annotations={
            "seccomp.security.alpha.kubernetes.io/pod": "runtime/default",
            "container.seccomp.security.alpha.kubernetes.io/c": "runtime/default",
        },
    ),
    "warning: none for kubernetes.io/os": _pod("warn", nodeSelector={"kubernetes.io/os": "linux"}),
}


def _token_body(
    *, audiences: Sequence[str] | None = None, seconds: int | None = None, pod: Any = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if audiences is not None:
        spec["audiences"] = list(audiences)
    if seconds is not None:
        spec["expirationSeconds"] = seconds
    if pod is not None:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", **pod}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


def _wait_scheduled(side: Side, core: Any, name: str) -> dict[str, Any]:
    """The pod once it is Running (the kubelet stand-in wrote its tokens) and bound to
    the node, so both labs are read in the same state. A pod Running without a node
    is returned after :data:`BIND_GRACE_S`: the comparison reports the missing binding."""
    deadline = time.monotonic() + SCHEDULE_TIMEOUT_S
    running_since: float | None = None
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        got = side.call(core.read_namespaced_pod, name, C.NAMESPACE)
        pod = got.body if isinstance(got.body, dict) else {}
        if (pod.get("status") or {}).get("phase") == "Running":
            running_since = running_since or time.monotonic()
            bound = bool((pod.get("spec") or {}).get("nodeName"))
            if bound or time.monotonic() - running_since > BIND_GRACE_S:
                return pod
        time.sleep(0.1)
    raise RuntimeError(
        f"{side.label}: pod {name} was not Running within {SCHEDULE_TIMEOUT_S:.0f} s "
        f"(last seen: {json.dumps(pod)[:300]})"
    )


def observe(side: Side) -> dict[str, Exchange]:
    """Send ``side`` the suite's script; every answer, keyed by case name.

    The order matters (the pods exist before tokens are bound to them), and is the
    same for both labs.
    """
    from kubernetes import client

    core = client.CoreV1Api(side.api)
    admission = client.AdmissionregistrationV1Api(side.api)
    ns, sa = C.NAMESPACE, C.SERVICE_ACCOUNT
    seen: dict[str, Exchange] = {}
    manifest = yaml.safe_load(POD_MANIFEST.read_text())

    # The article's pod, through each lab's webhook; and a pod of another ServiceAccount.
    seen["pod create response"] = side.call(core.create_namespaced_pod, ns, manifest)
    side.call(core.create_namespaced_pod, ns, _pod("other"))
    pod = _wait_scheduled(side, core, manifest["metadata"]["name"])
    _wait_scheduled(side, core, "other")
    seen["pod as stored"] = side.call(core.read_namespaced_pod, C.POD_NAME, ns)
    ref = {"name": C.POD_NAME, "uid": pod["metadata"]["uid"]}

    def token(case: str, body: dict[str, Any], name: str = sa) -> None:
        seen[case] = side.call(core.create_namespaced_service_account_token, name, ns, body)

    token("TokenRequest sts 86400", _token_body(audiences=[C.DEFAULT_AUDIENCE], seconds=86400))
    token(
        "TokenRequest sts 86400 bound to the pod",
        _token_body(audiences=[C.DEFAULT_AUDIENCE], seconds=86400, pod=ref),
    )
    token("TokenRequest 3607 bound, API audiences (extended)", _token_body(seconds=3607, pod=ref))
    token("TokenRequest 3607 unbound (not extended)", _token_body(seconds=3607))
    token(
        "TokenRequest 3607 bound, sts audience (not extended)",
        _token_body(audiences=[C.DEFAULT_AUDIENCE], seconds=3607, pod=ref),
    )
    token("TokenRequest with an empty spec (defaults)", {"spec": {}})
    token("422 TokenRequest expirationSeconds 599", _token_body(seconds=599))
    token(
        "422 TokenRequest expirationSeconds 10",
        _token_body(audiences=[C.DEFAULT_AUDIENCE], seconds=10),
    )
    token("422 TokenRequest expirationSeconds 2^32+1", _token_body(seconds=2**32 + 1))
    token(
        "422 TokenRequest metadata.name mismatch",
        {"metadata": {"name": "someone-else"}, "spec": {}},
    )
    token("404 TokenRequest for a missing ServiceAccount", {"spec": {}}, name="nope")
    token("404 TokenRequest bound to a missing pod", _token_body(pod={"name": "ghost"}))
    token(
        "400 TokenRequest bound to a pod of another ServiceAccount",
        _token_body(pod={"name": "other"}),
    )
    token(
        "409 TokenRequest bound with a stale pod uid",
        _token_body(pod={"name": C.POD_NAME, "uid": "00000000-0000-4000-8000-000000000000"}),
    )

    seen["discovery document (API server path)"] = side.https("/.well-known/openid-configuration")
    seen["JWKS (API server path)"] = side.https("/openid/v1/jwks")
    issuer_host = str(side.endpoints["oidc"])
    discovery = side.https("/.well-known/openid-configuration", base=issuer_host)
    seen["discovery document (the issuer host STS fetches)"] = discovery
    jwks_uri = (
        str((discovery.body or {}).get("jwks_uri", "")) if isinstance(discovery.body, dict) else ""
    )
    # The document names the public issuer's URL; the lab serves it at its oidc address.
    jwks_path = jwks_uri.removeprefix(side.issuer) if jwks_uri.startswith(side.issuer) else ""
    if jwks_uri.startswith(str(side.endpoints["apiserver"])):
        jwks_path = jwks_uri.removeprefix(str(side.endpoints["apiserver"]))
    seen["JWKS (the issuer host STS fetches)"] = side.https(jwks_path, base=issuer_host)

    pods = f"/api/v1/namespaces/{ns}/pods"
    seen["401 bad bearer token"] = side.https(pods, {"Authorization": "Bearer nope"})
    seen["403 anonymous list pods"] = side.https(pods)
    seen["403 pod with a missing ServiceAccount"] = side.call(
        core.create_namespaced_pod, ns, _pod("nosa", serviceAccountName="nope")
    )
    seen["404 missing pod"] = side.call(core.read_namespaced_pod, "missing", ns)
    seen["404 missing ServiceAccount"] = side.call(
        core.read_namespaced_service_account, "missing", ns
    )
    seen["409 existing ServiceAccount"] = side.call(
        core.create_namespaced_service_account, ns, {"metadata": {"name": sa}}
    )
    seen["409 existing pod"] = side.call(core.create_namespaced_pod, ns, manifest)
    seen["422 pod without containers"] = side.call(
        core.create_namespaced_pod, ns, {"metadata": {"name": "bad"}, "spec": {"containers": []}}
    )
    seen["422 pod with a 300 s token projection"] = side.call(
        core.create_namespaced_pod,
        ns,
        _pod(
            "p300",
            volumes=[
                {
                    "name": "t",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"path": "token", "expirationSeconds": 300}}
                        ]
                    },
                }
            ],
        ),
    )
    seen["422 pod with an invalid name"] = side.call(
        core.create_namespaced_pod, ns, _pod("Bad_Name")
    )

    for case, body in WARNING_PODS.items():
        seen[case] = side.call(core.create_namespaced_pod, ns, body, dry_run="All")

    seen["ServiceAccount as stored"] = side.call(core.read_namespaced_service_account, sa, ns)
    seen["MutatingWebhookConfiguration create response (defaults)"] = side.call(
        admission.create_mutating_webhook_configuration, _probe_webhook_configuration()
    )
    seen["MutatingWebhookConfiguration as stored (defaults)"] = side.call(
        admission.read_mutating_webhook_configuration, PROBE_WEBHOOK_CONFIG
    )

    seen["kubectl describe sa s3-readonly-sa"] = side.run_kubectl("describe", "sa", sa)
    seen["kubectl describe mutatingwebhookconfiguration pod-identity-webhook"] = side.run_kubectl(
        "describe", "mutatingwebhookconfiguration", C.WEBHOOK_CONFIG_NAME
    )
    seen[f"kubectl describe mutatingwebhookconfiguration {PROBE_WEBHOOK_CONFIG}"] = (
        side.run_kubectl("describe", "mutatingwebhookconfiguration", PROBE_WEBHOOK_CONFIG)
    )
    seen["kubectl get pod mypod -o yaml"] = side.run_kubectl("get", "pod", C.POD_NAME, "-o", "yaml")
    seen["kubectl create token (protobuf request)"] = side.run_kubectl(
        "create", "token", sa, "--audience", C.DEFAULT_AUDIENCE
    )
    side.call(admission.delete_mutating_webhook_configuration, PROBE_WEBHOOK_CONFIG)
    return seen


# --- comparing two observations ------------------------------------------------------------


def _decode_jws(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from ..kube.tokens import decode_unverified

    return decode_unverified(token)


def _kids(jwks: Exchange) -> list[str]:
    body = jwks.body if isinstance(jwks.body, dict) else {}
    return [str(k.get("kid")) for k in body.get("keys") or [] if isinstance(k, dict)]


def _headers(
    ex: Exchange, names: Sequence[str] = ("content-type", "cache-control")
) -> dict[str, str]:
    return {n: ex.headers.get(n, _ABSENT) for n in names}


def _token_response(body: Any) -> Any:
    """A TokenRequest answer with ``status.expirationTimestamp`` made relative to the
    ``creationTimestamp`` (the rule: now + spec.expirationSeconds, never the JWT exp)."""
    from datetime import datetime

    if not isinstance(body, dict):
        return body
    out = json.loads(json.dumps(body))
    try:
        created = datetime.fromisoformat(
            out["metadata"]["creationTimestamp"].replace("Z", "+00:00")
        )
        expires = datetime.fromisoformat(
            out["status"]["expirationTimestamp"].replace("Z", "+00:00")
        )
        out["status"]["expirationTimestamp"] = (
            f"creationTimestamp{int((expires - created).total_seconds()):+d}s"
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        pass
    return out


def _status_view(ex: Exchange, issuer: str) -> dict[str, Any]:
    body = ex.body
    return {
        "code": ex.status,
        "headers": _headers(ex),
        # The real server writes compact JSON; so should the stand-in.
        "compact JSON": bool(ex.raw)
        and isinstance(body, dict)
        and ex.raw.strip() == json.dumps(body, separators=(",", ":"), ensure_ascii=False),
        "body": mask(body, issuer=issuer),
    }


def _loose_status(status: Any) -> dict[str, Any]:
    """What is compared of a pod's status: its shape, not kubelet timing."""
    if not isinstance(status, dict):
        return {"status": _type(status)}
    containers = status.get("containerStatuses") or []
    return {
        "fields": sorted(status),
        "phase": status.get("phase"),
        "qosClass": status.get("qosClass"),
        "condition types": [c.get("type") for c in status.get("conditions") or []],
        "condition status": [c.get("status") for c in status.get("conditions") or []],
        "containerStatuses fields": [sorted(c) for c in containers],
        "container states": [sorted(c.get("state") or {}) for c in containers],
        "hostIP": status.get("hostIP"),
        "podIP": status.get("podIP"),
    }


def _pod_view(ex: Exchange, issuer: str) -> dict[str, Any]:
    body = ex.body if isinstance(ex.body, dict) else {}
    return {
        "code": ex.status,
        "headers": _headers(ex),
        "kind": body.get("kind"),
        "apiVersion": body.get("apiVersion"),
        "metadata": mask(body.get("metadata"), issuer=issuer),
        "spec": mask(body.get("spec"), issuer=issuer),
        "status": _loose_status(body.get("status")),
    }


def _discovery_view(ex: Exchange, issuer: str, apiserver: str) -> dict[str, Any]:
    body = ex.body
    if isinstance(body, dict):
        values = {
            k: (
                "<apiserver>" + v[len(apiserver) :]
                if isinstance(v, str) and apiserver and v.startswith(apiserver)
                else v
            )
            for k, v in body.items()
        }
        values = mask(values, issuer=issuer)
        return {
            "code": ex.status,
            "headers": _headers(ex),
            "body": {
                "keys": list(body),
                "types": {k: _type(v) for k, v in body.items()},
                "values": values,
            },
        }
    return {"code": ex.status, "headers": _headers(ex), "body": _short(body)}


def compare(
    standin: Side, real: Side, mine: Mapping[str, Exchange], theirs: Mapping[str, Exchange]
) -> tuple[int, list[Difference]]:
    """Compare two observations of :func:`observe`; returns (cases compared, differences)."""
    si, ri = standin.issuer, real.issuer
    diffs: list[Difference] = []
    cases = 0

    def count(case: str, found: list[Difference]) -> None:
        nonlocal cases
        cases += 1
        diffs.extend(found)

    my_kids = _kids(mine["JWKS (API server path)"])
    their_kids = _kids(theirs["JWKS (API server path)"])

    for case in mine:
        a, b = mine[case], theirs[case]
        if case.startswith("TokenRequest") or case.startswith("kubectl create token"):
            if case.startswith("kubectl"):
                tok_a, tok_b = str(a.body).strip(), str(b.body).strip()
                count(case, compare_json(case, a.status, b.status, "exit code"))
            else:
                view_a = {
                    "code": a.status,
                    "headers": _headers(a),
                    "body": mask(_token_response(a.body), issuer=si),
                }
                view_b = {
                    "code": b.status,
                    "headers": _headers(b),
                    "body": mask(_token_response(b.body), issuer=ri),
                }
                count(f"{case}: response", compare_json(case, view_a, view_b))
                tok_a = (
                    str(((a.body or {}).get("status") or {}).get("token", ""))
                    if isinstance(a.body, dict)
                    else ""
                )
                tok_b = (
                    str(((b.body or {}).get("status") or {}).get("token", ""))
                    if isinstance(b.body, dict)
                    else ""
                )
            try:
                head_a, claims_a = _decode_jws(tok_a)
                head_b, claims_b = _decode_jws(tok_b)
            except ValueError as exc:
                count(
                    f"{case}: JWT",
                    [Difference(case, "JWT", _short(tok_a), f"{_short(tok_b)} ({exc})")],
                )
                continue
            count(
                f"{case}: JWT header",
                compare_jose_header(
                    case, head_a, head_b, standin_kids=my_kids, real_kids=their_kids
                ),
            )
            count(
                f"{case}: claims",
                compare_claims(case, claims_a, claims_b, standin_issuer=si, real_issuer=ri),
            )
        elif case.startswith(("discovery", "JWKS")):
            count(
                case,
                compare_json(
                    case,
                    _discovery_view(a, si, str(standin.endpoints["apiserver"])),
                    _discovery_view(b, ri, str(real.endpoints["apiserver"])),
                ),
            )
            if (
                case.startswith("discovery")
                and isinstance(a.body, dict)
                and isinstance(b.body, dict)
            ):
                # The API server's field order is part of the document's shape (§2.2).
                count(
                    f"{case}: field order",
                    compare_key_order(case, a.body, b.body, [""], "field order"),
                )
        elif case[:3].isdigit():
            count(case, compare_json(case, _status_view(a, si), _status_view(b, ri)))
        elif case.startswith("warning"):
            view_a = {"code": a.status, "warnings": parse_warnings(a.headers.get("warning"))}
            view_b = {"code": b.status, "warnings": parse_warnings(b.headers.get("warning"))}
            count(case, compare_json(case, view_a, view_b))
        elif case.startswith("pod"):
            count(case, compare_json(case, _pod_view(a, si), _pod_view(b, ri)))
            if isinstance(a.body, dict) and isinstance(b.body, dict):
                paths = ["", "metadata", "spec", "spec.containers.0", "status"]
                count(f"{case}: JSON key order", compare_key_order(case, a.body, b.body, paths))
        elif case.startswith("kubectl"):
            text_a = mask_text(str(a.body or ""), issuer=si)
            text_b = mask_text(str(b.body or ""), issuer=ri)
            found = compare_json(case, a.status, b.status, "exit code")
            if a.status == b.status == 0:
                found += compare_lines(case, text_a, text_b)
            else:
                found += compare_json(case, a.raw, b.raw, "stderr")
            count(case, found)
        else:  # objects read back: ServiceAccount, MutatingWebhookConfiguration
            view_a = {"code": a.status, "headers": _headers(a), "body": mask(a.body, issuer=si)}
            view_b = {"code": b.status, "headers": _headers(b), "body": mask(b.body, issuer=ri)}
            count(case, compare_json(case, view_a, view_b))
    return cases, diffs


# --- the suite ---------------------------------------------------------------------------------


def _side(label: str, state: Path, kubectl: Path, stack: ExitStack) -> Side:
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


def run() -> SuiteResult:
    """Compare the embedded API server with the real kube-apiserver (module docstring).

    Raises ``RuntimeError`` when a real program is not built (``make k8s-bin``); both
    labs are stopped and their temporary folders removed when it returns or raises.
    """
    from ..backends.k8s import K8sLab
    from ..stack import EmbeddedLab

    absent = binaries.missing()
    if absent:
        raise RuntimeError(f"{', '.join(absent)} not built: run `{binaries.GET_COMMAND}`")
    kubectl = binaries.find("kubectl")
    assert kubectl is not None
    result = SuiteResult(
        name="apiserver",
        title="Kubernetes API server",
        standin="irsa_lab.kube.apiserver (embedded stand-in)",
        real=f"kube-apiserver {binaries.KUBERNETES_VERSION} (k8s backend)",
    )
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="irsa-lab-apiserver-fidelity-"))
    try:
        with ExitStack() as stack:
            real_lab = K8sLab(state_dir=tmp / "real")
            stack.enter_context(real_lab)
            embedded = EmbeddedLab(state_dir=tmp / "standin", seed=SEED)
            stack.enter_context(embedded)
            real = _side("real", tmp / "real", kubectl.path, stack)
            standin = _side("standin", tmp / "standin", kubectl.path, stack)
            theirs = observe(real)
            mine = observe(standin)
        cases, diffs = compare(standin, real, mine, theirs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
