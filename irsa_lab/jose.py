"""Compact JWS and base64url (RFC 7515, RFC 4648 §5), and the algorithms STS accepts.

One place for what a JWT looks like on the wire: :func:`parse_compact` splits a token
into its header, claims and signature; :func:`verify` checks the signature with a
public key; :func:`sign_compact` builds one, its segments written by
:func:`compact_json` or, for tokens byte-identical to a Go server's, :func:`go_json`.
The cryptography is PyJWT's (its ``jwt.algorithms`` objects); what is added here is
the strictness STS shows (base64url without padding or stray characters, JSON objects
only) and the list of algorithms it accepts for web identity tokens.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import get_default_algorithms

__all__ = [
    "ALGORITHMS",
    "CompactJws",
    "JoseError",
    "b64url_decode",
    "b64url_encode",
    "compact_json",
    "decode_unverified",
    "go_json",
    "key_fits",
    "parse_compact",
    "sign_compact",
    "signature",
    "verify",
]

# The signature algorithms STS accepts for web identity tokens (docs/reference/sts.md §2.2).
ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512")
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}
_PYJWT = get_default_algorithms()
_B64URL = re.compile(r"[A-Za-z0-9_-]*")


class JoseError(ValueError):
    """Raised when a text is not a compact JWS: wrong number of parts, bad base64url, not JSON."""


def b64url_encode(data: bytes) -> str:
    """base64url without padding, as JWS segments are written."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(segment: str) -> bytes:
    """Decode a base64url segment; padding is optional, any other character is refused."""
    if not _B64URL.fullmatch(segment):
        raise JoseError("not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (ValueError, binascii.Error) as exc:
        raise JoseError(f"not base64url ({exc})") from None


@dataclass(frozen=True)
class CompactJws:
    """A compact JWS taken apart; ``segments`` are the three texts as they came."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signature: bytes
    segments: tuple[str, str, str]

    @property
    def signing_input(self) -> bytes:
        """``<header>.<payload>`` as ASCII: the bytes the signature covers."""
        return f"{self.segments[0]}.{self.segments[1]}".encode("ascii")

    @property
    def alg(self) -> Any:
        return self.header.get("alg")

    @property
    def kid(self) -> Any:
        return self.header.get("kid")


def parse_compact(token: str) -> CompactJws:
    """Split and decode a compact JWS without checking the signature.

    Raises :class:`JoseError` saying what is wrong: not three parts, a segment that
    is not base64url, a header or payload that is not a JSON object.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise JoseError(f"a JWT has three dot-separated parts; this has {len(parts)}")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, RecursionError):
        raise JoseError("the header, claims or signature is not base64url JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JoseError("the header and the claims must both be JSON objects")
    return CompactJws(header, claims, signature, (parts[0], parts[1], parts[2]))


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, without checking the signature (for display)."""
    jws = parse_compact(token.strip())
    return jws.header, jws.claims


def key_fits(alg: str, key: Any) -> bool:
    """Whether ``key`` is the kind of public key ``alg`` verifies with (RSA, or EC on its curve)."""
    if alg.startswith("RS"):
        return isinstance(key, rsa.RSAPublicKey)
    curve = _CURVES.get(alg)
    return (
        curve is not None
        and isinstance(key, ec.EllipticCurvePublicKey)
        and isinstance(key.curve, curve)
    )


def verify(jws: CompactJws, alg: str, key: Any) -> bool:
    """True when the signature verifies under ``key`` with ``alg`` (one of :data:`ALGORITHMS`).

    The algorithm is the token's, not the key's (docs/reference/sts.md §2.2 step 6); a key of
    the wrong type or curve, or a signature of the wrong size, simply does not verify.
    """
    if alg not in ALGORITHMS or not key_fits(alg, key):
        return False
    try:
        return bool(_PYJWT[alg].verify(jws.signing_input, key, jws.signature))
    except Exception:  # a malformed signature is just a signature that does not verify
        return False


def compact_json(obj: Mapping[str, Any]) -> bytes:
    """JSON without spaces, non-ASCII kept as UTF-8, keys in the order given."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# Go's encoding/json escapes these even inside strings (they can only occur in strings).
_GO_ESCAPES = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def go_json(obj: Mapping[str, Any], *, sort_keys: bool = False) -> bytes:
    """Compact JSON as Go's ``encoding/json`` writes it: no spaces, raw UTF-8, HTML-safe
    escapes; ``sort_keys`` for a Go map (sorted at every level), else a struct's order."""
    text = json.dumps(obj, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=False)
    for ch, esc in _GO_ESCAPES:
        text = text.replace(ch, esc)
    return text.encode("utf-8")


def signature(signing_input: bytes, key: Any, alg: str) -> bytes:
    """The signature of ``signing_input`` with ``key`` under ``alg`` (any PyJWT algorithm,
    ``none`` included: tests and lessons forge tokens with it)."""
    return b"" if alg == "none" else bytes(_PYJWT[alg].sign(signing_input, key))


Encoder = Callable[[Mapping[str, Any]], bytes]


def sign_compact(
    header: Mapping[str, Any],
    claims: Mapping[str, Any],
    key: Any,
    *,
    encode_header: Encoder = compact_json,
    encode_claims: Encoder = compact_json,
) -> str:
    """A compact JWS of ``claims`` signed with ``key`` under ``header["alg"]``; the two
    encoders write the header and the claims (:func:`compact_json` unless told)."""
    head, body = b64url_encode(encode_header(header)), b64url_encode(encode_claims(claims))
    sig = signature(f"{head}.{body}".encode("ascii"), key, str(header.get("alg")))
    return f"{head}.{body}.{b64url_encode(sig)}"
