"""How STS gets an issuer's signing keys: OIDC discovery, then the JWKS.

For a token whose ``iss`` is ``https://oidc.eks.eu-west-1.amazonaws.com/id/ABC``,
STS reads ``<iss>/.well-known/openid-configuration``, checks that the document
names the same ``issuer``, follows its ``jwks_uri`` and keeps the keys, by ``kid``,
for a while (docs/reference/sts.md §2.1, §2.2 step 5). An unknown ``kid`` triggers one
re-download, which is how a key rotation becomes visible.

The lab's issuer host listens on 127.0.0.1, not on ``oidc.eks...``: ``resolve`` maps
the scheme and host of an issuer to the local URL that stands for it, the way a
DNS entry would. TLS is always verified, against the lab CA. Nothing outside
loopback is ever contacted.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import KW_ONLY, dataclass, field
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from jwt.algorithms import ECAlgorithm, RSAAlgorithm

if TYPE_CHECKING:
    import aiohttp

from ..client_http import aiohttp_module
from ..clock import Clock
from ..constants import STS_USER_AGENT
from ..trace import Trace
from .errors import AwsError

__all__ = [
    "CERTIFICATE_MESSAGE",
    "IDP_UNREACHABLE_MESSAGE",
    "MAX_KEYS_PER_TYPE",
    "OidcKeyFetcher",
    "PublicKey",
    "idp_unreachable",
    "parse_jwks",
]

# [O] Note the two spaces after the comma: that is how STS sends it.
IDP_UNREACHABLE_MESSAGE = (
    "Couldn't retrieve verification key from your identity provider,  "
    "please reference AssumeRoleWithWebIdentity documentation for requirements"
)
CERTIFICATE_MESSAGE = (
    "OpenIDConnect provider's HTTPS certificate doesn't match configured thumbprint"
)
MAX_KEYS_PER_TYPE = 100  # IAM: at most 100 RSA and 100 EC keys in a JWKS
MAX_DOCUMENT_BYTES = 1 << 20
DISCOVERY_PATH = "/.well-known/openid-configuration"

PublicKey = Any  # an RSA or EC public key from ``cryptography``


def idp_unreachable(why: str, **detail: Any) -> AwsError:
    """The error STS answers when discovery or JWKS cannot be read.

    Sent as ``IDPCommunicationError`` (400), which botocore retries (3 requests in
    all); real STS has also been seen sending the same text as
    ``InvalidIdentityToken`` (docs/reference/sts.md §2.4). The lab follows the model.
    """
    return AwsError(
        "IDPCommunicationError",
        IDP_UNREACHABLE_MESSAGE,
        400,
        explanation=why,
        detail={"reason": why, **detail},
    )


def parse_jwks(document: Any) -> dict[str, PublicKey]:
    """Usable public keys of a JWKS document, by ``kid`` (``""`` for a key without one).

    Keys that are not RSA or EC signing keys, or that do not parse, are skipped;
    at most :data:`MAX_KEYS_PER_TYPE` of each type are kept.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the JWKS has no 'keys' list")
    out: dict[str, PublicKey] = {}
    counts = {"RSA": 0, "EC": 0}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
            continue
        kty = jwk.get("kty")
        if kty not in counts or counts[kty] >= MAX_KEYS_PER_TYPE:
            continue
        key: Any
        try:
            if kty == "RSA":
                key = RSAAlgorithm.from_jwk(jwk)
            else:
                key = ECAlgorithm.from_jwk(jwk)
        except Exception:  # noqa: S112 - a malformed key is skipped, like any IdP client does
            continue
        if hasattr(key, "private_bytes"):  # never accept private material as a public key
            key = key.public_key()
        counts[kty] += 1
        kid = jwk.get("kid", "")
        out.setdefault(kid if isinstance(kid, str) else str(kid), key)
    if not out:
        raise ValueError("the JWKS holds no usable signing key")
    return out


@dataclass
class _Cached:
    fetched_at: float
    keys: dict[str, PublicKey]


@dataclass(eq=False)
class OidcKeyFetcher:
    """Fetches and caches issuers' JWKS over HTTPS, as STS does (and EKS Auth, with a
    cache of its own: ``who`` names the fetching service in the trace).

    ``resolve`` maps ``scheme://host[:port]`` of an issuer, or a whole issuer URL, to a
    local base URL (``{"https://oidc.eks.eu-west-1.amazonaws.com": "https://127.0.0.1:43123"}``).
    An issuer with no mapping is fetched as-is only when it is on loopback.
    ``ssl_context`` must trust the lab CA; ``ttl`` (seconds of ``clock``) bounds
    how long keys are reused; ``timeout`` bounds each request.
    """

    resolve: dict[str, str]
    ssl_context: Any
    clock: Clock
    trace: Trace
    _: KW_ONLY
    ttl: float = 3600.0
    timeout: float = 2.0
    who: str = "sts"  # the service that fetches, as the trace names it (STS, EKS Auth)
    _cache: dict[str, _Cached] = field(default_factory=dict, init=False, repr=False)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.resolve = dict(self.resolve)  # a copy: the caller's mapping may change

    # -- public ---------------------------------------------------------------------
    def invalidate(self, issuer: str | None = None) -> None:
        """Forget cached keys (of one issuer, or all): the next token re-downloads them."""
        if issuer is None:
            self._cache.clear()
        else:
            self._cache.pop(issuer, None)

    def cached(self, issuer: str) -> dict[str, PublicKey] | None:
        """The keys held for ``issuer`` right now, without fetching."""
        entry = self._cache.get(issuer)
        return None if entry is None else dict(entry.keys)

    async def keys(self, issuer: str, kid: str | None = None) -> dict[str, PublicKey]:
        """The issuer's public keys by ``kid``, from cache or freshly downloaded.

        When ``kid`` is given and not among cached keys, the JWKS is downloaded
        again once (a rotated key). Raises :class:`AwsError` (IDPCommunicationError,
        or InvalidIdentityToken for an untrusted certificate).
        """
        lock = self._locks.setdefault(issuer, asyncio.Lock())
        async with lock:
            entry = self._cache.get(issuer)
            now = self.clock.now()
            fresh = entry is not None and now - entry.fetched_at < self.ttl
            if entry is not None and fresh and (kid is None or kid in entry.keys):
                return dict(entry.keys)
            keys = await self._download(issuer)
            self._cache[issuer] = _Cached(self.clock.now(), keys)
            return dict(keys)

    # -- internals ------------------------------------------------------------------
    def local_url(self, url: str) -> str:
        """``url`` with the longest matching ``resolve`` prefix replaced.

        A ``resolve`` key is an origin (``https://oidc.eks.eu-west-1.amazonaws.com``) or
        a whole issuer URL with its path (``https://oidc.eks.../id/ABC``, as a real
        API server's discovery document lives at its root, not under the issuer's
        path); it matches ``url`` itself or ``url`` followed by ``/``. Raises
        IDPCommunicationError, without any network attempt, for a URL that is neither
        mapped nor on loopback, or that is not HTTPS.
        """
        parts = urlsplit(url)
        base = f"{parts.scheme}://{parts.netloc}"
        out = None
        for prefix in sorted(self.resolve, key=len, reverse=True):
            p = prefix.rstrip("/")
            if url == p or url.startswith(p + "/"):
                out = self.resolve[prefix].rstrip("/") + url[len(p) :]
                break
        if out is None:
            if not _is_loopback(parts.hostname):
                raise idp_unreachable(
                    f"{base} is not reachable from this lab (no mapping to a local server)",
                    url=url,
                )
            out = url
        if urlsplit(out).scheme != "https":
            raise idp_unreachable(
                f"{url} is not an HTTPS URL; STS only fetches over HTTPS", url=url
            )
        return out

    async def _download(self, issuer: str) -> dict[str, PublicKey]:
        aiohttp = aiohttp_module()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(ssl=self.ssl_context, force_close=True)
        # The OIDC host names the caller by its User-Agent (kube/oidc.py: KNOWN_USER_AGENTS).
        agent = STS_USER_AGENT if self.who == "sts" else f"irsa-lab-{self.who}"
        headers = {"User-Agent": agent}
        async with aiohttp.ClientSession(
            timeout=timeout, connector=connector, headers=headers
        ) as session:
            discovery_url = issuer.rstrip("/") + DISCOVERY_PATH
            doc = await self._get_json(session, discovery_url, "GET openid-configuration")
            if not isinstance(doc, dict):
                raise self._bad(discovery_url, "openid-configuration", "not a JSON object")
            if doc.get("issuer") != issuer:
                raise self._bad(
                    discovery_url,
                    "openid-configuration",
                    f"the document's issuer {doc.get('issuer')!r} is not the token's iss "
                    f"{issuer!r}",
                )
            jwks_uri = doc.get("jwks_uri")
            if not isinstance(jwks_uri, str) or not jwks_uri:
                raise self._bad(discovery_url, "openid-configuration", "no jwks_uri")
            jwks = await self._get_json(session, jwks_uri, "GET jwks")
            try:
                keys = parse_jwks(jwks)
            except ValueError as exc:
                raise self._bad(jwks_uri, "jwks", str(exc)) from None
            self.trace.record(self.who, "oidc", "JWKS keys", kids=sorted(keys))
            return keys

    def _bad(self, url: str, what: str, why: str) -> AwsError:
        self.trace.record(
            self.who, "oidc", f"check {what}", "IDPCommunicationError", url=url, reason=why
        )
        return idp_unreachable(f"{what} at {url}: {why}", url=url)

    async def _get_json(self, session: aiohttp.ClientSession, url: str, call: str) -> Any:
        aiohttp = aiohttp_module()
        local = self.local_url(url)
        started = time.perf_counter()

        def record(outcome: str, **detail: Any) -> None:
            ms = (time.perf_counter() - started) * 1000
            self.trace.record(self.who, "oidc", call, outcome, duration_ms=ms, url=url, **detail)

        try:
            async with session.get(local, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_DOCUMENT_BYTES + 1)
                status = resp.status
        except aiohttp.ClientConnectorCertificateError as exc:
            record("InvalidIdentityToken", reason="certificate not trusted")
            raise AwsError(
                "InvalidIdentityToken",
                CERTIFICATE_MESSAGE,
                400,
                explanation=f"the TLS certificate of {url} is not trusted: {exc.certificate_error}",
                detail={"url": url},
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            why = type(exc).__name__ if isinstance(exc, TimeoutError) else str(exc)
            record("IDPCommunicationError", reason=why or type(exc).__name__)
            raise idp_unreachable(f"{url} could not be reached: {why}", url=url) from None
        if status != 200:
            record("IDPCommunicationError", status=status)
            raise idp_unreachable(f"{url} answered HTTP {status}", url=url, status=status)
        if len(raw) > MAX_DOCUMENT_BYTES:
            record("IDPCommunicationError", reason="document too large")
            raise idp_unreachable(f"{url} sent more than {MAX_DOCUMENT_BYTES} bytes", url=url)
        try:
            doc = json.loads(raw)
        except ValueError:
            record("IDPCommunicationError", reason="not JSON")
            raise idp_unreachable(f"{url} did not send JSON", url=url) from None
        record("ok", status=status)
        return doc


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
