"""The API server suite's known differences, and why each is acceptable for teaching.

Why: a difference :data:`ACCEPTED` does not match is a defect of the stand-in; one it
matches carries its reason into ``docs/fidelity.md``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .apiserver_diff import ABSENT
from .report import Difference

__all__ = ["ACCEPTED", "Acceptance", "accept"]


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
        standin=ABSENT,
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
