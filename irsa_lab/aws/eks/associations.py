"""Pod Identity associations of the lab's one cluster: the model behind the EKS API.

Facts from ``docs/reference/pod-identity.md``: members §1.3, errors and messages §1.4,
identifiers and the one-association-per-ServiceAccount rule §1.5. Thread-safe: the web
handler runs on the server loop, notebooks call from the kernel thread.
"""

from __future__ import annotations

import builtins
import secrets
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Association",
    "AssociationExists",
    "AssociationNotFound",
    "Associations",
    "new_association_id",
]

_ID_ALPHABET = string.ascii_lowercase + string.digits


class AssociationExists(Exception):
    """A second association for the same (namespace, ServiceAccount) (§1.4: 409)."""

    def __init__(self, existing_id: str) -> None:
        super().__init__(f"Association already exists: {existing_id}")
        self.existing_id = existing_id


class AssociationNotFound(Exception):
    """No association with that id (§1.4: ResourceNotFoundException, 404)."""


def new_association_id() -> str:
    """``a-`` and 17 lowercase letters and digits, like every published example (§1.5)."""
    return "a-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(17))


@dataclass(frozen=True)
class Association:
    """One ``PodIdentityAssociation`` (§1.3)."""

    association_id: str
    association_arn: str
    cluster_name: str
    namespace: str
    service_account: str
    role_arn: str
    created_at: float
    modified_at: float
    tags: dict[str, str] = field(default_factory=dict)
    disable_session_tags: bool = False

    def to_wire(self) -> dict[str, Any]:
        """The full shape Create, Describe and Delete answer (§1.3, §1.5 example)."""
        return {
            "clusterName": self.cluster_name,
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "roleArn": self.role_arn,
            "associationArn": self.association_arn,
            "associationId": self.association_id,
            "tags": dict(self.tags),
            "createdAt": self.created_at,
            "modifiedAt": self.modified_at,
            "disableSessionTags": self.disable_session_tags,
        }

    def summary(self) -> dict[str, Any]:
        """The ``PodIdentityAssociationSummary`` List answers (§1.3)."""
        return {
            "clusterName": self.cluster_name,
            "namespace": self.namespace,
            "serviceAccount": self.service_account,
            "associationArn": self.association_arn,
            "associationId": self.association_id,
        }


class Associations:
    """The associations of one cluster; ``on_change`` callbacks run after create/delete."""

    def __init__(
        self,
        *,
        cluster_name: str,
        region: str,
        account_id: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.cluster_name = cluster_name
        self.region = region
        self.account_id = account_id
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._by_id: dict[str, Association] = {}
        self.on_change: list[Callable[[], None]] = []
        # How to wait until a change has reached the webhook, where that takes a moment
        # (the upstream binary reloads its config file on its own); None: at once.
        self.settle: Callable[[], None] | None = None

    def create(
        self,
        namespace: str,
        service_account: str,
        role_arn: str,
        *,
        tags: dict[str, str] | None = None,
        disable_session_tags: bool = False,
    ) -> Association:
        with self._lock:
            for existing in self._by_id.values():
                if (existing.namespace, existing.service_account) == (namespace, service_account):
                    raise AssociationExists(existing.association_id)
            association_id = new_association_id()
            now = round(self._wall_clock(), 3)
            association = Association(
                association_id=association_id,
                association_arn=(
                    f"arn:aws:eks:{self.region}:{self.account_id}:podidentityassociation/"
                    f"{self.cluster_name}/{association_id}"
                ),
                cluster_name=self.cluster_name,
                namespace=namespace,
                service_account=service_account,
                role_arn=role_arn,
                created_at=now,
                modified_at=now,
                tags=dict(tags or {}),
                disable_session_tags=disable_session_tags,
            )
            self._by_id[association_id] = association
        self._changed()
        return association

    def list(
        self, namespace: str | None = None, service_account: str | None = None
    ) -> list[Association]:
        with self._lock:
            found = [
                a
                for a in self._by_id.values()
                if (namespace is None or a.namespace == namespace)
                and (service_account is None or a.service_account == service_account)
            ]
        return sorted(found, key=lambda a: (a.created_at, a.association_id))

    def describe(self, association_id: str) -> Association:
        with self._lock:
            try:
                return self._by_id[association_id]
            except KeyError:
                raise AssociationNotFound(association_id) from None

    def delete(self, association_id: str) -> Association:
        with self._lock:
            try:
                association = self._by_id.pop(association_id)
            except KeyError:
                raise AssociationNotFound(association_id) from None
        self._changed()
        return association

    def identities(self) -> builtins.list[tuple[str, str]]:
        """The ``(namespace, serviceAccount)`` pairs that have an association."""
        return [(a.namespace, a.service_account) for a in self.list()]

    def _changed(self) -> None:
        for callback in list(self.on_change):
            callback()
