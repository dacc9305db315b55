"""The upstream webhook's flag sets for the webhook suite, with the port settings beside them.

Why: the suite runs one upstream process per distinct flag set, and the port must be
given the same configuration; a :class:`FlagSet` holds both, and
:func:`upstream_flags` writes the command line that stands for a port setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from .. import constants as C
from ..webhook.settings import ContainerCredentialsSettings, WebhookSettings

__all__ = ["FLAG_SETS", "FlagSet", "GroupKey", "group_key", "upstream_flags"]


@dataclass(frozen=True)
class FlagSet:
    """One configuration of the upstream binary and the equivalent port settings.

    ``raw`` overrides the text of a flag, for values the settings normalise (a
    ``--token-expiration`` below 600 is clamped up by both programs at start-up).
    ``container_credentials`` without identities: the suite lists them per case.
    """

    name: str
    settings: WebhookSettings
    raw: Mapping[str, str] = field(default_factory=dict)


FLAG_SETS: tuple[FlagSet, ...] = (
    FlagSet("defaults", WebhookSettings()),
    FlagSet(
        "region+regional-sts",
        WebhookSettings(aws_default_region=C.REGION, sts_regional_endpoint=True),
    ),
    FlagSet(
        "audience+mount-path",
        # An untidy mount path: the mount keeps it as given, the token file is cleaned.
        WebhookSettings(
            token_audience="irsa-lab.example",  # noqa: S106 - an audience, not a secret
            token_mount_path="/var/run/../run//irsa-lab/token-dir/",  # noqa: S106 - a path
        ),
    ),
    FlagSet(
        "token-expiration",
        WebhookSettings(token_expiration=100),  # both clamp the flag up to 600
        raw={"--token-expiration": "100"},
    ),
    FlagSet(
        "container-credentials",
        WebhookSettings(
            aws_default_region="us-east-1",
            container_credentials=ContainerCredentialsSettings(),
        ),
    ),
    FlagSet(
        "container-credentials custom+prefix",
        WebhookSettings(
            annotation_prefix="irsa-lab.example.com",
            sts_regional_endpoint=True,
            token_expiration=7200,  # the default of a cached ServiceAccount, not of an unknown one
            container_credentials=ContainerCredentialsSettings(
                audience="pods.irsa-lab.example",
                mount_path="/var/run/pod-identity",
                volume_name="pod-identity-token",
                token_path="sub/token",  # noqa: S106 - a file name
                full_uri="http://127.0.0.1:2703/v1/credentials",
            ),
        ),
    ),
)


# What the cases sharing one upstream process have in common: the settings (without
# container-credentials identities) and the raw flag overrides.
GroupKey = tuple[WebhookSettings, frozenset[tuple[str, str]]]


def group_key(flags: FlagSet) -> GroupKey:
    """The process ``flags`` run in: cases share a process when their flags are the same.

    The container-credentials identities are the suite's, gathered from the cases of
    the group, so they are left out of the key.
    """
    settings = flags.settings
    cc = settings.container_credentials
    if cc is not None and cc.identities:
        settings = replace(settings, container_credentials=replace(cc, identities=frozenset()))
    return settings, frozenset(flags.raw.items())


def upstream_flags(
    settings: WebhookSettings, *, cc_config: Path | None, raw: Mapping[str, str] | None = None
) -> list[str]:
    """The upstream command-line flags that stand for ``settings`` (no TLS/port flags)."""
    flags = {
        "--annotation-prefix": settings.annotation_prefix,
        "--token-audience": settings.token_audience,
        "--token-mount-path": settings.token_mount_path,
        "--token-expiration": str(settings.token_expiration),
        "--aws-default-region": settings.aws_default_region,
        "--sts-regional-endpoint": "true" if settings.sts_regional_endpoint else "false",
    }
    cc = settings.container_credentials
    if cc is not None:
        if cc_config is None:
            raise ValueError("container-credentials mode needs its config file")
        flags.update(
            {
                "--watch-container-credentials-config": str(cc_config),
                "--container-credentials-audience": cc.audience,
                "--container-credentials-token-mount-path": cc.mount_path,
                "--container-credentials-token-volume-name": cc.volume_name,
                "--container-credentials-token-path": cc.token_path,
                "--container-credentials-full-uri": cc.full_uri,
            }
        )
    flags.update(raw or {})
    return [f"{k}={v}" for k, v in flags.items()]
