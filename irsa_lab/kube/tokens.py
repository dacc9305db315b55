"""The service-account token issuer: JWTs shaped exactly as a kube-apiserver signs them.

docs/reference/kubernetes.md §1.2 and §1.3. A token is a compact JWS, RS256, header
``{"alg":"RS256","kid":...}`` (no ``typ``), claims with their keys sorted because the
API server's JOSE library merges public and private claims into one map before
encoding it. Clock, ids (for ``jti``) and the key are injected, so a seeded lab signs
byte-identical tokens on every run (RSASSA-PKCS1-v1_5 signatures are deterministic).

The issuer does not validate requests: the API server stand-in does (§1.1), using
:func:`expiration_problem` for the exact wording of the expiration bounds. The compact
JWS itself (base64url, Go's JSON, the RS256 signature) is :mod:`irsa_lab.jose`'s;
this module holds what is Kubernetes': the claims, the expiration rules, the keys
the issuer publishes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..constants import (
    REGION,
    SA_TOKEN_MAX_EXPIRATION_S,
    SA_TOKEN_MIN_EXPIRATION_S,
)
from ..ids import Ids
from ..jose import go_json, sign_compact
from ..pki import SigningKey

__all__ = [
    "DEFAULT_API_AUDIENCES",
    "EXTENDED_EXPIRATION_S",
    "EXTENDED_TRIGGER_S",
    "IssuedToken",
    "TokenIssuer",
    "eks_issuer",
    "expiration_problem",
    "validate_expiration",
]

# The API audiences when none are configured; a real server defaults them to its
# issuer list, the lab names the in-cluster service URL as kubeadm clusters see it.
DEFAULT_API_AUDIENCES: tuple[str, ...] = ("https://kubernetes.default.svc",)
# The ServiceAccount admission plugin asks for 60*60+7 s in kube-api-access-* volumes;
# a pod-bound request for exactly that gets a one-year token (§1.3).
EXTENDED_TRIGGER_S = 3607
EXTENDED_EXPIRATION_S = 24 * 365 * 3600


def eks_issuer(ids: Ids, region: str = REGION) -> str:
    """An EKS-shaped issuer URL: ``https://oidc.eks.<region>.amazonaws.com/id/<32 HEX>``.

    EKS cluster OIDC ids are 32 uppercase hex characters.
    """
    return f"https://oidc.eks.{region}.amazonaws.com/id/{ids.hex(32)}"


def expiration_problem(seconds: int) -> str | None:
    """Why ``expirationSeconds`` is out of range, in the API server's words, else None."""
    if seconds < SA_TOKEN_MIN_EXPIRATION_S:
        return "may not specify a duration less than 10 minutes"
    if seconds > SA_TOKEN_MAX_EXPIRATION_S:
        return "may not specify a duration larger than 2^32 seconds"
    return None


def validate_expiration(seconds: int) -> str | None:
    """The API server's 422 message for an out-of-range ``expirationSeconds``, else None.

    The object name is empty in the real message (the request has none yet).
    """
    reason = expiration_problem(seconds)
    if reason is None:
        return None
    return (
        'TokenRequest.authentication.k8s.io "" is invalid: '
        f"spec.expirationSeconds: Invalid value: {seconds}: {reason}"
    )


def _ref(name: str, uid: str) -> dict[str, str]:
    # Empty fields are omitted (omitempty), e.g. a node the server could not look up.
    out = {"name": name}
    if uid:
        out["uid"] = uid
    return out


@dataclass(frozen=True)
class IssuedToken:
    """One signed token with its decoded parts; ``expiration`` is the JWT ``exp``."""

    token: str
    claims: dict[str, Any]
    header: dict[str, str]
    expiration: float

    @property
    def issued_at(self) -> float:
        """The ``iat`` claim (equal to ``nbf``)."""
        return float(self.claims["iat"])

    @property
    def extended(self) -> bool:
        """True when the 3607-second rule gave this token a one-year ``exp``."""
        return "warnafter" in self.claims.get("kubernetes.io", {})


class TokenIssuer:
    """Signs service-account tokens and publishes the matching discovery documents."""

    def __init__(
        self,
        issuer: str,
        key: SigningKey,
        *,
        clock: Clock,
        ids: Ids,
        api_audiences: Sequence[str] = DEFAULT_API_AUDIENCES,
        jwks_uri: str | None = None,
    ) -> None:
        self.issuer = issuer
        self.key = key
        self.api_audiences: tuple[str, ...] = tuple(api_audiences)
        self.jwks_uri = jwks_uri
        self._clock = clock
        self._ids = ids
        self._retired: list[SigningKey] = []
        self._lock = threading.Lock()

    validate_expiration = staticmethod(validate_expiration)

    def issue(
        self,
        *,
        namespace: str,
        service_account: tuple[str, str],
        audiences: Sequence[str],
        expiration_seconds: int,
        pod: tuple[str, str] | None = None,
        node: tuple[str, str] | None = None,
    ) -> IssuedToken:
        """Sign a token for ``service_account`` = (name, uid) in ``namespace``.

        ``pod`` and ``node`` are (name, uid) pairs of the bound objects; an empty
        ``audiences`` means the API audiences. Callers validate the request first.
        """
        auds = list(audiences) if audiences else list(self.api_audiences)
        # NumericDate truncates to whole seconds.
        now = int(self._clock.now())
        kube: dict[str, Any] = {
            "namespace": namespace,
            "serviceaccount": _ref(*service_account),
        }
        if pod is not None:
            kube["pod"] = _ref(*pod)
        # The node rides along with a pod binding when the pod has one, or is the
        # binding itself for node-bound tokens.
        if node is not None:
            kube["node"] = _ref(*node)
        exp = now + expiration_seconds
        # §1.3: the extension applies to pod-bound requests for exactly 3607 s whose
        # audiences are all API audiences; the server still reports now+3607 in
        # status.expirationTimestamp, so kubelets keep refreshing hourly.
        if (
            pod is not None
            and expiration_seconds == EXTENDED_TRIGGER_S
            and all(a in self.api_audiences for a in auds)
        ):
            exp = now + EXTENDED_EXPIRATION_S
            kube["warnafter"] = now + EXTENDED_TRIGGER_S
        claims: dict[str, Any] = {
            "aud": auds,
            "exp": exp,
            "iat": now,
            "iss": self.issuer,
            "jti": self._ids.uuid4(),
            "kubernetes.io": kube,
            "nbf": now,
            "sub": f"system:serviceaccount:{namespace}:{service_account[0]}",
        }
        with self._lock:
            key = self.key
        header = {"alg": "RS256", "kid": key.kid}
        # The header is a Go struct (alg, kid in that order); the claims a Go map
        # (keys sorted at every level).
        token = sign_compact(
            header,
            claims,
            key.private_key,
            encode_header=go_json,
            encode_claims=functools.partial(go_json, sort_keys=True),
        )
        return IssuedToken(token, claims, header, float(exp))

    def keys(self) -> list[SigningKey]:
        """The verification keys: the signing key first, then retired keys still trusted."""
        with self._lock:
            return [self.key, *self._retired]

    def rotate(self, new_key: SigningKey, keep_old: bool = True) -> None:
        """Sign with ``new_key`` from now on; keep the old key in the JWKS when ``keep_old``.

        Keeping it is what an operator does during a rotation, so tokens already
        handed out keep verifying until they expire.
        """
        with self._lock:
            old = self.key
            self.key = new_key
            retired = [k for k in self._retired if k.kid != new_key.kid]
            if keep_old and old.kid != new_key.kid:
                retired.insert(0, old)
            self._retired = retired

    def discovery_document(self, jwks_uri: str | None = None) -> dict[str, Any]:
        """The API server's ``/.well-known/openid-configuration`` body (§2.2, field order kept)."""
        uri = jwks_uri or self.jwks_uri or f"{self.issuer}/openid/v1/jwks"
        return {
            "issuer": self.issuer,
            "jwks_uri": uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": self.signing_algorithms(),
        }

    def signing_algorithms(self) -> list[str]:
        """Algorithms of the published keys, sorted and de-duplicated (all RSA: RS256)."""
        return sorted({k.public_jwk()["alg"] for k in self.keys()})

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS body: one entry per verification key, in the API server's field order."""
        return {"keys": [k.public_jwk() for k in self.keys()]}
