"""Kubernetes failures as ``Status`` objects.

Every way the API stand-in refuses a request is an :class:`ApiError` carrying the
HTTP code, the ``reason`` and the ``message`` a real kube-apiserver sends, plus
optional ``details``. The HTTP layer turns it into a ``Status`` body in one place
(:meth:`ApiError.status`), so the ``kubernetes`` client, kubectl and a learner
reading ``e.body`` see what they would see against a real cluster.

Error tree (the reasons, not Python subclasses: the reason *is* the class on the
wire, as kubectl's ``Error from server (NotFound)`` shows)::

    ApiError
    ├── 400 BadRequest            unparseable body, bad selector, wrong binding
    ├── 401 Unauthorized          missing bearer token, or one that does not authenticate
    ├── 403 Forbidden             not allowed to the user, ServiceAccount admission, webhook denial
    ├── 404 NotFound              object or path missing
    ├── 405 MethodNotAllowed      verb not served on the path
    ├── 409 AlreadyExists / Conflict
    ├── 410 Expired               watch from a resourceVersion too old
    ├── 413 RequestEntityTooLarge
    ├── 415 UnsupportedMediaType
    ├── 422 Invalid               with ``details.causes``
    └── 500 InternalError         a failing webhook under failurePolicy Fail
"""

from __future__ import annotations

from typing import Any, NotRequired, TypedDict

__all__ = [
    "already_exists",
    "ApiError",
    "bad_request",
    "conflict",
    "duplicate",
    "forbidden",
    "internal_error",
    "invalid",
    "method_not_allowed",
    "not_found",
    "path_not_found",
    "qualified",
    "required",
    "Status",
    "StatusCause",
    "StatusDetails",
    "success_status",
    "unauthorized",
    "unsupported_media_type",
    "value_invalid",
    "value_not_supported",
]


class StatusCause(TypedDict, total=False):
    """One entry of ``details.causes``: ``reason``, ``message``, ``field``."""

    reason: str
    message: str
    field: str


class StatusDetails(TypedDict, total=False):
    """``Status.details``: which object the failure is about."""

    name: str
    group: str
    kind: str
    uid: str
    causes: list[StatusCause]


class Status(TypedDict):
    """The ``meta/v1`` ``Status`` wire object."""

    kind: str
    apiVersion: str
    metadata: dict[str, Any]
    status: str
    message: NotRequired[str]
    reason: NotRequired[str]
    details: NotRequired[StatusDetails]
    code: int


class ApiError(Exception):
    """Raised when the API stand-in refuses a request; serialises to a ``Status``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: StatusDetails | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> Status:
        """The ``Status`` body, keys in the order the real server writes them."""
        body: Status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "code": self.code,
        }
        if self.reason:
            body["reason"] = self.reason
        if self.details is not None:
            body["details"] = self.details
        # Re-order: kind, apiVersion, metadata, status, message, reason, details, code.
        ordered: dict[str, Any] = {}
        for key in ("kind", "apiVersion", "metadata", "status", "message", "reason", "details"):
            if key in body:
                ordered[key] = body[key]  # type: ignore[literal-required,unused-ignore]
        ordered["code"] = self.code
        return ordered  # type: ignore[return-value]

    def __repr__(self) -> str:
        return f"ApiError({self.code}, {self.reason!r}, {self.message!r})"


def success_status(details: StatusDetails | None = None) -> dict[str, Any]:
    """The ``Status`` a delete of some cluster-scoped objects answers with."""
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
    }
    if details:
        body["details"] = details
    return body


def qualified(resource: str, group: str = "") -> str:
    """``pods`` or ``mutatingwebhookconfigurations.admissionregistration.k8s.io``."""
    return f"{resource}.{group}" if group else resource


def _details(name: str, resource: str, group: str) -> StatusDetails:
    d: StatusDetails = {"name": name}
    if group:
        d["group"] = group
    d["kind"] = resource
    return d


def _about(code: int, reason: str, resource: str, name: str, group: str, text: str) -> ApiError:
    """An error about one object: ``<qualified> "<name>" <text>``, details naming it."""
    return ApiError(
        code,
        reason,
        f'{qualified(resource, group)} "{name}" {text}',
        _details(name, resource, group),
    )


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """``pods "p1" not found``."""
    return _about(404, "NotFound", resource, name, group, "not found")


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    """``namespaces "demo" already exists``."""
    return _about(409, "AlreadyExists", resource, name, group, "already exists")


def conflict(resource: str, name: str, why: str, group: str = "") -> ApiError:
    """``Operation cannot be fulfilled on pods "p1": <why>``."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        _details(name, resource, group),
    )


def bad_request(message: str) -> ApiError:
    """A 400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def forbidden(message: str) -> ApiError:
    """A 403 Forbidden with the message as given."""
    return ApiError(403, "Forbidden", message)


def unauthorized() -> ApiError:
    """What a request without a valid bearer token gets."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def method_not_allowed() -> ApiError:
    """A verb the path does not serve."""
    return ApiError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def path_not_found() -> ApiError:
    """A path the server does not serve at all."""
    return ApiError(404, "NotFound", "the server could not find the requested resource")


def unsupported_media_type(accepted: str) -> ApiError:
    """A body in a media type the endpoint does not decode."""
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types "
        f"include: {accepted}",
    )


def invalid(kind: str, name: str, causes: list[StatusCause], group: str = "") -> ApiError:
    """A 422 Invalid: ``Pod "p1" is invalid: spec.containers: Required value``."""
    parts = [
        f"{c.get('field', '')}: {c.get('message', '')}" if c.get("field") else c.get("message", "")
        for c in causes
    ]
    what = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    # The real server leaves an empty name out of details (omitempty); the message
    # still quotes it, e.g. ``TokenRequest.authentication.k8s.io "" is invalid``.
    details: StatusDetails = {}
    if name:
        details["name"] = name
    if group:
        details["group"] = group
    details["kind"] = kind
    details["causes"] = causes
    return ApiError(
        422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: {what}', details
    )


def internal_error(message: str) -> ApiError:
    """A 500 ``Internal error occurred: <message>``."""
    return ApiError(
        500,
        "InternalError",
        f"Internal error occurred: {message}",
        {"causes": [{"message": message}]},
    )


def required(field: str) -> StatusCause:
    """A ``FieldValueRequired`` cause."""
    return {"reason": "FieldValueRequired", "message": "Required value", "field": field}


def value_invalid(field: str, value: Any, why: str) -> StatusCause:
    """A ``FieldValueInvalid`` cause: ``Invalid value: 60: may not ...``."""
    return {
        "reason": "FieldValueInvalid",
        "message": f"Invalid value: {_go_repr(value)}: {why}",
        "field": field,
    }


def value_not_supported(field: str, value: Any, supported: list[str]) -> StatusCause:
    """A ``FieldValueNotSupported`` cause."""
    opts = ", ".join(f'"{s}"' for s in supported)
    return {
        "reason": "FieldValueNotSupported",
        "message": f"Unsupported value: {_go_repr(value)}: supported values: {opts}",
        "field": field,
    }


def duplicate(field: str, value: Any) -> StatusCause:
    """A ``FieldValueDuplicate`` cause."""
    return {
        "reason": "FieldValueDuplicate",
        "message": f"Duplicate value: {_go_repr(value)}",
        "field": field,
    }


def _go_repr(value: Any) -> str:
    # Go's field errors quote strings and print numbers bare.
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return str(value)
    return (
        "{...}" if isinstance(value, dict) else "[...]" if isinstance(value, list) else str(value)
    )
