"""The claims a web identity token uses to shape its session: session tags and source identity.

An identity provider may put two claims in the AWS namespace of a token (IAM User Guide,
"Passing session tags using AssumeRoleWithWebIdentity" and "Using source identity with
AssumeRoleWithWebIdentity")::

    "https://aws.amazon.com/tags": {
        "principal_tags": {"Project": ["Automation"], "CostCenter": ["987654"]},
        "transitive_tag_keys": ["Project"]
    },
    "https://aws.amazon.com/source_identity": "Admin"

:func:`read_session_claims` checks them as STS checks session tags and a source identity
(:class:`~.errors.InvalidSessionTags`, :class:`~.errors.InvalidSourceIdentity`,
:class:`~.errors.SessionTagsTooLarge`) and returns a :class:`SessionClaims`: the
tags and source identity the session will carry, the condition keys they add to the
trust evaluation (``aws:RequestTag/<key>``, ``aws:TagKeys``, ``sts:TransitiveTagKeys``,
``sts:SourceIdentity``) and the actions the trust policy must allow besides
``sts:AssumeRoleWithWebIdentity`` (``sts:TagSession``, ``sts:SetSourceIdentity``).
Kubernetes service-account tokens never carry these claims; other issuers (GitHub
Actions, Buildkite, Cognito) may.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidSessionTags, InvalidSourceIdentity, SessionTagsTooLarge

__all__ = [
    "MAX_SESSION_TAGS",
    "MAX_TAG_KEY_LENGTH",
    "MAX_TAG_VALUE_LENGTH",
    "PACKED_TAGS_LIMIT",
    "SET_SOURCE_IDENTITY_ACTION",
    "SOURCE_IDENTITY_CLAIM",
    "SOURCE_IDENTITY_LENGTH",
    "TAGS_CLAIM",
    "TAG_SESSION_ACTION",
    "SessionClaims",
    "read_session_claims",
]

TAGS_CLAIM = "https://aws.amazon.com/tags"
SOURCE_IDENTITY_CLAIM = "https://aws.amazon.com/source_identity"
TAG_SESSION_ACTION = "sts:TagSession"
SET_SOURCE_IDENTITY_ACTION = "sts:SetSourceIdentity"

# IAM User Guide, "Passing session tags in AWS STS": at most 50 tags, keys up to 128
# characters, values up to 256; "Rules for tagging in IAM and AWS STS": letters, digits,
# spaces and _ . : / = + - @, no key or value starting with aws:.
MAX_SESSION_TAGS = 50
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
_TAG_SYMBOLS = frozenset("_.:/=+-@")

# IAM User Guide, "Things to know about source identity": 2 to 64 characters of
# [\w+=,.@-] (ASCII word characters, as the service model's Java pattern means them).
SOURCE_IDENTITY_LENGTH = (2, 64)
_SOURCE_IDENTITY = re.compile(r"[\w+=,.@-]*", re.ASCII)

# [I] STS packs session tags into a binary form with its own limit and reports the use in
# percent. The packing is not published; one observation fixes the scale: 9 tags of a
# 2-character key and a 250-character value "consume 498% of allotted space"
# (aws-actions/configure-aws-credentials#1898). 456 plaintext characters is the limit
# that reproduces it. Transitive keys do not count ("Chaining roles with session tags").
PACKED_TAGS_LIMIT = 456


@dataclass(frozen=True)
class SessionClaims:
    """What a token's AWS-namespace claims add to the session (nothing for IRSA tokens)."""

    tags: Mapping[str, str]
    transitive_tag_keys: tuple[str, ...] = ()
    source_identity: str | None = None

    @property
    def packed_tags_percent(self) -> int | None:
        """[I] How much of the packed space the tags use, in percent; None without tags."""
        if not self.tags:
            return None
        plain = sum(len(k) + len(v) for k, v in self.tags.items())
        return math.ceil(100 * plain / PACKED_TAGS_LIMIT)

    def extra_actions(self) -> list[str]:
        """The actions the trust policy must allow besides AssumeRoleWithWebIdentity."""
        out = []
        if self.tags:
            out.append(TAG_SESSION_ACTION)
        if self.source_identity is not None:
            out.append(SET_SOURCE_IDENTITY_ACTION)
        return out

    def condition_keys(self) -> dict[str, str | list[str]]:
        """The request's condition keys for the trust evaluation (IAM User Guide,
        "Permissions required to add session tags", "sts:SourceIdentity")."""
        keys: dict[str, str | list[str]] = {f"aws:RequestTag/{k}": v for k, v in self.tags.items()}
        if self.tags:
            keys["aws:TagKeys"] = list(self.tags)
        if self.transitive_tag_keys:
            keys["sts:TransitiveTagKeys"] = list(self.transitive_tag_keys)
        if self.source_identity is not None:
            keys["sts:SourceIdentity"] = self.source_identity
        return keys

    def describe(self) -> str:
        """One phrase for the pipeline's notes."""
        parts = []
        if self.tags:
            n = len(self.tags)
            parts.append(f"{n} session tag{'s' if n != 1 else ''} ({', '.join(self.tags)})")
        if self.source_identity is not None:
            parts.append(f"source identity {self.source_identity!r}")
        return " and ".join(parts) or "no session tags or source identity"


_NO_SESSION_CLAIMS = SessionClaims({})


def read_session_claims(claims: Mapping[str, Any]) -> SessionClaims:
    """Check the tags and source-identity claims of ``claims``; raise as STS refuses them."""
    if TAGS_CLAIM not in claims and SOURCE_IDENTITY_CLAIM not in claims:
        return _NO_SESSION_CLAIMS
    tags, transitive = _tags(claims.get(TAGS_CLAIM)) if TAGS_CLAIM in claims else ({}, ())
    source_identity = (
        _source_identity(claims[SOURCE_IDENTITY_CLAIM]) if SOURCE_IDENTITY_CLAIM in claims else None
    )
    session = SessionClaims(tags, transitive, source_identity)
    percent = session.packed_tags_percent
    if percent is not None and percent > 100:
        raise SessionTagsTooLarge(
            f"Packed size of session tags consumes {percent}% of allotted space.",
            f"the {len(tags)} session tags take {percent}% of the space STS packs them into "
            "(the limit is on the packed form, not only on the count of 50)",
            percent=percent,
        )
    return session


def _bad_tags(why: str, **detail: Any) -> InvalidSessionTags:
    return InvalidSessionTags(explanation=f"the {TAGS_CLAIM} claim: {why}", **detail)


def _tags(claim: Any) -> tuple[dict[str, str], tuple[str, ...]]:
    if not isinstance(claim, dict):
        raise _bad_tags(
            "must be a JSON object with principal_tags (and optionally transitive_tag_keys)"
        )
    principal = claim.get("principal_tags", {})
    if not isinstance(principal, dict):
        raise _bad_tags("principal_tags must map each tag key to its value")
    if len(principal) > MAX_SESSION_TAGS:
        raise _bad_tags(
            f"{len(principal)} session tags; at most {MAX_SESSION_TAGS} may be passed",
            count=len(principal),
        )
    tags: dict[str, str] = {}
    seen: dict[str, str] = {}
    for key, raw in principal.items():
        value = _tag_value(key, raw)
        _check_tag_text(key, "key", 1, MAX_TAG_KEY_LENGTH)
        _check_tag_text(value, f"value of {key!r}", 0, MAX_TAG_VALUE_LENGTH)
        if key.lower() in seen:
            raise _bad_tags(
                f"keys {seen[key.lower()]!r} and {key!r} differ only in case; "
                "session tag keys are case-insensitive"
            )
        seen[key.lower()] = key
        tags[key] = value
    transitive = claim.get("transitive_tag_keys", [])
    if not isinstance(transitive, list) or not all(isinstance(k, str) for k in transitive):
        raise _bad_tags("transitive_tag_keys must be a list of tag keys")
    return tags, tuple(transitive)


def _tag_value(key: str, raw: Any) -> str:
    # The guide's example gives every value as a one-element list; "You must pass a
    # single value for each session tag. Multivalued session tags are not supported."
    # [I] A bare string is read as that one value.
    if isinstance(raw, str):
        return raw
    if isinstance(raw, list) and len(raw) == 1 and isinstance(raw[0], str):
        return str(raw[0])
    if isinstance(raw, list) and len(raw) > 1:
        raise _bad_tags(
            f"tag {key!r} has {len(raw)} values; multivalued session tags are not supported"
        )
    raise _bad_tags(f'tag {key!r} must have one string value, like ["value"]')


def _check_tag_text(text: str, what: str, shortest: int, longest: int) -> None:
    if not shortest <= len(text) <= longest:
        raise _bad_tags(f"the {what} has {len(text)} characters; {shortest} to {longest} allowed")
    bad = sorted({ch for ch in text if not _tag_char(ch)})
    if bad:
        raise _bad_tags(
            f"the {what} {text!r} contains {''.join(bad)!r}; only letters, digits, spaces "
            "and _ . : / = + - @ are allowed"
        )
    if text.lower().startswith("aws:"):
        raise _bad_tags(f"the {what} {text!r} starts with aws:, a prefix AWS reserves")


def _tag_char(ch: str) -> bool:
    # The service model's [\p{L}\p{Z}\p{N}_.:/=+\-@]: letters, separators, numbers.
    return ch in _TAG_SYMBOLS or unicodedata.category(ch)[0] in "LZN"


def _source_identity(value: Any) -> str:
    low, high = SOURCE_IDENTITY_LENGTH
    shown = value if isinstance(value, str) else repr(value)

    def bad(constraint: str, why: str) -> InvalidSourceIdentity:
        return InvalidSourceIdentity(
            f"1 validation error detected: Value '{shown}' at 'sourceIdentity' failed to "
            f"satisfy constraint: {constraint}",
            f"the {SOURCE_IDENTITY_CLAIM} claim {value!r}: {why}",
            source_identity=shown,
        )

    if not isinstance(value, str) or _SOURCE_IDENTITY.fullmatch(value) is None:
        # A value starting with the reserved "aws:" fails here too: ':' is not allowed.
        raise bad(
            r"Member must satisfy regular expression pattern: [\w+=,.@-]*",
            "a source identity is letters, digits and _ + = , . @ - only (no spaces, "
            "no ':', so never the reserved prefix aws:)",
        )
    if len(value) < low:
        raise bad(
            f"Member must have length greater than or equal to {low}",
            f"{len(value)} characters; at least {low}",
        )
    if len(value) > high:
        raise bad(
            f"Member must have length less than or equal to {high}",
            f"{len(value)} characters; at most {high}",
        )
    return value
