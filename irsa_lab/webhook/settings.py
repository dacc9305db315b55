"""The webhook's settings, one field per upstream command-line flag.

Defaults are upstream's (specs/webhook.md §4): a field named ``token_audience``
stands for ``--token-audience`` and so on. :meth:`WebhookSettings.lab` gives the
settings the lab runs with, which are the ones EKS uses in the article (region
injected, regional STS endpoints on).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .. import constants as C


@dataclass(frozen=True)
class ContainerCredentialsSettings:
    """Pod Identity mode: the ``--container-credentials-*`` flags and the watched identities.

    ``identities`` holds the ``(namespace, serviceAccount)`` pairs of the watched config
    file (``--watch-container-credentials-config``); a pod whose pair is listed is
    mutated in this mode, even when its ServiceAccount also has a role ARN.
    """

    identities: frozenset[tuple[str, str]] = frozenset()
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
    """Mutation settings with upstream's flag defaults.

    ``token_expiration`` is clamped up to 600 s when the settings are built, as upstream
    clamps the flag at start-up; there is no upper clamp.
    """

    annotation_prefix: str = C.ANNOTATION_PREFIX  # --annotation-prefix
    token_audience: str = C.DEFAULT_AUDIENCE  # --token-audience
    token_mount_path: str = C.TOKEN_MOUNT_PATH  # --token-mount-path
    token_expiration: int = C.DEFAULT_TOKEN_EXPIRATION_S  # --token-expiration, seconds
    aws_default_region: str = ""  # --aws-default-region; empty: inject no region
    sts_regional_endpoint: bool = False  # --sts-regional-endpoint
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
