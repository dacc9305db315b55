"""The condition operators of the IAM policy language, and how each compares two values.

docs/reference/sts.md §2.3 (Operators). Every operator has a positive form and maybe a
negated one (``StringNotEquals`` negates ``StringEquals``); a negated operator reuses the
positive test and inverts its outcome, so one table lists them all. The grammar
(:mod:`.grammar`) reads a policy's values with :func:`compile_value` once, when the
document is parsed; the evaluation (:mod:`.evaluation`) runs :data:`TESTS` on them.

Choices where AWS leaves room:

- ``ArnEquals`` accepts ``*`` and ``?`` exactly like ``ArnLike``, segment by segment, as
  the IAM reference describes.
- Dates are ISO 8601 or epoch seconds; a date without a zone is read as UTC, as IAM does.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from .variables import LITERAL_QUESTION, LITERAL_STAR, plain_text

__all__ = [
    "LITERAL_STAR_OPERATORS",
    "OPERATORS",
    "QUALIFIERS",
    "TESTS",
    "Operator",
    "ValueTest",
    "compile_value",
    "glob",
]

# A value test answers "does this one request value match this one policy value?" for
# the positive form of an operator; negated operators reuse the positive test.
ValueTest = Callable[[str, Any], bool]


@dataclass(frozen=True)
class Operator:
    """One condition operator: its family, the positive test it uses, and how it reads."""

    family: str  # "String", "Numeric", "Date", "Bool", "Binary", "Arn", "Ip", "Null"
    positive: str  # the positive operator this one is, or negates
    negated: bool
    verb: str  # how the positive test reads: "'a' equals 'b'"
    unverb: str  # and its negation: "'a' does not equal 'b'"


def _op(family: str, positive: str, verb: str, unverb: str, negated: bool = False) -> Operator:
    return Operator(family, positive, negated, verb, unverb)


_EQ = ("equals", "does not equal")
_EQ_CI = ("equals (ignoring case)", "does not equal (ignoring case)")
_LIKE = ("matches the pattern", "does not match the pattern")
_ARN = ("matches", "does not match")
_IN = ("is in", "is not in")
_SAME = ("is the same time as", "is not the same time as")
OPERATORS: dict[str, Operator] = {
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
"""Every operator by name, without set qualifier and ``IfExists``."""

QUALIFIERS = ("ForAnyValue", "ForAllValues")
#: The operators under which a ``*`` in a value is a literal star, not a wildcard.
LITERAL_STAR_OPERATORS = {"StringEquals", "StringEqualsIgnoreCase"}


_GLOB = {"*": ".*", "?": ".", LITERAL_STAR: re.escape("*"), LITERAL_QUESTION: re.escape("?")}


@lru_cache(maxsize=4096)
def glob(pattern: str, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character, nothing else.

    A ``*`` or ``?`` that a policy variable put in (:mod:`.variables`) matches only itself.
    """
    parts = (_GLOB.get(c) or re.escape(c) for c in pattern)
    flags = re.DOTALL | (re.IGNORECASE if ignore_case else 0)
    return re.compile("".join(parts), flags)


_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_EPOCH = re.compile(r"-?\d+(\.\d+)?")


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
    return all(glob(p).fullmatch(a) is not None for p, a in zip(p_parts, a_parts, strict=True))


def compile_value(op: Operator, value: str) -> Any:
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
        return glob(value)
    if op.family == "String":
        return plain_text(value)  # a substituted ``${*}`` compares as a plain ``*``
    return value


def _test_for(op: Operator) -> ValueTest:
    """The positive value test of an operator: request value vs compiled policy value."""
    name = op.positive

    def numeric(
        compare: Callable[[float, float], bool], read: Callable[[str], float | None]
    ) -> ValueTest:
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


TESTS: dict[str, ValueTest] = {
    op.positive: _test_for(op) for op in OPERATORS.values() if op.family != "Null"
}
"""One test per positive operator; Null has none (it looks at presence, not values)."""
