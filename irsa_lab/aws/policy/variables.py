"""Policy variables: ``${aws:username}`` and its kin replaced by the request's values.

docs/reference/sts.md §6.3 (IAM User Guide, "IAM policy elements: Variables and
tags"). What IAM documents, and this module does:

- variables exist only in policy language ``Version`` ``2012-10-17``; in ``2008-10-17``
  (or with no ``Version``) ``${aws:username}`` is a literal string;
- they are replaced in ``Resource``/``NotResource`` and in the values of string and ARN
  condition operators; any request-context key may be named, case-insensitively;
- ``${*}``, ``${?}`` and ``${$}`` stand for a literal ``*``, ``?`` and ``$``;
- ``${key, 'default'}`` gives the text to use when the key is absent (``''`` inside the
  quotes is one quote);
- a variable whose key has no value (and no default) leaves nothing to match: that
  resource or condition value matches no request, so a positive operator fails and a
  negated one passes.

Choices where AWS leaves room (each said in the explanation when it matters):

- What a variable puts in is literal text, never a wildcard: a request value holding
  ``*`` does not widen a ``StringLike`` or a ``Resource``. (IAM user names and tag values
  cannot hold ``*`` or ``?``, so no real request can tell the difference.)
- A key with several values (``aws:TagKeys``) has no single value to put in, so it
  counts as having none, as the Huawei and AWS guides both describe for multivalued keys.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "LITERAL_QUESTION",
    "LITERAL_STAR",
    "VARIABLE_VERSION",
    "Substitution",
    "has_variables",
    "plain_text",
    "substitute",
]

VARIABLE_VERSION = "2012-10-17"
"""The one policy language version in which ``${...}`` is a variable."""

# Private-use characters standing for a ``*`` or ``?`` that must match only itself. A
# policy document cannot hold them (the service models allow U+0009..U+00FF), so they
# never clash with what a policy author wrote; :func:`.operators.glob` reads them as
# literal characters and :func:`plain_text` turns them back.
LITERAL_STAR = "\ue000"
LITERAL_QUESTION = "\ue001"
_LITERAL = str.maketrans({"*": LITERAL_STAR, "?": LITERAL_QUESTION})
_PLAIN = str.maketrans({LITERAL_STAR: "*", LITERAL_QUESTION: "?"})

_ESCAPES = {"*": LITERAL_STAR, "?": LITERAL_QUESTION, "$": "$"}
_BODY = re.compile(r"\s*([^,'\s]+)\s*(?:,\s*'((?:[^']|'')*)'\s*)?")


@dataclass(frozen=True)
class Substitution:
    """A policy value with its variables replaced, or ``text`` None when one had no value.

    ``notes`` says what each variable became, for the explanation.
    """

    text: str | None
    notes: tuple[str, ...] = ()


def has_variables(text: str) -> bool:
    """Whether ``text`` holds a ``${`` that may start a variable."""
    return "${" in text


def plain_text(text: str) -> str:
    """A substituted value with its literal ``*`` and ``?`` markers turned back into characters."""
    return text.translate(_PLAIN)


def _lookup(key: str, keys: Mapping[str, Sequence[str]]) -> str | None:
    values = keys.get(key.lower())
    if not values or len(values) != 1:
        return None
    return values[0]


def _end_of_variable(text: str, start: int) -> int:
    """The index of the ``}`` that closes the variable opened at ``start``, or -1."""
    quoted = False
    i = start
    while i < len(text):
        c = text[i]
        if c == "'":
            quoted = not quoted
        elif c == "}" and not quoted:
            return i
        i += 1
    return -1


def substitute(text: str, keys: Mapping[str, Sequence[str]]) -> Substitution:
    """``text`` with every ``${...}`` replaced from ``keys`` (lower-cased key names).

    What comes in from the request or a default is marked literal (:data:`LITERAL_STAR`,
    :data:`LITERAL_QUESTION`), so it never acts as a wildcard. A ``${`` that does not
    close, or whose inside is not a key, is left as written.
    """
    out: list[str] = []
    notes: list[str] = []
    missing = False
    pos = 0
    while True:
        start = text.find("${", pos)
        if start < 0:
            out.append(text[pos:])
            break
        out.append(text[pos:start])
        end = _end_of_variable(text, start + 2)
        if end < 0:
            out.append(text[start:])
            break
        whole, body = text[start : end + 1], text[start + 2 : end]
        pos = end + 1
        if body in _ESCAPES:
            out.append(_ESCAPES[body])
            continue
        m = _BODY.fullmatch(body)
        if m is None:
            out.append(whole)
            continue
        key, default = m.group(1), m.group(2)
        value = _lookup(key, keys)
        if value is not None:
            out.append(value.translate(_LITERAL))
            notes.append(f"{whole} is '{value}'")
        elif default is not None:
            fallback = default.replace("''", "'")
            out.append(fallback.translate(_LITERAL))
            notes.append(f"{whole}: {key} is not in the request, so the default '{fallback}'")
        else:
            missing = True
            notes.append(f"{whole} has no value ({key} is not in the request)")
    if missing:
        return Substitution(None, tuple(notes))
    return Substitution("".join(out), tuple(notes))
