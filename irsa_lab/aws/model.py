"""The account's IAM state: roles, OIDC providers, managed policies and credentials.

One :class:`Account` is shared by the IAM, STS, S3 and IMDS stand-ins. It is plain
data behind one lock; the servers wrap it, the notebooks read it. Policy documents
are kept as the JSON text the caller sent (IAM returns them URL-encoded) together
with the parsed form.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from ..clock import Clock, SystemClock
from ..constants import ACCOUNT_ID
from ..ids import Ids
from .arns import oidc_provider_arn, role_arn

__all__ = ["Account", "Credential", "ManagedPolicy", "OidcProvider", "Role"]


@dataclass
class Role:
    name: str
    arn: str
    role_id: str  # AROA...
    trust_policy: str  # JSON text as given
    create_date: float
    path: str = "/"
    description: str = ""
    max_session_duration: int = 3600
    inline_policies: dict[str, str] = field(default_factory=dict)  # name -> JSON text
    attached_policies: list[str] = field(default_factory=list)  # managed policy ARNs
    tags: list[dict[str, str]] = field(default_factory=list)

    @property
    def trust_document(self) -> dict[str, Any]:
        return dict(json.loads(self.trust_policy))


@dataclass
class OidcProvider:
    url: str  # without scheme, as IAM stores it: oidc.eks.eu-west-1.amazonaws.com/id/ABC
    arn: str
    client_ids: list[str]
    thumbprints: list[str]
    create_date: float
    tags: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ManagedPolicy:
    name: str
    arn: str
    policy_id: str  # ANPA...
    document: str  # JSON text
    path: str = "/"
    description: str = ""
    create_date: float = 0.0


@dataclass
class Credential:
    """Access keys that SigV4-signed requests may use.

    ``kind`` is ``"user"`` for the administrator's long-term keys (AKIA...),
    ``"assumed-role"`` for temporary keys from STS or IMDS (ASIA..., with a session
    token). ``arn`` is the caller's ARN as GetCallerIdentity prints it.
    """

    access_key_id: str
    secret_access_key: str
    kind: str
    arn: str
    user_id: str  # AIDA... for users, AROA...:session for assumed roles
    session_token: str | None = None
    expiration: float | None = None  # wall-clock epoch seconds
    role_name: str | None = None
    source: str = ""  # "sts:AssumeRoleWithWebIdentity", "imds", "admin"
    # What the session carries besides its role (IAM User Guide, "Session policies",
    # "Passing session tags in STS", "Monitor and control actions taken with assumed
    # roles"): the session policies (inline ``Policy`` and the documents of
    # ``PolicyArns``, each (label, JSON)), the session tags, the source identity, when
    # the session was issued and, for a web-identity session, the provider that vouched.
    session_policies: list[tuple[str, str]] | None = None  # None: no session policy passed
    session_tags: dict[str, str] = field(default_factory=dict)
    source_identity: str | None = None
    # Epoch seconds on the lab clock, the clock aws:CurrentTime is read from, so that
    # aws:TokenIssueTime never comes after it in a lab whose clock is frozen.
    issued_at: float | None = None
    federated_provider: str | None = None  # the IAM OIDC provider ARN
    region: str = ""  # the region the session was requested in


class Account:
    """An AWS account as the stand-ins see it."""

    def __init__(
        self,
        account_id: str = ACCOUNT_ID,
        *,
        clock: Clock | None = None,
        ids: Ids | None = None,
    ) -> None:
        self.account_id = account_id
        self.clock: Clock = clock or SystemClock()
        self.ids = ids or Ids()
        self.lock = threading.RLock()
        self.roles: dict[str, Role] = {}
        self.oidc_providers: dict[str, OidcProvider] = {}  # by ARN
        self.managed_policies: dict[str, ManagedPolicy] = {}  # by ARN
        self.credentials: dict[str, Credential] = {}  # by access key id
        # S3: bucket name -> {"created": epoch, "objects": {key: (bytes, last_modified)}}
        self.buckets: dict[str, dict[str, Any]] = {}

    # -- lookups ------------------------------------------------------------------
    def role_by_arn(self, arn: str) -> Role | None:
        prefix = role_arn(self.account_id, "")  # arn:aws:iam::<account>:role/
        if not arn.startswith(prefix):
            return None
        name = arn[len(prefix) :].rsplit("/", 1)[-1]
        role = self.roles.get(name)
        return role if role is not None and role.arn == arn else None

    def oidc_provider_for_issuer(self, issuer: str) -> OidcProvider | None:
        """The provider whose URL equals the token's ``iss`` without ``https://``."""
        return self.oidc_providers.get(oidc_provider_arn(self.account_id, issuer))

    def policies_of_role(self, role_name: str) -> list[tuple[str, str]]:
        """(label, JSON document) for every permission policy of a role."""
        role = self.roles.get(role_name)
        if role is None:
            return []
        out = [(f"inline:{n}", doc) for n, doc in role.inline_policies.items()]
        for arn in role.attached_policies:
            mp = self.managed_policies.get(arn)
            if mp is not None:
                out.append((arn, mp.document))
        return out
