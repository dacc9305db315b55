"""Annotation values parsed the way the Go webhook parses them.

Python's own parsers are more forgiving than Go's (``int(" 3600")`` and
``int("3_600")`` both work), and a faithful port must refuse what Go refuses, so
each parser here states the Go function whose behaviour it copies. Every parser
returns ``None`` for a value Go rejects: the caller then falls back to the next
source, exactly as upstream ignores an annotation it cannot parse.
"""

from __future__ import annotations

import re

__all__ = [
    "CsvError",
    "parse_go_bool",
    "parse_go_csv_record",
    "parse_go_int64",
    "parse_skip_containers",
    "parse_token_expiration",
]

# strconv.ParseBool accepts exactly these spellings.
_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# strconv.ParseInt(s, 10, 64): optional sign, ASCII digits only. Underscores are only
# allowed with base 0, and there is no whitespace trimming.
_GO_DECIMAL = re.compile(r"[+-]?[0-9]+")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


def parse_go_bool(value: str) -> bool | None:
    """``strconv.ParseBool``: ``True``/``False`` for its twelve spellings, else ``None``.

    ``"yes"``, ``"on"``, ``""`` and ``" true"`` are all errors in Go.
    """
    if value in _GO_TRUE:
        return True
    if value in _GO_FALSE:
        return False
    return None


def parse_go_int64(value: str) -> int | None:
    """``strconv.ParseInt(value, 10, 64)``: the integer, or ``None`` on a syntax or range error."""
    if _GO_DECIMAL.fullmatch(value) is None:
        return None
    n = int(value, 10)
    if n < _INT64_MIN or n > _INT64_MAX:
        return None
    return n


class CsvError(ValueError):
    """Raised when a value is not one well-formed CSV record (Go ``encoding/csv`` rules)."""


def parse_go_csv_record(value: str) -> list[str]:
    """The first record of ``value`` read by Go's ``csv.Reader`` with default settings.

    Rules copied from Go: empty lines before the record are skipped; an empty input
    is an error (EOF); fields are split on ``,`` with no space trimming; a field that
    starts with ``"`` is quoted, ``""`` inside it is a literal quote, and it may span
    lines; a bare ``"`` inside an unquoted field, text after a closing quote, or an
    unterminated quote is an error. ``\\r\\n`` counts as ``\\n``.
    """
    text = value.replace("\r\n", "\n")
    lines = text.split("\n")
    # A trailing "\r" right before the end of input is dropped (Go does so for compatibility).
    if lines and lines[-1].endswith("\r"):
        lines[-1] = lines[-1][:-1]
    # split() leaves a final "" after a trailing newline: that is not a line.
    if lines and lines[-1] == "" and text.endswith("\n"):
        lines.pop()
    i = 0
    while i < len(lines) and lines[i] == "":
        i += 1
    if i == len(lines):
        raise CsvError("EOF")
    fields: list[str] = []
    line = lines[i]
    pos = 0
    while True:
        if line.startswith('"', pos):
            # Quoted field: may continue over following lines.
            pos += 1
            buf: list[str] = []
            while True:
                q = line.find('"', pos)
                if q < 0:
                    buf.append(line[pos:])
                    i += 1
                    if i >= len(lines):
                        raise CsvError('extraneous or missing " in quoted-field')
                    buf.append("\n")
                    line, pos = lines[i], 0
                    continue
                buf.append(line[pos:q])
                if line.startswith('"', q + 1):
                    buf.append('"')
                    pos = q + 2
                    continue
                pos = q + 1
                break
            fields.append("".join(buf))
            if pos == len(line):
                return fields
            if line[pos] != ",":
                raise CsvError('extraneous or missing " in quoted-field')
            pos += 1
        else:
            comma = line.find(",", pos)
            end = len(line) if comma < 0 else comma
            field = line[pos:end]
            if '"' in field:
                raise CsvError('bare " in non-quoted-field')
            fields.append(field)
            if comma < 0:
                return fields
            pos = comma + 1


def parse_skip_containers(value: str) -> frozenset[str]:
    """The container names of a ``skip-containers`` annotation; any CSV error skips nothing.

    Names are matched exactly, so ``"a, b"`` skips ``a`` and ``" b"`` (not ``b``).
    """
    try:
        return frozenset(parse_go_csv_record(value))
    except CsvError:
        return frozenset()


def parse_token_expiration(value: str | None, minimum: int) -> int | None:
    """A ``token-expiration`` value in seconds, clamped up to ``minimum``; ``None`` if Go rejects it.

    There is no upper clamp: upstream keeps a 24 h constant but never applies it.
    """
    if value is None:
        return None
    n = parse_go_int64(value)
    if n is None:
        return None
    return max(n, minimum)
