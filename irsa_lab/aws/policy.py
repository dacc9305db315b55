"""IAM policy documents: parsed as IAM parses them, evaluated as IAM evaluates them, explained.

Two kinds of document go through here:

- a role's **trust policy** (``kind="trust"``): who may assume the role. It must name a
  ``Principal`` and may not name a ``Resource`` (the resource is the role itself), as IAM
  refuses with ``Has prohibited field Resource``;
- an **identity policy** (``kind="identity"``): what the role's sessions may do. It must
  name ``Resource`` and may not name a ``Principal``.

:func:`parse_policy` checks the grammar and raises ``AwsError("MalformedPolicyDocument")``
with IAM's own text where one is known, prefixed by where the fault is
(``Statement[0].Condition: ...``). :func:`evaluate` applies the documented evaluation
logic (an explicit ``Deny`` wins, otherwise one ``Allow`` is needed, otherwise the request
is implicitly denied) and returns a :class:`Decision` that records, for every statement and
every condition, what was compared with what and why it passed or failed.

Choices where AWS leaves room (each repeated in the explanation when it matters):

- A single-valued operator (no ``ForAnyValue:``/``ForAllValues:``) against a request key
  that holds several values passes, for a positive operator, when any value matches; for
  a negated operator (``StringNotEquals``, ``ArnNotLike``, ...) when no value matches.
- ``ArnEquals`` accepts ``*`` and ``?`` exactly like ``ArnLike``, segment by segment, as
  the IAM reference describes.
- Policy variables (``${aws:username}``) are not substituted: values are compared as
  written, and the explanation says so.
- In an identity policy a request without a resource stands for ``*``.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal

from .errors import AwsError

__all__ = [
    "ConditionEntry",
    "ConditionResult",
    "Decision",
    "Policy",
    "PolicyKind",
    "RequestContext",
    "Statement",
    "StatementResult",
    "evaluate",
    "oidc_trust_context",
    "parse_policy",
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
_PRINCIPAL_TYPES = ("AWS", "Federated", "Service", "CanonicalUser")
# Identity providers that trust policies name by bare host instead of an ARN.
_BUILTIN_FEDERATED = (
    "accounts.google.com",
    "cognito-identity.amazonaws.com",
    "www.amazon.com",
    "graph.facebook.com",
)
_ACCOUNT = re.compile(r"\d{12}")
_AWS_PRINCIPAL_ARN = re.compile(r"arn:aws[\w-]*:(iam|sts)::(\d{12}):\S+")
_FEDERATED_ARN = re.compile(r"arn:aws[\w-]*:iam::\d{12}:(oidc-provider|saml-provider)/\S+")
_ACTION_VENDOR = re.compile(r"[A-Za-z0-9-]+")
_ACTION_NAME = re.compile(r"[A-Za-z0-9_*?-]+")
_SID = re.compile(r"[0-9A-Za-z]*")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_EPOCH = re.compile(r"-?\d+(\.\d+)?")


# --- malformed documents ------------------------------------------------------------


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


# --- operators ----------------------------------------------------------------------

# A value test answers "does this one request value match this one policy value?" for
# the positive form of an operator; negated operators reuse the positive test.
_Test = Callable[[str, Any], bool]


@dataclass(frozen=True)
class _Operator:
    family: str  # "String", "Numeric", "Date", "Bool", "Binary", "Arn", "Ip", "Null"
    positive: str  # the positive operator this one is, or negates
    negated: bool
    verb: str  # how the positive test reads: "'a' equals 'b'"
    unverb: str  # and its negation: "'a' does not equal 'b'"


def _op(family: str, positive: str, verb: str, unverb: str, negated: bool = False) -> _Operator:
    return _Operator(family, positive, negated, verb, unverb)


_EQ = ("equals", "does not equal")
_EQ_CI = ("equals (ignoring case)", "does not equal (ignoring case)")
_LIKE = ("matches the pattern", "does not match the pattern")
_ARN = ("matches", "does not match")
_IN = ("is in", "is not in")
_SAME = ("is the same time as", "is not the same time as")
_OPERATORS: dict[str, _Operator] = {
    "StringEquals": _op("String", "StringEquals", *_EQ),
    "StringNotEquals": _op("String", "StringEquals", *_EQ, negated=True),
    "StringEqualsIgnoreCase": _op("String", "StringEqualsIgnoreCase", *_EQ_CI),
    "StringNotEqualsIgnoreCase": _op("String", "StringEqualsIgnoreCase", *_EQ_CI, negated=True),
    "StringLike": _op("String", "StringLike", *_LIKE),
    "StringNotLike": _op("String", "StringLike", *_LIKE, negated=True),
    "NumericEquals": _op("Numeric", "NumericEquals", *_EQ),
    "NumericNotEquals": _op("Numeric", "NumericEquals", *_EQ, negated=True),
    "NumericLessThan": _op("Numeric", "NumericLessThan", "is less than", "is not less than"),
    "NumericLessThanEquals": _op(
        "Numeric", "NumericLessThanEquals", "is at most", "is not at most"
    ),
    "NumericGreaterThan": _op(
        "Numeric", "NumericGreaterThan", "is greater than", "is not greater than"
    ),
    "NumericGreaterThanEquals": _op(
        "Numeric", "NumericGreaterThanEquals", "is at least", "is not at least"
    ),
    "DateEquals": _op("Date", "DateEquals", *_SAME),
    "DateNotEquals": _op("Date", "DateEquals", *_SAME, negated=True),
    "DateLessThan": _op("Date", "DateLessThan", "is before", "is not before"),
    "DateLessThanEquals": _op(
        "Date", "DateLessThanEquals", "is at or before", "is not at or before"
    ),
    "DateGreaterThan": _op("Date", "DateGreaterThan", "is after", "is not after"),
    "DateGreaterThanEquals": _op(
        "Date", "DateGreaterThanEquals", "is at or after", "is not at or after"
    ),
    "Bool": _op("Bool", "Bool", "is", "is not"),
    "BinaryEquals": _op("Binary", "BinaryEquals", *_EQ),
    "IpAddress": _op("Ip", "IpAddress", *_IN),
    "NotIpAddress": _op("Ip", "IpAddress", *_IN, negated=True),
    # The IAM reference gives ArnEquals the same wildcard matching as ArnLike.
    "ArnEquals": _op("Arn", "ArnLike", *_ARN),
    "ArnLike": _op("Arn", "ArnLike", *_ARN),
    "ArnNotEquals": _op("Arn", "ArnLike", *_ARN, negated=True),
    "ArnNotLike": _op("Arn", "ArnLike", *_ARN, negated=True),
    "Null": _op("Null", "Null", "is", "is not"),
}
_QUALIFIERS = ("ForAnyValue", "ForAllValues")
_LITERAL_STAR_OPERATORS = {"StringEquals", "StringEqualsIgnoreCase"}


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character, nothing else."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text.strip()) else None


def _instant(text: str) -> float | None:
    """Seconds since the epoch of an ISO 8601 date/time or of an epoch number."""
    text = text.strip()
    if _EPOCH.fullmatch(text):
        return float(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:  # IAM reads zone-less times as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _binary(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def _arn_match(pattern: str, arn: str) -> bool:
    # The IAM reference: each of the six colon-separated parts is matched on its own,
    # with * and ? allowed in every part; the last part may itself hold colons.
    p_parts = pattern.split(":", 5)
    a_parts = arn.split(":", 5)
    if len(p_parts) != len(a_parts):
        return False
    return all(_glob(p).fullmatch(a) is not None for p, a in zip(p_parts, a_parts, strict=True))


def _compile_value(op: _Operator, value: str) -> Any:
    """The policy value in the form its test needs, or None when it cannot be read."""
    if op.family == "Numeric":
        return _number(value)
    if op.family == "Date":
        return _instant(value)
    if op.family == "Binary":
        return _binary(value)
    if op.family == "Ip":
        return _network(value)
    if op.family in ("Bool", "Null"):
        return value.lower() if value.lower() in ("true", "false") else None
    if op.positive == "StringLike":
        return _glob(value)
    return value


def _test_for(op: _Operator) -> _Test:
    """The positive value test of an operator: request value vs compiled policy value."""
    name = op.positive

    def numeric(
        compare: Callable[[float, float], bool], read: Callable[[str], float | None]
    ) -> _Test:
        def test(actual: str, expected: Any) -> bool:
            got = read(actual)
            return got is not None and compare(got, expected)

        return test

    if name == "StringEquals":
        return lambda a, e: a == e
    if name == "StringEqualsIgnoreCase":
        return lambda a, e: a.casefold() == e.casefold()
    if name == "StringLike":
        return lambda a, e: e.fullmatch(a) is not None
    if name == "Bool":
        return lambda a, e: a.strip().lower() == e
    if name == "BinaryEquals":
        return lambda a, e: _binary(a) == e
    if name == "IpAddress":

        def in_network(actual: str, expected: Any) -> bool:
            try:
                return ipaddress.ip_address(actual.strip()) in expected
            except ValueError:
                return False

        return in_network
    if name == "ArnLike":
        return lambda a, e: _arn_match(e, a)
    read = _number if op.family == "Numeric" else _instant
    compare: dict[str, Callable[[float, float], bool]] = {
        "Equals": lambda a, e: a == e,
        "LessThan": lambda a, e: a < e,
        "LessThanEquals": lambda a, e: a <= e,
        "GreaterThan": lambda a, e: a > e,
        "GreaterThanEquals": lambda a, e: a >= e,
    }
    return numeric(compare[name.removeprefix(op.family)], read)


# One test per positive operator; Null has none (it looks at presence, not values).
_TESTS: dict[str, _Test] = {
    op.positive: _test_for(op) for op in _OPERATORS.values() if op.family != "Null"
}


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
        return _OPERATORS[self.base].negated


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
    # "*" for everyone, else (type, value) pairs; None when the element is absent.
    principal: str | tuple[tuple[str, str], ...] | None
    not_principal: str | tuple[tuple[str, str], ...] | None
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


def _invalid_principal(ptype: str, value: Any) -> str:
    """IAM's text, which quotes the offending type and value as JSON."""
    return f"Invalid principal in policy: {json.dumps(ptype)}:{json.dumps(value)}"


def _principal(value: Any, where: str) -> str | tuple[tuple[str, str], ...]:
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
                    _ACCOUNT.fullmatch(item) or _AWS_PRINCIPAL_ARN.fullmatch(item)
                )
            elif ptype == "Federated":
                ok = item in _BUILTIN_FEDERATED or bool(_FEDERATED_ARN.fullmatch(item))
            else:
                ok = bool(item) and not any(c.isspace() for c in item)
            if not ok:
                raise _malformed(where, _invalid_principal(ptype, item))
            pairs.append((ptype, item))
    return tuple(pairs)


def _condition_value(value: Any) -> str | None:
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
        if qualifier not in _QUALIFIERS:
            raise _malformed(
                where,
                SYNTAX,
                f"unknown set operator {qualifier!r} in {operator!r}: use ForAnyValue or ForAllValues",
            )
    if_exists = rest.endswith("IfExists")
    base = rest.removesuffix("IfExists") if if_exists else rest
    if base not in _OPERATORS:
        guess = difflib.get_close_matches(base, list(_OPERATORS), n=1)
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
        op = _OPERATORS[base]
        if not isinstance(keys, dict) or not keys:
            raise _malformed(at, SYNTAX, f"{operator} must map condition keys to values")
        for key, raw in keys.items():
            if ":" not in key:
                raise _malformed(at, NEEDS_VENDOR, f"condition key {key!r} has no prefix")
            raw_list = raw if isinstance(raw, list) else [raw]
            values = [_condition_value(v) for v in raw_list]
            if not raw_list or any(v is None for v in values):
                raise _malformed(
                    at,
                    SYNTAX,
                    f"the value of {key!r} must be a string, number, boolean or a non-empty list of them",
                )
            texts = tuple(v for v in values if v is not None)
            compiled = tuple(_compile_value(op, v) for v in texts)
            for text, value in zip(texts, compiled, strict=True):
                if value is None:
                    raise _malformed(
                        at, SYNTAX, f"{text!r} is not a valid {op.family.lower()} value for {base}"
                    )
            entries.append(
                ConditionEntry(operator, key, texts, base, qualifier, if_exists, compiled)
            )
    return tuple(entries)


def _statement(raw: Any, index: int, kind: PolicyKind) -> Statement:
    where = f"Statement[{index}]"
    if not isinstance(raw, dict):
        raise _malformed(where, SYNTAX, "a statement must be a JSON object")
    for key in raw:
        if key not in _STATEMENT_KEYS:
            raise _malformed(
                where,
                SYNTAX,
                f"unknown field {key!r}; a statement may hold {', '.join(_STATEMENT_KEYS)}",
            )

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

    if "Action" in raw and "NotAction" in raw:
        raise _malformed(where, SYNTAX, "a statement has Action or NotAction, not both")
    if "Action" not in raw and "NotAction" not in raw:
        raise _malformed(where, NEEDS_ACTIONS)
    actions = not_actions = None
    if "Action" in raw:
        actions = _strings(raw["Action"], where, "Action")
    else:
        not_actions = _strings(raw["NotAction"], where, "NotAction")
    for action in actions or not_actions or ():
        _check_action(action, where)

    resources = not_resources = None
    if kind == "trust":
        # The resource of a trust policy is the role it is attached to.
        for name in ("Resource", "NotResource"):
            if name in raw:
                raise _malformed(where, f"Has prohibited field {name}")
    else:
        if "Resource" in raw and "NotResource" in raw:
            raise _malformed(where, SYNTAX, "a statement has Resource or NotResource, not both")
        if "Resource" not in raw and "NotResource" not in raw:
            raise _malformed(where, NEEDS_RESOURCES)
        if "Resource" in raw:
            resources = _strings(raw["Resource"], where, "Resource")
        else:
            not_resources = _strings(raw["NotResource"], where, "NotResource")
        for resource in resources or not_resources or ():
            _check_resource(resource, where)

    principal = not_principal = None
    if kind == "identity":
        for name in ("Principal", "NotPrincipal"):
            if name in raw:
                raise _malformed(where, f"Has prohibited field {name}")
    else:
        if "Principal" in raw and "NotPrincipal" in raw:
            raise _malformed(where, SYNTAX, "a statement has Principal or NotPrincipal, not both")
        if "Principal" not in raw and "NotPrincipal" not in raw:
            raise _malformed(where, "Missing required field Principal")
        if "Principal" in raw:
            principal = _principal(raw["Principal"], where)
        else:
            not_principal = _principal(raw["NotPrincipal"], where)

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
    for key in document:
        if key not in _TOP_KEYS:
            raise _malformed(
                "Policy", SYNTAX, f"unknown field {key!r}; a policy may hold Version, Id, Statement"
            )
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


# --- the request and the results ---------------------------------------------------------


@dataclass(frozen=True)
class RequestContext:
    """What is being asked: the action, the resource, who asks, and the condition keys.

    ``resource`` is None for a trust policy (the resource is the role). ``principal`` maps
    a principal type to every identity the caller has, e.g. ``{"Federated": [provider
    ARN]}`` or ``{"AWS": [session ARN, role ARN]}``. ``keys`` are the condition context;
    their names are matched case-insensitively, a value may be one string or a list.
    """

    action: str
    resource: str | None = None
    principal: Mapping[str, Sequence[str]] = field(default_factory=dict)
    keys: Mapping[str, str | Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ConditionResult:
    """How one condition key fared: what the policy expected, what the request held, why."""

    operator: str
    key: str
    expected: list[str]
    actual: list[str] | None  # None: the key is absent from the request
    passed: bool
    note: str


@dataclass(frozen=True)
class StatementResult:
    """How one statement fared against the request."""

    policy: str
    index: int
    sid: str | None
    effect: str
    action_matched: bool
    resource_matched: bool
    principal_matched: bool
    conditions: list[ConditionResult]
    applies: bool
    note: str

    @property
    def where(self) -> str:
        """``<policy label> Statement[i]`` plus the Sid when there is one."""
        sid = f" (Sid {self.sid!r})" if self.sid else ""
        return f"{self.policy} Statement[{self.index}]{sid}"

    @property
    def targets_request(self) -> bool:
        """True when action, resource and principal match: only conditions can stop it."""
        return self.action_matched and self.resource_matched and self.principal_matched


@dataclass(frozen=True)
class Decision:
    """The verdict on a request, with the trail of every statement and condition."""

    allowed: bool
    reason: Literal["Allow", "ExplicitDeny", "ImplicitDeny"]
    statements: list[StatementResult]
    request: RequestContext | None = None

    def failed_conditions(self) -> list[ConditionResult]:
        """Conditions that failed in statements that otherwise target this request."""
        return [
            c for s in self.statements if s.targets_request for c in s.conditions if not c.passed
        ]

    def deciding_statements(self) -> list[StatementResult]:
        """The statements that decided: the applying Denies, else the applying Allows."""
        effect = "Deny" if self.reason == "ExplicitDeny" else "Allow"
        return [s for s in self.statements if s.applies and s.effect == effect]

    def verdict(self) -> str:
        """One sentence: the decision and the statement behind it."""
        action = self.request.action if self.request else "the action"
        deciding = self.deciding_statements()
        if self.reason == "ExplicitDeny":
            return (
                f"ExplicitDeny: {deciding[0].where} denies {action}; "
                "an explicit Deny overrides every Allow."
            )
        if self.reason == "Allow":
            return f"Allow: {deciding[0].where} allows {action} and no statement denies it."
        near = [s for s in self.statements if s.effect == "Allow" and s.targets_request]
        why = " (an Allow statement matched but a condition failed)" if near else ""
        return f"ImplicitDeny: no statement allows {action}{why}, so it is denied by default."

    def explain(self) -> str:
        """Plain text, one block per statement and per condition, then the verdict."""
        lines: list[str] = []
        if self.request is not None:
            lines.extend(_describe_request(self.request))
        if not self.statements:
            lines.append("No policy statements were given.")
        for s in self.statements:
            state = "applies" if s.applies else "does not apply"
            lines.append(f"{s.where}: {s.effect}, {state}")
            lines.append(f"  action     {_yes(s.action_matched)}")
            if self.request is None or self.request.resource is not None:
                lines.append(f"  resource   {_yes(s.resource_matched)}")
            lines.append(f"  principal  {_yes(s.principal_matched)}")
            for c in s.conditions:
                lines.append(f"  condition  {c.operator} {c.key}")
                lines.append(f"    expected: {_show(c.expected)}")
                lines.append(f"    actual:   {_show(c.actual)}")
                lines.append(f"    result:   {'passed' if c.passed else 'FAILED'}: {c.note}")
            lines.append(f"  => {s.note}")
        lines.append(f"Verdict: {self.verdict()}")
        return "\n".join(lines)


def _yes(flag: bool) -> str:
    return "matched" if flag else "NOT matched"


def _show(values: Sequence[str] | None) -> str:
    if values is None:
        return "(key not present in request)"
    if not values:
        return "(empty)"
    return ", ".join(f"'{v}'" for v in values)


def _describe_request(ctx: RequestContext) -> list[str]:
    lines = [f"Request: {ctx.action}"]
    lines.append(f"  resource: {ctx.resource if ctx.resource is not None else '(the role itself)'}")
    for ptype, ids in ctx.principal.items():
        lines.append(f"  principal {ptype}: {_show(_values(ids))}")
    for key, value in ctx.keys.items():
        lines.append(f"  key {key} = {_show(_values(value))}")
    return lines


# --- evaluation ---------------------------------------------------------------------------


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return str(value)


def _values(value: Any) -> list[str]:
    """A request value as a list of strings (one string stays one value)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [_scalar(v) for v in value]
    return [_scalar(value)]


def _action_matches(patterns: tuple[str, ...], action: str) -> bool:
    return any(_glob(p, True).fullmatch(action) is not None for p in patterns)


def _resource_matches(patterns: tuple[str, ...], resource: str) -> bool:
    return any(_glob(p).fullmatch(resource) is not None for p in patterns)


def _account_of(arn: str) -> str | None:
    if _ACCOUNT.fullmatch(arn):
        return arn
    parts = arn.split(":", 5)
    return parts[4] if len(parts) == 6 and parts[0] == "arn" else None


def _principal_matches(
    spec: str | tuple[tuple[str, str], ...], caller: Mapping[str, list[str]]
) -> bool:
    if isinstance(spec, str):  # "*": everyone
        return True
    for ptype, want in spec:
        have = caller.get(ptype, [])
        if not have:
            continue
        if want == "*" or want in have:
            return True
        # An account (id or :root ARN) stands for every principal of that account.
        if ptype == "AWS":
            account = want if _ACCOUNT.fullmatch(want) else None
            if want.endswith(":root"):
                account = _account_of(want)
            if account is not None and any(_account_of(h) == account for h in have):
                return True
    return False


def _lookup(key: str, keys: Mapping[str, list[str]]) -> list[str] | None:
    found = keys.get(key.lower())
    return found if found else None  # an empty list counts as absent, as in IAM


def _phrase(values: Sequence[str]) -> str:
    return f"'{values[0]}'" if len(values) == 1 else "any of " + _show(values)


def _evaluate_condition(
    c: ConditionEntry, keys: Mapping[str, list[str]], original: Mapping[str, Any]
) -> ConditionResult:
    op = _OPERATORS[c.base]
    actual = _lookup(c.key, keys)
    expected = list(c.values)

    def result(passed: bool, note: str, extra: Sequence[str] = ()) -> ConditionResult:
        hints = _hints(c, actual, original, passed)
        return ConditionResult(
            c.operator, c.key, expected, actual, passed, _sentence(note, [*extra, *hints])
        )

    if c.base == "Null":
        absent = actual is None
        passed = any((v == "true") == absent for v in c.values)
        if absent:
            tail = ", as Null true asks" if passed else ", but Null false asks for it to be present"
            return result(passed, "key not present in request" + tail)
        tail = ", as Null false asks" if passed else ", but Null true asks for it to be absent"
        return result(passed, "the key is present in the request" + tail)

    if actual is None:
        if c.if_exists:
            return result(
                True, f"key not present in request; {c.operator} passes when the key is missing"
            )
        if c.qualifier == "ForAllValues":
            return result(
                True,
                "key not present in request; ForAllValues passes when the key is missing "
                "(a known pitfall: add a Null check when the key must be there)",
            )
        if c.qualifier == "ForAnyValue":
            return result(False, "key not present in request; ForAnyValue needs at least one value")
        if op.negated:
            return result(
                True,
                f"key not present in request; a negated operator ({c.base}) passes when the key is missing",
            )
        return result(False, "key not present in request")

    test = _TESTS[op.positive]

    def first_hit(value: str) -> str | None:
        """The first policy value that this request value matches under the positive test."""
        for text, compiled in zip(c.values, c.compiled, strict=True):
            if test(value, compiled):
                return text
        return None

    hits = [(a, first_hit(a)) for a in actual]

    def describe(value: str, hit: str | None) -> str:
        return (
            f"'{value}' {op.verb} '{hit}'"
            if hit is not None
            else f"'{value}' {op.unverb} {_phrase(expected)}"
        )

    def satisfies(hit: str | None) -> bool:
        return (hit is None) if op.negated else (hit is not None)

    good = [(a, h) for a, h in hits if satisfies(h)]
    bad = [(a, h) for a, h in hits if not satisfies(h)]
    every = "; ".join(describe(a, h) for a, h in hits)
    if c.qualifier == "ForAllValues":
        if not bad:
            return result(True, f"every request value satisfies {c.base}: {every}")
        return result(
            False, f"{describe(*bad[0])}, and ForAllValues needs every value to satisfy {c.base}"
        )
    if c.qualifier == "ForAnyValue":
        if good:
            return result(
                True,
                f"{describe(*good[0])}, and ForAnyValue needs only one value to satisfy {c.base}",
            )
        return result(False, f"no request value satisfies {c.base}: {every}")

    # A single-valued operator; with several request values, positive operators pass
    # when any value matches and negated ones when none does (see the module docstring).
    many = []
    if len(actual) > 1:
        rule = "none of them matches" if op.negated else "any of them matches"
        many = [
            f"the key holds {len(actual)} values and {c.base} without ForAnyValue:/ForAllValues: "
            f"passes here when {rule}"
        ]
    if op.negated:
        if not bad:
            return result(True, f"{every}, so {c.base} passes", many)
        return result(False, f"{describe(*bad[0])}, so {c.base} fails", many)
    if good:
        return result(True, describe(*good[0]), many)
    return result(False, every, many)


def _sentence(note: str, hints: list[str]) -> str:
    return "; ".join([note, *hints]) + "."


def _hints(
    c: ConditionEntry, actual: list[str] | None, original: Mapping[str, Any], passed: bool
) -> list[str]:
    """Readable pointers at the usual mistakes, added to a condition's note."""
    hints: list[str] = []
    if c.base in _LITERAL_STAR_OPERATORS or c.base in (
        "StringNotEquals",
        "StringNotEqualsIgnoreCase",
    ):
        if any("*" in v or "?" in v for v in c.values):
            like = "StringNotLike" if "Not" in c.base else "StringLike"
            hints.append(f"'*' is literal under {c.base}; use {like} for wildcards")
    if c.base == "StringEquals" and actual is not None and not passed:
        folded = {v.casefold() for v in c.values}
        if any(a.casefold() in folded for a in actual) and not any(a in c.values for a in actual):
            hints.append(
                "values are case-sensitive and differ only in case (StringEqualsIgnoreCase ignores case)"
            )
    if (
        not passed
        and c.key.lower().endswith(":sub")
        and actual is not None
        and not any(a in c.values for a in actual)
    ):
        hints.extend(_service_account_hint(c.values, actual))
    if any("${" in v for v in c.values):
        hints.append(
            "policy variables such as ${aws:username} are not substituted in this lab; the value was compared as written"
        )
    if actual is None:
        if c.key.lower().startswith(("https://", "http://")):
            bare = c.key.split("://", 1)[1]
            present = next((k for k in original if k.lower() == bare.lower()), None)
            where = f" (the request has '{present}')" if present else ""
            hints.append(
                f"condition keys of an OIDC provider are written without 'https://'{where}"
            )
        else:
            suffix = c.key.rsplit(":", 1)[-1].lower()
            similar = [
                k
                for k in original
                if k.rsplit(":", 1)[-1].lower() == suffix and k.lower() != c.key.lower()
            ]
            if similar:
                hints.append(f"the request has '{similar[0]}': check the provider part of the key")
    return hints


_SA_SUB = re.compile(r"system:serviceaccount:([^:]*):([^:]*)")


def _service_account_hint(expected: Sequence[str], actual: Sequence[str]) -> list[str]:
    """Say which half of a ``system:serviceaccount:<namespace>:<name>`` subject differs."""
    got = _SA_SUB.fullmatch(actual[0])
    want = _SA_SUB.fullmatch(expected[0])
    if got is None or want is None or "*" in expected[0] or "?" in expected[0]:
        return []
    parts = []
    if got[1] != want[1]:
        parts.append(f"the namespace differs ('{got[1]}' in the token, '{want[1]}' in the policy)")
    if got[2] != want[2]:
        parts.append(
            f"the service account name differs ('{got[2]}' in the token, '{want[2]}' in the policy)"
        )
    return parts


def _statement_result(
    label: str,
    st: Statement,
    kind: PolicyKind,
    ctx: RequestContext,
    caller: Mapping[str, list[str]],
    keys: Mapping[str, list[str]],
) -> StatementResult:
    reasons: list[str] = []
    if st.actions is not None:
        action_ok = _action_matches(st.actions, ctx.action)
        if not action_ok:
            reasons.append(f"Action {_show(list(st.actions))} does not cover {ctx.action}")
    else:
        action_ok = not _action_matches(st.not_actions or (), ctx.action)
        if not action_ok:
            reasons.append(f"NotAction excludes {ctx.action}")

    if kind == "trust":
        resource_ok = True  # the role itself
    else:
        resource = ctx.resource if ctx.resource is not None else "*"
        if st.resources is not None:
            resource_ok = _resource_matches(st.resources, resource)
            if not resource_ok:
                reasons.append(f"Resource {_show(list(st.resources))} does not cover {resource}")
        else:
            resource_ok = not _resource_matches(st.not_resources or (), resource)
            if not resource_ok:
                reasons.append(f"NotResource excludes {resource}")

    if kind == "identity":
        principal_ok = True  # the policy is attached to the caller
    elif st.principal is not None:
        principal_ok = _principal_matches(st.principal, caller)
        if not principal_ok:
            reasons.append(
                f"Principal {_principal_text(st.principal)} does not name the caller ({_caller_text(caller)})"
            )
    else:
        principal_ok = not _principal_matches(st.not_principal or "*", caller)
        if not principal_ok:
            reasons.append(f"NotPrincipal names the caller ({_caller_text(caller)})")

    conditions = [_evaluate_condition(c, keys, ctx.keys) for c in st.conditions]
    failed = [c for c in conditions if not c.passed]
    for c in failed:
        reasons.append(f"condition {c.operator} on {c.key} failed")
    applies = action_ok and resource_ok and principal_ok and not failed
    if applies:
        verb = "allows" if st.effect == "Allow" else "explicitly denies"
        note = f"applies: it {verb} the request"
    else:
        note = "does not apply: " + "; ".join(reasons)
    return StatementResult(
        label,
        st.index,
        st.sid,
        st.effect,
        action_ok,
        resource_ok,
        principal_ok,
        conditions,
        applies,
        note,
    )


def _principal_text(spec: str | tuple[tuple[str, str], ...]) -> str:
    if isinstance(spec, str):
        return spec
    return ", ".join(f"{t} {v}" for t, v in spec)


def _caller_text(caller: Mapping[str, list[str]]) -> str:
    shown = ", ".join(f"{t} {v}" for t, vs in caller.items() for v in vs)
    return shown or "no principal"


def evaluate(
    policies: Sequence[tuple[str, str | Mapping[str, Any] | Policy]],
    ctx: RequestContext,
    *,
    kind: PolicyKind | None = None,
) -> Decision:
    """Decide a request against labelled policies and keep the reasons.

    Documents given as text or objects are parsed (and cached) as trust policies when
    ``ctx.resource`` is None, else as identity policies, unless ``kind`` says otherwise;
    a malformed one raises ``MalformedPolicyDocument``. An explicit Deny in any statement
    wins; otherwise one applying Allow is needed; otherwise the request is implicitly denied.
    """
    default_kind: PolicyKind = kind or ("trust" if ctx.resource is None else "identity")
    caller = {ptype: _values(ids) for ptype, ids in ctx.principal.items()}
    keys = {k.lower(): _values(v) for k, v in ctx.keys.items()}
    results: list[StatementResult] = []
    for label, document in policies:
        policy = (
            document if isinstance(document, Policy) else parse_policy(document, kind=default_kind)
        )
        for st in policy.statements:
            results.append(_statement_result(label, st, policy.kind, ctx, caller, keys))
    if any(r.applies and r.effect == "Deny" for r in results):
        return Decision(False, "ExplicitDeny", results, ctx)
    if any(r.applies and r.effect == "Allow" for r in results):
        return Decision(True, "Allow", results, ctx)
    return Decision(False, "ImplicitDeny", results, ctx)


def oidc_trust_context(provider_arn: str, claims: Mapping[str, Any]) -> RequestContext:
    """The request STS evaluates a trust policy with for AssumeRoleWithWebIdentity.

    The caller is the OIDC provider (``Principal.Federated``); the condition keys are
    ``<provider url>:sub`` and ``<provider url>:aud`` (the URL without ``https://``, as in
    the provider ARN), plus the ``aws:`` keys STS sets for web identities. A token with
    several audiences is matched on its ``azp``, as STS does.
    """
    url = provider_arn.split(":oidc-provider/", 1)[-1]
    keys: dict[str, str | Sequence[str]] = {}
    if "sub" in claims:
        keys[f"{url}:sub"] = str(claims["sub"])
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    if isinstance(aud, list) and "azp" in claims:
        aud = claims["azp"]
    if isinstance(aud, str):
        keys[f"{url}:aud"] = aud
    elif isinstance(aud, list):
        keys[f"{url}:aud"] = [str(a) for a in aud]
    account = _account_of(provider_arn)
    if account:
        keys["aws:PrincipalAccount"] = account
    keys["aws:PrincipalType"] = "User"
    keys["aws:userid"] = provider_arn
    return RequestContext(
        action="sts:AssumeRoleWithWebIdentity",
        resource=None,
        principal={"Federated": [provider_arn]},
        keys=keys,
    )
