"""How Go's ``encoding/json`` words a value of the wrong type (docs/reference/webhook.md §6.1).

The pod identity webhook decodes the AdmissionReview, then the pod in it, with Go's
``encoding/json``. A value of the wrong JSON type is an ``UnmarshalTypeError``, whose
message names the JSON kind found and the Go type wanted; the webhook denies the
review with that message. The stand-in words its denials the same way, from here.
"""

from __future__ import annotations

__all__ = ["json_kind", "json_type", "struct_field_error", "value_error"]

# Go's names where they differ from RFC 8259's (a null never fails to decode in Go).
_GO_KIND = {"boolean": "bool", "null": "object"}


def json_type(value: object) -> str:
    """The RFC 8259 type of a decoded JSON value: ``null``, ``boolean``, ``number``,
    ``string``, ``array`` or ``object``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def json_kind(value: object) -> str:
    """Go's name for the kind of a decoded JSON value, as ``UnmarshalTypeError`` words it:
    ``string``, ``number``, ``bool``, ``array`` or ``object``."""
    kind = json_type(value)
    return _GO_KIND.get(kind, kind)


def struct_field_error(value: object, field: str, go_type: str) -> str:
    """The message for ``value`` in struct field ``field`` (``Struct.path``) of ``go_type``."""
    return (
        f"json: cannot unmarshal {json_kind(value)} into Go struct field {field} of type {go_type}"
    )


def value_error(value: object, go_type: str) -> str:
    """The message for ``value`` where a whole ``go_type`` was expected."""
    return f"json: cannot unmarshal {json_kind(value)} into Go value of type {go_type}"
