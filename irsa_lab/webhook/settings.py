"""The webhook's settings, one field per upstream command-line flag (but one, the lab's).

Defaults are upstream's (docs/reference/webhook.md §4): a field named
``token_audience`` stands for ``--token-audience`` and so on. :meth:`WebhookSettings.lab`
gives the mutation settings the lab runs with, which are the ones EKS uses in the
article (region injected, regional STS endpoints on). The embedded stack adds a
ServiceAccount lookup grace period of :data:`LAB_LOOKUP_GRACE_PERIOD_S` with the lab's
consistent lookup (see :meth:`irsa_lab.webhook.service_account_cache.ServiceAccountCache.lookup`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .. import constants as C

__all__ = [
    "LAB_LOOKUP_GRACE_PERIOD_S",
    "ContainerCredentialsSettings",
    "WebhookSettings",
]

# The embedded stack's --service-account-lookup-grace-period, seconds. The wait ends as
# soon as the cache has what it waits for (a few milliseconds on loopback); the bound
# only matters when the watch is broken, and stays well inside the API server's 10 s
# webhook timeout, so such a pod is still answered (from what the cache holds).
LAB_LOOKUP_GRACE_PERIOD_S = 5.0


@dataclass(frozen=True)
class ContainerCredentialsSettings:
    """Pod Identity mode: the ``--container-credentials-*`` flags and the watched identities.

    ``identities`` holds the ``(namespace, serviceAccount)`` pairs of the watched config
    file; a pod whose pair is listed is mutated in this mode, even when its ServiceAccount
    also has a role ARN. ``watch_config`` is ``--watch-container-credentials-config``:
    when set, the webhook's app reads the identities from that file on each request
    (:class:`~irsa_lab.webhook.container_credentials.IdentitiesFile`,
    docs/reference/pod-identity.md §5.2, §5.3) instead of using ``identities``.
    """

    identities: frozenset[tuple[str, str]] = frozenset()
    watch_config: str = ""
    audience: str = C.CONTAINER_CREDENTIALS_AUDIENCE
    mount_path: str = C.CONTAINER_CREDENTIALS_MOUNT_PATH
    volume_name: str = C.CONTAINER_CREDENTIALS_VOLUME_NAME
    token_path: str = C.CONTAINER_CREDENTIALS_TOKEN_PATH
    full_uri: str = C.CONTAINER_CREDENTIALS_FULL_URI

    def matches(self, namespace: str, service_account: str) -> bool:
        """Whether this exact pair is listed (no wildcards, as upstream)."""
        return (namespace, service_account) in self.identities

    @classmethod
    def from_config(cls, config: object, **flags: Any) -> ContainerCredentialsSettings:
        """Build from the config file's JSON (``{"identities": [{"namespace", "serviceAccount"}]}``).

        ``None`` or an empty object means no identities, as a missing or empty file does.
        Raises ``ValueError`` for a malformed document (upstream keeps its previous config).
        """
        if config is None:
            return cls(**flags)
        if not isinstance(config, dict):
            raise ValueError("container credentials config must be a JSON object")
        items = config.get("identities") or []
        if not isinstance(items, list):
            raise ValueError("identities must be a list")
        pairs: set[tuple[str, str]] = set()
        for item in items:
            if not isinstance(item, dict):
                raise ValueError("each identity must be an object")
            ns, sa = item.get("namespace", ""), item.get("serviceAccount", "")
            if not isinstance(ns, str) or not isinstance(sa, str):
                raise ValueError("namespace and serviceAccount must be strings")
            pairs.add((ns, sa))
        return cls(identities=frozenset(pairs), **flags)


@dataclass(frozen=True)
class WebhookSettings:
    """The webhook's settings, with upstream's flag defaults.

    ``token_expiration`` is clamped up to 600 s when the settings are built, as upstream
    clamps the flag at start-up; there is no upper clamp.
    """

    annotation_prefix: str = C.ANNOTATION_PREFIX  # --annotation-prefix
    token_audience: str = C.DEFAULT_AUDIENCE  # --token-audience
    token_mount_path: str = C.TOKEN_MOUNT_PATH  # --token-mount-path
    token_expiration: int = C.DEFAULT_TOKEN_EXPIRATION_S  # --token-expiration, seconds
    aws_default_region: str = ""  # --aws-default-region; empty: inject no region
    sts_regional_endpoint: bool = False  # --sts-regional-endpoint
    # --service-account-lookup-grace-period, in seconds (a Go duration upstream). 0, the
    # default, disables waiting: a ServiceAccount missing from the cache means no role.
    service_account_lookup_grace_period: float = 0.0
    # The lab's own (no upstream flag): within the grace period, also wait until the
    # cache holds the API server's current version of an account it already has, so a
    # pod created right after `kubectl annotate` sees the new annotation. Upstream's
    # grace period covers only a missing account.
    service_account_lookup_consistent: bool = False
    # --watch-container-credentials-config and the --container-credentials-* flags;
    # None: Pod Identity mode is off.
    container_credentials: ContainerCredentialsSettings | None = field(default=None)

    def __post_init__(self) -> None:
        if self.token_expiration < C.MIN_TOKEN_EXPIRATION_S:
            object.__setattr__(self, "token_expiration", C.MIN_TOKEN_EXPIRATION_S)

    def annotation(self, suffix: str) -> str:
        """The full annotation key for ``suffix`` under this prefix (``eks.amazonaws.com/role-arn``)."""
        return f"{self.annotation_prefix}/{suffix}"

    @classmethod
    def lab(cls, **overrides: object) -> WebhookSettings:
        """The lab's settings: EKS's, which inject the region and regional STS endpoints."""
        base = cls(aws_default_region=C.REGION, sts_regional_endpoint=True)
        return replace(base, **overrides)  # type: ignore[arg-type]
