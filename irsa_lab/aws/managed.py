"""The AWS managed policies the lab needs, with their real documents.

The facts live in ``irsa_lab/data/aws-managed-policies.json``, one entry per policy
with the field names ``aws iam get-policy`` and ``get-policy-version`` print
(``PolicyName``, ``PolicyId``, ``DefaultVersionId``, ``CreateDate``, ``UpdateDate``,
``Document``). They come from the AWS Managed Policy Reference
(docs.aws.amazon.com/aws-managed-policy). The documents are small enough to keep
whole; none is trimmed. Dates are given to the second where a public
``aws iam get-policy`` output shows them, otherwise to the minute the reference
gives. A ``PolicyId`` with ``"PolicyIdRecalled": true`` is recalled, not verified
against a live account; the lab never checks it, it only makes outputs look like
the real thing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from .model import Account, ManagedPolicy

__all__ = [
    "AWS_MANAGED_POLICIES",
    "AwsManagedPolicy",
    "install_managed_policies",
    "managed_policy_arn",
    "version_facts",
]

_FACTS = "aws-managed-policies.json"


def managed_policy_arn(name: str) -> str:
    """``arn:aws:iam::aws:policy/<name>``: AWS managed policies live in the ``aws`` account."""
    return f"arn:aws:iam::aws:policy/{name}"


def _epoch(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class AwsManagedPolicy:
    """One AWS managed policy as ``iam get-policy`` / ``get-policy-version`` show it."""

    name: str
    arn: str
    policy_id: str
    description: str
    default_version_id: str
    create_date: float
    update_date: float
    document: dict[str, Any]
    policy_id_recalled: bool = False

    @property
    def document_json(self) -> str:
        """The document as JSON text, indented the way AWS shows managed policies."""
        return json.dumps(self.document, indent=2)

    @classmethod
    def from_facts(cls, facts: dict[str, Any]) -> AwsManagedPolicy:
        """One entry of the facts file, with ``get-policy``'s field names."""
        return cls(
            name=facts["PolicyName"],
            arn=managed_policy_arn(facts["PolicyName"]),
            policy_id=facts["PolicyId"],
            description=facts["Description"],
            default_version_id=facts["DefaultVersionId"],
            create_date=_epoch(facts["CreateDate"]),
            update_date=_epoch(facts["UpdateDate"]),
            document=facts["Document"],
            policy_id_recalled=bool(facts.get("PolicyIdRecalled", False)),
        )


def _load() -> dict[str, AwsManagedPolicy]:
    text = resources.files("irsa_lab").joinpath("data", _FACTS).read_text(encoding="utf-8")
    policies = (AwsManagedPolicy.from_facts(f) for f in json.loads(text))
    return {p.arn: p for p in policies}


AWS_MANAGED_POLICIES: dict[str, AwsManagedPolicy] = _load()


def install_managed_policies(account: Account) -> None:
    """Make the AWS managed policies above visible in ``account`` (idempotent)."""
    with account.lock:
        for fact in AWS_MANAGED_POLICIES.values():
            if fact.arn in account.managed_policies:
                continue
            account.managed_policies[fact.arn] = ManagedPolicy(
                name=fact.name,
                arn=fact.arn,
                policy_id=fact.policy_id,
                document=fact.document_json,
                path="/",
                description=fact.description,
                create_date=fact.create_date,
            )


def version_facts(arn: str, fallback_date: float) -> tuple[str, float]:
    """(default version id, update date) of a managed policy; ``v1`` for any other policy."""
    fact = AWS_MANAGED_POLICIES.get(arn)
    if fact is None:
        return "v1", fallback_date
    return fact.default_version_id, fact.update_date
