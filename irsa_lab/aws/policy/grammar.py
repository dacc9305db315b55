"""The policy grammar: a JSON policy document read into statements, as IAM reads it.

Two kinds of document go through here:

- a role's **trust policy** (``kind="trust"``): who may assume the role. It must name a
  ``Principal`` and may not name a ``Resource`` (the resource is the role itself), as IAM
  refuses with ``Has prohibited field Resource``;
- an **identity policy** (``kind="identity"``): what the role's sessions may do. It must
  name ``Resource`` and may not name a ``Principal``.

:func:`parse_policy` checks the grammar and raises ``AwsError("MalformedPolicyDocument")``
with IAM's own text where one is known, prefixed by where the fault is
(``Statement[0].Condition: ...``). Condition values are read once, here, into the form
their operator compares (:func:`.operators.compile_value`), so a value an operator
cannot read (``"soon"`` under ``DateLessThan``) is a malformed document, not a silent
mismatch. The shape of a trust policy is that of docs/reference/sts.md §2.3.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal, TypeVar

from ..errors import AwsError
from .operators import OPERATORS, QUALIFIERS, compile_value

__all__ = [
    "wire_text",
    "ACCOUNT_ID_PATTERN",
    "DOCUMENT_CHARS",
    "DOCUMENT_CHARS_PATTERN",
    "VERSIONS",
    "ConditionEntry",
    "Policy",
    "PolicyKind",
    "Principal",
    "Statement",
    "parse_policy",
    "scalar_text",
]

PolicyKind = Literal["trust", "identity"]

#: The two policy language versions IAM knows; only 2012-10-17 has policy variables.
VERSIONS = ("2012-10-17", "2008-10-17")

# IAM's own message texts (seen in public reports of real IAM answers).
SYNTAX = "Syntax errors in policy."
INVALID_JSON = "This policy contains invalid Json"
NEEDS_ACTIONS = "Policy statement must contain actions."
NEEDS_RESOURCES = "Policy statement must contain resources."
NEEDS_VENDOR = "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."
ONE_COLON = "Actions/Condition can contain only one colon."
VENDOR_WILDCARD = "Action vendors (e.g., aws, ec2, etc.) must not contain wildcards."
SID_UNIQUE = "Statement IDs (SID) in a single policy must be unique."
SID_ALNUM = (
    "Statement IDs (SID) must be alpha-numeric. "
    "Check that your input satisfies the regular expression [0-9A-Za-z]*"
)

_TOP_KEYS = ("Version", "Id", "Statement")
_STATEMENT_KEYS = (
    "Sid",
    "Effect",
    "Principal",
    "NotPrincipal",
    "Action",
    "NotAction",
    "Resource",
    "NotResource",
    "Condition",
)
ACCOUNT_ID_PATTERN = re.compile(r"\d{12}")
"""A bare account id, which a principal may name instead of an ARN."""

# The characters a policy document may hold, as the IAM and STS service models put it
# (policyDocumentType, sessionPolicyDocumentType); the text is the models' own spelling.
DOCUMENT_CHARS = re.compile("[\t\n\r\x20-\xff]+")
DOCUMENT_CHARS_PATTERN = r"[\u0009\u000A\u000D\u0020-\u00FF]+"

Principal = str | tuple[tuple[str, str], ...]
"""A parsed ``Principal``: ``"*"`` for everyone, else (type, value) pairs."""

# --- malformed documents ------------------------------------------------------------


def wire_text(err: AwsError) -> str:
    """What IAM or STS sends for a malformed document: its own text, without where or why.

    The location and the lab's detail stay in ``err.explanation``.
    """
    return str(err.detail.get("aws_message") or err.message)


def _malformed(where: str, aws_text: str, detail: str = "") -> AwsError:
    """A ``MalformedPolicyDocument`` that says where, with IAM's text and our detail."""
    message = f"{where}: {aws_text}" + (f" ({detail})" if detail else "")
    return AwsError(
        "MalformedPolicyDocument",
        message,
        400,
        explanation=message,
        detail={"aws_message": aws_text, "where": where, "problem": detail},
    )


# --- parsed documents -----------------------------------------------------------------


@dataclass(frozen=True)
class ConditionEntry:
    """One (operator, key, values) triple of a statement's ``Condition`` block."""

    operator: str  # as written: "ForAnyValue:StringLikeIfExists"
    key: str  # as written
    values: tuple[str, ...]  # as strings: JSON true -> "true", 5 -> "5"
    base: str  # the operator without qualifier and IfExists: "StringLike"
    qualifier: str | None  # "ForAnyValue", "ForAllValues" or None
    if_exists: bool
    compiled: tuple[Any, ...] = field(repr=False, compare=False, default=())

    @property
    def negated(self) -> bool:
        """True for StringNotEquals, ArnNotLike, NotIpAddress and the like."""
        return OPERATORS[self.base].negated


@dataclass(frozen=True)
class Statement:
    """One statement, normalised: every list element a tuple, every value a string."""

    index: int
    sid: str | None
    effect: str  # "Allow" / "Deny"
    actions: tuple[str, ...] | None  # Action, or None when NotAction is used
    not_actions: tuple[str, ...] | None
    resources: tuple[str, ...] | None
    not_resources: tuple[str, ...] | None
    principal: Principal | None  # None when the element is absent
    not_principal: Principal | None
    conditions: tuple[ConditionEntry, ...]


@dataclass(frozen=True)
class Policy:
    """A parsed policy document. Immutable, so one parse can be shared and cached."""

    kind: PolicyKind
    version: str | None
    id: str | None
    statements: tuple[Statement, ...]
    text: str  # the JSON it was parsed from


def _strings(value: Any, where: str, name: str) -> tuple[str, ...]:
    """A string or a list of strings, as the grammar allows for Action, Resource, ..."""
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        if not value:
            raise _malformed(where, SYNTAX, f"{name} is an empty list")
        return tuple(value)
    raise _malformed(where, SYNTAX, f"{name} must be a string or a list of strings")


_ACTION_VENDOR = re.compile(r"[A-Za-z0-9-]+")
_ACTION_NAME = re.compile(r"[A-Za-z0-9_*?-]+")


def _check_action(action: str, where: str) -> None:
    if action == "*":
        return
    if ":" not in action:
        raise _malformed(where, NEEDS_VENDOR, f"action {action!r} has no service prefix")
    if action.count(":") > 1:
        raise _malformed(where, ONE_COLON, f"action {action!r}")
    vendor, name = action.split(":")
    if "*" in vendor or "?" in vendor:
        raise _malformed(where, VENDOR_WILDCARD, f"action {action!r}")
    if not _ACTION_VENDOR.fullmatch(vendor) or not _ACTION_NAME.fullmatch(name):
        raise _malformed(where, SYNTAX, f"{action!r} is not a valid action name")


def _check_resource(resource: str, where: str) -> None:
    if resource != "*" and not resource.startswith("arn:"):
        raise _malformed(where, f'Resource {resource} must be in ARN format or "*".')


_PRINCIPAL_TYPES = ("AWS", "Federated", "Service", "CanonicalUser")
# Identity providers that trust policies name by bare host instead of an ARN.
_BUILTIN_FEDERATED = (
    "accounts.google.com",
    "cognito-identity.amazonaws.com",
    "www.amazon.com",
    "graph.facebook.com",
)
_AWS_PRINCIPAL_ARN = re.compile(r"arn:aws[\w-]*:(iam|sts)::(\d{12}):\S+")
_FEDERATED_ARN = re.compile(r"arn:aws[\w-]*:iam::\d{12}:(oidc-provider|saml-provider)/\S+")


def _invalid_principal(ptype: str, value: Any) -> str:
    """IAM's text, which quotes the offending type and value as JSON."""
    return f"Invalid principal in policy: {json.dumps(ptype)}:{json.dumps(value)}"


def _principal(value: Any, where: str) -> Principal:
    if value == "*":
        return "*"
    if not isinstance(value, dict) or not value:
        raise _malformed(
            where, SYNTAX, 'Principal must be "*" or an object such as {"Federated": "..."}'
        )
    pairs: list[tuple[str, str]] = []
    for ptype, raw in value.items():
        if ptype not in _PRINCIPAL_TYPES:
            raise _malformed(where, _invalid_principal(ptype, raw))
        if isinstance(raw, str):
            items = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(v, str) for v in raw):
            items = list(raw)
        else:
            raise _malformed(where, _invalid_principal(ptype, raw))
        for item in items:
            if ptype == "AWS":
                ok = item == "*" or bool(
                    ACCOUNT_ID_PATTERN.fullmatch(item) or _AWS_PRINCIPAL_ARN.fullmatch(item)
                )
            elif ptype == "Federated":
                ok = item in _BUILTIN_FEDERATED or bool(_FEDERATED_ARN.fullmatch(item))
            else:
                ok = bool(item) and not any(c.isspace() for c in item)
            if not ok:
                raise _malformed(where, _invalid_principal(ptype, item))
            pairs.append((ptype, item))
    return tuple(pairs)


def scalar_text(value: Any) -> str | None:
    """A JSON scalar as IAM compares it: ``true`` -> ``"true"``, ``5`` -> ``"5"``; None otherwise."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return value
    return None


def _split_operator(operator: str, where: str) -> tuple[str, str | None, bool]:
    qualifier: str | None = None
    rest = operator
    if ":" in operator:
        qualifier, rest = operator.split(":", 1)
        if qualifier not in QUALIFIERS:
            raise _malformed(
                where,
                SYNTAX,
                f"unknown set operator {qualifier!r} in {operator!r}: use ForAnyValue or ForAllValues",
            )
    if_exists = rest.endswith("IfExists")
    base = rest.removesuffix("IfExists") if if_exists else rest
    if base not in OPERATORS:
        guess = difflib.get_close_matches(base, list(OPERATORS), n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        raise _malformed(where, SYNTAX, f"unknown condition operator {operator!r}{hint}")
    if base == "Null" and (if_exists or qualifier):
        raise _malformed(
            where, SYNTAX, f"{operator!r}: Null takes neither IfExists nor a set operator"
        )
    return base, qualifier, if_exists


def _conditions(block: Any, where: str) -> tuple[ConditionEntry, ...]:
    if not isinstance(block, dict):
        raise _malformed(where, SYNTAX, "Condition must be an object of operator -> {key: value}")
    entries: list[ConditionEntry] = []
    for operator, keys in block.items():
        at = f"{where}.{operator}"
        base, qualifier, if_exists = _split_operator(operator, where)
        op = OPERATORS[base]
        if not isinstance(keys, dict) or not keys:
            raise _malformed(at, SYNTAX, f"{operator} must map condition keys to values")
        for key, raw in keys.items():
            if ":" not in key:
                raise _malformed(at, NEEDS_VENDOR, f"condition key {key!r} has no prefix")
            raw_list = raw if isinstance(raw, list) else [raw]
            values = [scalar_text(v) for v in raw_list]
            if not raw_list or any(v is None for v in values):
                raise _malformed(
                    at,
                    SYNTAX,
                    f"the value of {key!r} must be a string, number, boolean or a non-empty list of them",
                )
            texts = tuple(v for v in values if v is not None)
            compiled = tuple(compile_value(op, v) for v in texts)
            for text, value in zip(texts, compiled, strict=True):
                if value is None:
                    raise _malformed(
                        at, SYNTAX, f"{text!r} is not a valid {op.family.lower()} value for {base}"
                    )
            entries.append(
                ConditionEntry(operator, key, texts, base, qualifier, if_exists, compiled)
            )
    return tuple(entries)


_T = TypeVar("_T")


def _element(
    raw: Mapping[str, Any],
    name: str,
    where: str,
    missing: str,
    read: Callable[[Any, str, str], _T],
    *,
    prohibited: bool = False,
) -> tuple[_T | None, _T | None]:
    """``(name, Not<name>)`` of a statement, read by ``read``: exactly one of them is set.

    Action, Resource and Principal each have a negated twin, and a statement names one
    of the two, never both and never neither (``missing`` is IAM's text for neither).
    A ``prohibited`` element is one this kind of policy may not name at all.
    """
    negated = "Not" + name
    if prohibited:
        for key in (name, negated):
            if key in raw:
                raise _malformed(where, f"Has prohibited field {key}")
        return None, None
    if name in raw and negated in raw:
        raise _malformed(where, SYNTAX, f"a statement has {name} or {negated}, not both")
    if name not in raw and negated not in raw:
        raise _malformed(where, missing)
    if name in raw:
        return read(raw[name], where, name), None
    return None, read(raw[negated], where, negated)


def _read_principal(value: Any, where: str, _name: str) -> Principal:
    return _principal(value, where)


_SID = re.compile(r"[0-9A-Za-z]*")


def _only_fields(obj: Mapping[str, Any], fields: Sequence[str], where: str, what: str) -> None:
    """Refuse a field the grammar does not know (IAM answers a bare syntax error)."""
    for key in obj:
        if key not in fields:
            raise _malformed(
                where, SYNTAX, f"unknown field {key!r}; {what} may hold {', '.join(fields)}"
            )


def _statement(raw: Any, index: int, kind: PolicyKind) -> Statement:
    where = f"Statement[{index}]"
    if not isinstance(raw, dict):
        raise _malformed(where, SYNTAX, "a statement must be a JSON object")
    _only_fields(raw, _STATEMENT_KEYS, where, "a statement")

    sid = raw.get("Sid")
    if sid is not None and not isinstance(sid, str):
        raise _malformed(where, SYNTAX, "Sid must be a string")
    if sid is not None and kind == "identity" and not _SID.fullmatch(sid):
        raise _malformed(where, SID_ALNUM, f"Sid {sid!r}")

    if "Effect" not in raw:
        raise _malformed(where, "Missing required field Effect")
    effect = raw["Effect"]
    if effect not in ("Allow", "Deny"):
        raise _malformed(
            where, SYNTAX, f'Effect must be "Allow" or "Deny", not {json.dumps(effect)}'
        )

    actions, not_actions = _element(raw, "Action", where, NEEDS_ACTIONS, _strings)
    for action in actions or not_actions or ():
        _check_action(action, where)

    # A trust policy's resource is the role it is attached to; an identity policy's
    # principal is whoever it is attached to.
    resources, not_resources = _element(
        raw, "Resource", where, NEEDS_RESOURCES, _strings, prohibited=kind == "trust"
    )
    for resource in resources or not_resources or ():
        _check_resource(resource, where)

    principal, not_principal = _element(
        raw,
        "Principal",
        where,
        "Missing required field Principal",
        _read_principal,
        prohibited=kind == "identity",
    )

    conditions = _conditions(raw["Condition"], f"{where}.Condition") if "Condition" in raw else ()
    return Statement(
        index,
        sid,
        effect,
        actions,
        not_actions,
        resources,
        not_resources,
        principal,
        not_principal,
        conditions,
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@lru_cache(maxsize=512)
def _parse_text(text: str, kind: PolicyKind) -> Policy:
    # The same trust policy text is evaluated on every AssumeRoleWithWebIdentity, so the
    # parse (and the compiled patterns inside it) is kept; Policy is immutable.
    try:
        document = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise _malformed("Policy", INVALID_JSON, str(exc)) from None
    return _parse_document(document, text, kind)


def _parse_document(document: Any, text: str, kind: PolicyKind) -> Policy:
    if not isinstance(document, dict):
        raise _malformed("Policy", SYNTAX, "the document must be a JSON object")
    _only_fields(document, _TOP_KEYS, "Policy", "a policy")
    version = document.get("Version")
    if version is not None and version not in VERSIONS:
        raise _malformed(
            "Policy",
            SYNTAX,
            f'Version must be "2012-10-17" (or the legacy "2008-10-17"), not {json.dumps(version)}',
        )
    pid = document.get("Id")
    if pid is not None and not isinstance(pid, str):
        raise _malformed("Policy", SYNTAX, "Id must be a string")
    if "Statement" not in document:
        raise _malformed("Policy", "Missing required field Statement")
    raw = document["Statement"]
    raw_list = raw if isinstance(raw, list) else [raw]
    if not raw_list:
        raise _malformed("Policy", SYNTAX, "Statement is an empty list")
    statements = tuple(_statement(s, i, kind) for i, s in enumerate(raw_list))
    sids = [s.sid for s in statements if s.sid]
    if len(sids) != len(set(sids)):
        dup = next(s for s in sids if sids.count(s) > 1)
        raise _malformed("Policy", SID_UNIQUE, f"Sid {dup!r} is used twice")
    return Policy(kind, version, pid, statements, text)


def _as_json(document: Mapping[str, Any]) -> str:
    def plain(obj: Any) -> Any:
        if isinstance(obj, Mapping):
            return dict(obj)
        if isinstance(obj, tuple):
            return list(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON")

    try:
        return json.dumps(document, default=plain, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _malformed("Policy", INVALID_JSON, str(exc)) from None


def parse_policy(document: str | Mapping[str, Any], *, kind: PolicyKind = "identity") -> Policy:
    """Parse and check a policy document; raise ``MalformedPolicyDocument`` as IAM would.

    ``document`` is the JSON text or the already-decoded object. ``kind="trust"`` for a
    role's trust policy (Principal required, Resource prohibited), ``"identity"`` for a
    permission policy (Resource required, Principal prohibited). Parses are cached by text.
    """
    if kind not in ("trust", "identity"):
        raise ValueError(f"kind must be 'trust' or 'identity', not {kind!r}")
    text = document if isinstance(document, str) else _as_json(document)
    return _parse_text(text, kind)
