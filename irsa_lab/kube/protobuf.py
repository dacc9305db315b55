"""Kubernetes protobuf bodies (``application/vnd.kubernetes.protobuf``) to and from the
JSON dicts the store keeps.

A body is ``k8s\\x00`` followed by a ``runtime.Unknown`` whose ``typeMeta`` names the
kind and whose ``raw`` is the kind's message from k8s.io/api's ``generated.proto``. The
messages come from ``irsa_lab/data/k8s-protos.binpb`` (compiled from the pinned
modules' ``.proto`` files by :mod:`irsa_lab.kube.protobuf_build`); the conversion walks
their descriptors, with the Go types' JSON names and ``omitempty``/pointer/``inline``
shape from ``k8s-protos.json``, and converts apimachinery's special types as the real
server's JSON does: ``Time`` (seconds, RFC 3339), ``MicroTime`` (microseconds),
``Duration`` (Go duration string), ``IntOrString``, ``Quantity`` (its string),
``RawExtension`` and ``FieldsV1`` (embedded JSON), ``bytes`` (base64), and messages
standing for a named Go slice (``ExtraValue``, ``Verbs``) as plain lists.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

__all__ = [
    "MAGIC",
    "Codec",
    "ProtobufError",
    "UnknownKind",
    "codec",
    "error_message",
    "expected_kind",
    "summarize",
    "format_duration",
    "parse_duration",
]

Obj = dict[str, Any]

MAGIC = b"k8s\x00"
_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_TIME = _META + "Time"
_MICRO_TIME = _META + "MicroTime"
_DURATION = _META + "Duration"
_FIELDS_V1 = _META + "FieldsV1"
_INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
_RAW_EXTENSION = "k8s.io.apimachinery.pkg.runtime.RawExtension"
_UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
# Flags from k8s-protos.json (the Go field's json tag and type).
_OMITEMPTY, _POINTER, _INLINE, _OMITZERO = 1, 2, 4, 8


class ProtobufError(ValueError):
    """Raised when a body is not a Kubernetes protobuf message the lab can read;
    ``kind``/``api_version`` are the envelope's when it could be read."""

    def __init__(self, message: str, kind: str = "", api_version: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.api_version = api_version


class UnknownKind(ProtobufError):
    """Raised when the envelope names a kind the compiled definitions do not have."""


# --- Go's time.Duration text --------------------------------------------------------------

_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "μs": 10**3, "ms": 10**6, "s": 10**9}
_UNITS.update({"m": 60 * 10**9, "h": 3600 * 10**9})
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Nanoseconds in a Go duration string (``"1h2m3.5s"``, ``"-90s"``, ``"0"``)."""
    sign, rest = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    if rest == "0":
        return 0
    total, pos = 0.0, 0
    for match in _DURATION_PART.finditer(rest):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if not rest or pos != len(rest):
        raise ProtobufError(f'time: invalid duration "{text}"')
    return sign * round(total)


def _frac(value: int, digits: int) -> str:
    text = f"{value:0{digits}d}".rstrip("0")
    return "." + text if text else ""


def format_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``"1h0m0s"``, ``"1.5s"``, ``"300ms"``, ``"0s"``."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 10**9:
        for unit, size, digits in (("ms", 10**6, 6), ("µs", 10**3, 3), ("ns", 1, 0)):
            if ns >= size or unit == "ns":
                return f"{sign}{ns // size}{_frac(ns % size, digits) if digits else ''}{unit}"
    seconds, frac = divmod(ns, 10**9)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = f"{seconds}{_frac(frac, 9)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


# --- timestamps -------------------------------------------------------------------------------


def _parse_time(text: str) -> tuple[int, int]:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ProtobufError(f'parsing time "{text}" as RFC 3339 failed') from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    whole = moment.replace(microsecond=0)
    return int(whole.timestamp()), moment.microsecond * 1000


def _format_time(seconds: int, nanos: int, micro: bool) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    if micro:
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos // 1000:06d}Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the codec ----------------------------------------------------------------------------------


def _is_zero(value: Any) -> bool:
    return value is None or value == "" or value == 0 or value is False or value in ([], {})


class Codec:
    """Kubernetes protobuf <-> JSON dicts, over one compiled descriptor set."""

    def __init__(self, descriptor_set: bytes, fields: Obj) -> None:
        self.pool = descriptor_pool.DescriptorPool()
        for file in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file:
            self.pool.Add(file)
        self.kinds: dict[str, str] = fields["kinds"]
        self.fields: dict[str, dict[str, list[Any]]] = fields["messages"]
        self.lists = frozenset(fields["lists"])
        self.version: str = fields.get("version", "")

    # -- messages -----------------------------------------------------------------------
    def message_class(self, full_name: str) -> type[Message]:
        """The Python class of the message ``full_name``."""
        return message_factory.GetMessageClass(self.pool.FindMessageTypeByName(full_name))

    def message_name(self, api_version: str, kind: str) -> str:
        """The message that carries ``kind`` of ``api_version`` (``v1``, ``apps/v1``)."""
        name = self.kinds.get(f"{api_version}/{kind}")
        if name is None:
            raise UnknownKind(f'no kind "{kind}" is registered for version "{api_version}"')
        return name

    def has_kind(self, api_version: str, kind: str) -> bool:
        """Whether the compiled definitions carry ``kind`` of ``api_version``."""
        return f"{api_version}/{kind}" in self.kinds

    # -- envelope -------------------------------------------------------------------------
    def decode(self, body: bytes) -> Obj:
        """A whole ``application/vnd.kubernetes.protobuf`` body as the object's JSON dict."""
        if not body:
            raise ProtobufError("empty data")
        if not body.startswith(MAGIC):
            raise ProtobufError(
                "provided data does not appear to be a protobuf message, expected prefix "
                f"[{' '.join(str(b) for b in MAGIC)}]"
            )
        unknown = self.message_class(_UNKNOWN)()
        try:
            unknown.ParseFromString(body[len(MAGIC) :])
        except DecodeError:
            raise ProtobufError("unexpected EOF") from None  # what Go says for a cut body
        if not unknown.HasField("raw") and any(
            f.field_number == 2 for f in UnknownFieldSet(unknown)
        ):
            raise ProtobufError("the envelope's raw field is not length-delimited")
        type_meta = unknown.typeMeta
        if unknown.contentType not in ("", "application/vnd.kubernetes.protobuf"):
            raise ProtobufError(f"unsupported content type {unknown.contentType!r} in the envelope")
        if not type_meta.kind:
            raise ProtobufError("Object 'Kind' is missing in the protobuf envelope")
        try:
            name = self.message_name(type_meta.apiVersion, type_meta.kind)
            obj = self.from_bytes(name, unknown.raw)
        except ProtobufError as exc:
            raise ProtobufError(str(exc), type_meta.kind, type_meta.apiVersion) from None
        return {"kind": type_meta.kind, "apiVersion": type_meta.apiVersion, **obj}

    def encode(self, obj: Obj) -> bytes:
        """``obj`` (with its ``kind`` and ``apiVersion``) as a whole protobuf body."""
        api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
        raw = self.to_bytes(self.message_name(api_version, kind), obj)
        unknown = self.message_class(_UNKNOWN)()
        unknown.typeMeta.apiVersion = api_version
        unknown.typeMeta.kind = kind
        unknown.raw = raw
        return MAGIC + unknown.SerializeToString(deterministic=True)

    # -- one message ----------------------------------------------------------------------
    def from_bytes(self, full_name: str, raw: bytes) -> Obj:
        """The message ``full_name`` serialised in ``raw``, as JSON."""
        msg = self.message_class(full_name)()
        try:
            msg.ParseFromString(raw)
        except DecodeError:
            raise ProtobufError("unexpected EOF") from None
        out = self._value(msg)
        return out if isinstance(out, dict) else {}

    def to_bytes(self, full_name: str, obj: Obj) -> bytes:
        """``obj`` as the message ``full_name`` (maps in key order, as Go writes them)."""
        msg = self.message_class(full_name)()
        self._fill(msg, obj)
        return msg.SerializeToString(deterministic=True)

    # -- protobuf -> JSON -------------------------------------------------------------------
    def _value(self, msg: Message) -> Any:
        """One message as JSON, special types included."""
        name = msg.DESCRIPTOR.full_name
        m: Any = msg  # generated classes' attributes are dynamic
        if name in (_TIME, _MICRO_TIME):
            if not m.seconds and not m.nanos:
                return None  # Go's zero time: JSON null
            return _format_time(m.seconds, m.nanos, name == _MICRO_TIME)
        if name == _DURATION:
            return format_duration(m.duration)
        if name == _INT_OR_STRING:
            return m.strVal if m.type == 1 else m.intVal
        if name == _QUANTITY:
            return m.string
        if name == _RAW_EXTENSION:
            return _json_or_none(m.raw)
        if name == _FIELDS_V1:
            return _json_or_none(m.Raw)
        if name in self.lists:
            return list(m.items)
        table = self.fields.get(name, {})
        out: Obj = {}
        for fd, value in msg.ListFields():
            json_name, flags = table.get(str(fd.number), (fd.name, _OMITEMPTY))
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                vfd = fd.message_type.fields_by_name["value"]
                conv: Any = {k: self._single(vfd, v) for k, v in value.items()}
            elif fd.is_repeated:
                conv = [self._single(fd, v) for v in value]
            else:
                conv = self._single(fd, value)
            if flags & _INLINE and isinstance(conv, dict):
                out.update(conv)
                continue
            if flags & _POINTER:
                out[json_name] = conv  # a non-nil pointer is always written
            elif isinstance(conv, dict) and fd.message_type is not None and not fd.is_repeated:
                if not (flags & _OMITZERO and not conv):
                    out[json_name] = conv  # Go's omitempty never drops a struct
            elif conv is None and fd.message_type is not None:
                if not flags & _OMITZERO:
                    out[json_name] = None  # a zero metav1.Time is written as null
            elif not (flags & (_OMITEMPTY | _OMITZERO) and _is_zero(conv)):
                out[json_name] = conv
        return out

    def _single(self, fd: FieldDescriptor, value: Any) -> Any:
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            return self._value(value)
        if fd.type == FieldDescriptor.TYPE_BYTES:
            return base64.b64encode(value).decode()
        return value

    # -- JSON -> protobuf -------------------------------------------------------------------
    def _fill(self, msg: Message, value: Any) -> None:
        """Set ``msg`` from its JSON form ``value``."""
        name = msg.DESCRIPTOR.full_name
        try:
            self._fill_special(msg, name, value)
        except (TypeError, ValueError, OverflowError) as exc:
            if isinstance(exc, ProtobufError):
                raise
            short = name.rsplit(".", 1)[-1]
            raise ProtobufError(f"cannot convert {value!r} to {short}: {exc}") from None

    def _fill_special(self, msg: Message, name: str, value: Any) -> None:
        m: Any = msg  # attribute access on generated classes is dynamic
        if name in (_TIME, _MICRO_TIME):
            if value is not None:
                m.seconds, nanos = _parse_time(value)
                if name == _MICRO_TIME:
                    m.nanos = nanos
        elif name == _DURATION:
            m.duration = parse_duration(value)
        elif name == _INT_OR_STRING:
            if isinstance(value, str):
                m.type, m.strVal = 1, value
            elif isinstance(value, int) and not isinstance(value, bool):
                m.type, m.intVal = 0, value
            else:
                raise ProtobufError(f"cannot unmarshal {value!r} into an IntOrString")
        elif name == _QUANTITY:
            m.string = value if isinstance(value, str) else json.dumps(value)
        elif name == _RAW_EXTENSION:
            if value is not None:
                m.raw = json.dumps(value, separators=(",", ":")).encode()
        elif name == _FIELDS_V1:
            m.Raw = json.dumps(value, separators=(",", ":")).encode()
        elif name in self.lists:
            m.items.extend(value)
        else:
            if not isinstance(value, dict):
                raise ProtobufError(f"expected an object for {name.rsplit('.', 1)[-1]}")
            self._fill_fields(m, msg.DESCRIPTOR, value)

    def _fill_fields(self, m: Any, desc: Descriptor, value: Obj) -> None:
        table = self.fields.get(desc.full_name, {})
        for fd in desc.fields:
            json_name, flags = table.get(str(fd.number), (fd.name, _OMITEMPTY))
            if flags & _INLINE:
                sub = getattr(m, fd.name)
                sub.SetInParent()
                self._fill(sub, value)
                continue
            item = value.get(json_name)
            if item is None:
                if json_name in value and fd.message_type is not None and not fd.is_repeated:
                    getattr(m, fd.name).SetInParent()  # null: Go's zero struct, written empty
                continue
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                if not isinstance(item, dict):
                    raise ProtobufError(f"expected an object in {json_name}")
                vfd = fd.message_type.fields_by_name["value"]
                target = getattr(m, fd.name)
                for key, val in item.items():
                    if vfd.type == FieldDescriptor.TYPE_MESSAGE:
                        self._fill(target[key], val)
                    else:
                        target[key] = self._scalar(vfd, val)
            elif fd.is_repeated:
                if not isinstance(item, list):
                    raise ProtobufError(f"expected a list in {json_name}")
                target = getattr(m, fd.name)
                for val in item:
                    if fd.type == FieldDescriptor.TYPE_MESSAGE:
                        self._fill(target.add(), val)
                    else:
                        target.append(self._scalar(fd, val))
            elif fd.type == FieldDescriptor.TYPE_MESSAGE:
                sub = getattr(m, fd.name)
                sub.SetInParent()
                self._fill(sub, item)
            else:
                setattr(m, fd.name, self._scalar(fd, item))

    @staticmethod
    def _scalar(fd: FieldDescriptor, value: Any) -> Any:
        if fd.type == FieldDescriptor.TYPE_BYTES:
            try:
                return base64.b64decode(value, validate=True)
            except (binascii.Error, TypeError):
                raise ProtobufError(f"illegal base64 data in {fd.name}") from None
        if fd.type == FieldDescriptor.TYPE_BOOL and not isinstance(value, bool):
            raise ProtobufError(f"cannot unmarshal {value!r} into the bool {fd.name}")
        if fd.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return float(value)
        return value


def summarize(data: bytes, max_length: int = 30) -> str:
    """How the real server quotes a body it could not read in its error message."""
    if not data:
        return "<empty>"
    if data.startswith(b"{"):
        text = data[:max_length].decode("utf-8", "replace")
        return text + " ..." if len(data) > max_length else text
    return data[:max_length].hex() + (" ..." if len(data) > max_length else "")


def expected_kind(path: str) -> str:
    """The kind a create/update at ``path`` expects (``TokenRequest`` for ``.../token``),
    from the resources the lab serves; "" when the path names none of them."""
    from . import discovery as disc  # a leaf import: discovery is tables only

    by_name = {r.name: r.kind for r in disc.CORE_RESOURCES}
    for group in disc.GROUP_RESOURCES.values():
        by_name.update({r.name: r.kind for r in group})
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[-1] == "token" and "serviceaccounts" in parts:
        return "TokenRequest"
    for part in reversed(parts):
        if part in by_name:
            return by_name[part]
    return ""


def error_message(err: ProtobufError, body: bytes, expected: str) -> str:
    """``err`` worded as the real server's 400 for an unreadable body at a ``expected``
    endpoint."""
    if err.kind:
        return f'{err.kind} in version "{err.api_version}" cannot be handled as a {expected or err.kind}: {err}'
    return f"the object provided is unrecognized (must be of type {expected}): {err} ({summarize(body)})"


def _json_or_none(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ProtobufError("embedded object is not JSON") from None


@functools.cache
def codec() -> Codec:
    """The codec over the packaged definitions (``irsa_lab/data/k8s-protos.*``)."""
    data = resources.files("irsa_lab").joinpath("data")
    return Codec(
        data.joinpath("k8s-protos.binpb").read_bytes(),
        json.loads(data.joinpath("k8s-protos.json").read_text(encoding="utf-8")),
    )
