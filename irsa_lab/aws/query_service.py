"""One query-protocol endpoint, shared by the STS and IAM stand-ins.

A :class:`QueryService` is a service's operation table plus what the protocol does
around it. Every request takes the same path:

1. the body is read (``RequestEntityTooLarge``, 413, over the app's limit);
2. the form is parsed, query string first, then the ``POST`` body
   (:func:`.query.parse_query`);
3. the caller is authenticated, when the service wants it for every call: IAM does
   (SigV4, :mod:`.sigv4`, in the ``Authorization`` header or a presigned query
   string); STS does not, since ``AssumeRoleWithWebIdentity`` is unsigned, and its
   ``GetCallerIdentity`` authenticates inside the operation;
4. ``Action`` picks the operation (``MissingAction``; ``InvalidAction`` for an
   unknown operation or another ``Version``);
5. the operation returns the inside of ``<ActionResult>`` (or ``None`` for none);
6. the answer is the success document or the ``ErrorResponse`` (:mod:`.query`);
7. the trace gets one record per call when the service asks for it (IAM); STS's
   operations record their own steps instead.

An exception other than :class:`~.errors.AwsError` is a bug: it is logged, answered
with ``InternalFailure`` (HTTP 500, fault ``Receiver``, in the ``ErrorResponse`` shape of
docs/reference/sts.md §1.4, with AWS's words) and recorded in the trace, and the server
goes on serving. botocore retries a 500 (§1.5), so one call may show more than once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .. import web
from ..ids import Ids
from ..trace import Trace
from .endpoint import record_call, refusal_facts, unexpected
from .errors import AwsError, internal_failure
from .model import Credential
from .query import error_response, parse_query, xml_response

__all__ = [
    "MAX_BODY",
    "Authenticate",
    "Operation",
    "QueryCall",
    "QueryService",
]

MAX_BODY = 1 << 20  # a form larger than 1 MiB is refused before it is parsed
_SHOWN_ACTION = 64  # an Action is echoed (message, trace) up to this many characters


@dataclass
class QueryCall:
    """One request, as an operation sees it."""

    request: web.Request
    body: bytes
    params: Mapping[str, str]
    action: str
    request_id: str
    caller: Credential | None = None
    facts: dict[str, Any] = field(default_factory=dict)  # added to the call's trace record


Operation = Callable[[QueryCall], Awaitable[str | None]]
Authenticate = Callable[[QueryCall], Credential]


@dataclass(frozen=True)
class QueryService:
    """A query-protocol API: ``name`` (``"sts"``, ``"iam"``), its XML namespace and
    API version, and ``operations`` by ``Action``.

    ``authenticate``, when given, runs before dispatch on every call and may raise
    :class:`AwsError`; ``record_calls`` writes one trace record per call, whatever
    its outcome. A bug is recorded either way.
    """

    name: str
    namespace: str
    version: str
    operations: Mapping[str, Operation]
    ids: Ids
    trace: Trace
    authenticate: Authenticate | None = None
    record_calls: bool = False

    def app(self) -> web.Application:
        """The service as an irsa_lab.web app answering on any path and method."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        """Answer one request: the success document or the ``ErrorResponse``."""
        started = time.perf_counter()
        call = QueryCall(request, b"", {}, "?", self.ids.uuid4())
        try:
            result = await self._run(call)
            response = xml_response(call.action, result, self.namespace, call.request_id)
            outcome = "ok"
        except AwsError as err:
            response, outcome = self._refuse(call, err)
        except Exception as exc:  # a bug must still answer in AWS's shape, not as an HTML 500
            bug = unexpected(self.name, call.action, exc, lambda e: internal_failure(self.name, e))
            response, outcome = self._refuse(call, bug)
        if self.record_calls or outcome == "InternalFailure":
            record_call(
                self.trace,
                self.name,
                call.action,
                outcome,
                caller=call.caller,
                started=started,
                request_id=call.request_id,
                **call.facts,
            )
        return response

    def _refuse(self, call: QueryCall, err: AwsError) -> tuple[web.Response, str]:
        call.facts.update(refusal_facts(err))
        if err.explanation != err.message:
            call.facts["explanation"] = err.explanation
        return error_response(err, self.namespace, call.request_id), err.code

    async def _run(self, call: QueryCall) -> str | None:
        try:
            call.body = await call.request.read()
        except web.HTTPException:
            raise AwsError(
                "RequestEntityTooLarge",
                f"The request body is larger than the {MAX_BODY} bytes allowed.",
                413,
            ) from None
        call.params = parse_query(call.body, call.request.rel_url.raw_query_string)
        action = call.params.get("Action", "")
        call.action = action[:_SHOWN_ACTION] or "?"
        if self.authenticate is not None:
            call.caller = self.authenticate(call)
        if not action:
            raise AwsError("MissingAction", "Missing Action", 400)
        version = call.params.get("Version", self.version)
        operation = self.operations.get(action)
        if operation is None or version != self.version:
            raise AwsError(
                "InvalidAction",
                f"Could not find operation {call.action} for version {version}",
                400,
                explanation=f"this {self.name.upper()} stand-in implements "
                f"{sorted(self.operations)} for version {self.version}",
            )
        return await operation(call)
