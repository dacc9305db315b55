"""EC2's query protocol for the lab's one node instance.

botocore's ``ec2`` model (``botocore/data/ec2/2016-11-15/service-2.json``, protocol
``ec2``) sends a form ``POST /`` signed with SigV4 for service ``ec2``, lists flattened
as ``InstanceId.1`` and ``Filter.1.Name`` / ``Filter.1.Value.1``. EC2 answers
differ from STS's and IAM's query protocol in two ways this module takes care of:

- a success document has no ``<ActionResult>`` wrapper: ``<ActionResponse
  xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>..</requestId>`` and the
  result's members, in camelCase (``reservationSet``, ``instancesSet``, ``item``);
- an error is ``<Response><Errors><Error><Code>..</Code><Message>..</Message></Error>
  </Errors><RequestID>..</RequestID></Response>`` (``RequestID``, not ``RequestId``).

The rest (body limit, form parsing, authentication before dispatch, the trace record
of every call, a bug answered in AWS's shape) is :class:`~..query_service.QueryService`'s.

Two operations:

- ``DescribeInstances``: the node instance with its ``MetadataOptions`` (``State``
  ``applied``, ``HttpTokens``, ``HttpPutResponseHopLimit``, ``HttpEndpoint`` ...),
  narrowed by ``InstanceId.N`` and a few filters;
- ``ModifyInstanceMetadataOptions``: ``HttpTokens``, ``HttpPutResponseHopLimit`` and
  ``HttpEndpoint`` of that instance; EC2 answers ``State`` ``pending`` and a later
  ``DescribeInstances`` shows ``applied``. The options are the IMDS stand-in's
  :class:`~irsa_lab.aws.imds.ImdsSettings`, so the IMDS enforces them from the next
  request on.

An unknown instance is ``InvalidInstanceID.NotFound``, an id that is not ``i-`` and 8
or 17 hex digits ``InvalidInstanceID.Malformed``, as EC2 answers. The account
administrator may call both; a role session is judged by its role's policies
(``ec2:DescribeInstances`` ...) and refused with ``UnauthorizedOperation``.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

from ... import web
from ...clock import Clock, rfc3339
from ...constants import REGION
from ...trace import Trace
from ..endpoint import authorize_by_role, record_call, refusal_facts, unexpected, verify_request
from ..errors import AwsError, escape
from ..imds import ImdsSettings, instance_profile_id
from ..model import Account, Credential
from ..query import element
from ..query_service import QueryCall, QueryService
from ..sigv4 import SigV4Failure
from ..sigv4_errors import to_aws_error

__all__ = [
    "ACTIONS",
    "EC2_NS",
    "EC2_VERSION",
    "INSTANCE_TYPE",
    "Instance",
    "authorize_ec2",
    "ec2_error_xml",
    "ip_of_dns_name",
    "make_app",
]

EC2_VERSION = "2016-11-15"
EC2_NS = f"http://ec2.amazonaws.com/doc/{EC2_VERSION}/"
INSTANCE_TYPE = "m5.large"
_INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_STATE_CODES = {"pending": 0, "running": 16, "stopping": 64, "stopped": 80}
_ENABLED = ("enabled", "disabled")
_HTTP_TOKENS = ("optional", "required")


@dataclass
class Instance:
    """The node instance as EC2 describes it; ``settings`` are its metadata options,
    shared with the IMDS stand-in that serves this instance."""

    instance_id: str
    private_dns_name: str
    private_ip: str
    role_name: str
    launch_time: float
    settings: ImdsSettings
    state: str = "running"
    # The two options the IMDS stand-in does not act on, kept so a describe shows them.
    http_protocol_ipv6: str = "disabled"
    instance_metadata_tags: str = "disabled"
    tags: dict[str, str] = field(default_factory=dict)

    def derived(self, prefix: str, length: int) -> str:
        """An id derived from the instance id (stable, and drawing no seeded ids)."""
        digest = hashlib.sha256(f"{prefix}:{self.instance_id}".encode()).hexdigest()
        return f"{prefix}-{digest[:length]}"


def ip_of_dns_name(name: str) -> str:
    """``ip-192-168-12-34.eu-west-1.compute.internal`` -> ``192.168.12.34``."""
    host = name.split(".", 1)[0]
    return host.removeprefix("ip-").replace("-", ".")


# --- the wire ------------------------------------------------------------------------------
def ec2_error_xml(err: AwsError, request_id: str) -> bytes:
    """EC2's error document: ``Response/Errors/Error`` and a ``RequestID`` sibling."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(err.code)}</Code>"
        f"<Message>{escape(err.message)}</Message></Error></Errors>"
        f"<RequestID>{request_id}</RequestID></Response>"
    ).encode()


def _xml(body: bytes, status: int, request_id: str) -> web.Response:
    return web.Response(
        body=body,
        status=status,
        content_type="text/xml",
        charset="UTF-8",
        headers={"x-amzn-RequestId": request_id},
    )


def _ok(action: str, inner: str, request_id: str) -> web.Response:
    text = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<{action}Response xmlns="{EC2_NS}">'
        f"<requestId>{request_id}</requestId>{inner}</{action}Response>"
    )
    return _xml(text.encode(), 200, request_id)


def _options_xml(inst: Instance, state: str) -> str:
    s = inst.settings
    return (
        element("state", state)
        + element("httpTokens", s.http_tokens)
        + element("httpPutResponseHopLimit", s.hop_limit)
        + element("httpEndpoint", s.http_endpoint)
        + element("httpProtocolIpv6", inst.http_protocol_ipv6)
        + element("instanceMetadataTags", inst.instance_metadata_tags)
    )


def _instance_xml(account: Account, inst: Instance) -> str:
    tags = "".join(
        f"<item>{element('key', k)}{element('value', v)}</item>" for k, v in inst.tags.items()
    )
    return (
        "<item>"
        + element("instanceId", inst.instance_id)
        + element("imageId", inst.derived("ami", 17))
        + "<instanceState>"
        + element("code", _STATE_CODES.get(inst.state, 16))
        + element("name", inst.state)
        + "</instanceState>"
        + element("privateDnsName", inst.private_dns_name)
        + element("dnsName", "")
        + element("amiLaunchIndex", 0)
        + element("instanceType", INSTANCE_TYPE)
        + element("launchTime", rfc3339(inst.launch_time))
        + "<placement>"
        + element("availabilityZone", f"{REGION}a")
        + element("tenancy", "default")
        + "</placement>"
        + "<monitoring><state>disabled</state></monitoring>"
        + element("privateIpAddress", inst.private_ip)
        + "<iamInstanceProfile>"
        + element("arn", f"arn:aws:iam::{account.account_id}:instance-profile/{inst.role_name}")
        + element("id", instance_profile_id(inst.instance_id))
        + "</iamInstanceProfile>"
        + (f"<tagSet>{tags}</tagSet>" if tags else "")
        + "<metadataOptions>"
        + _options_xml(inst, "applied")
        + "</metadataOptions>"
        + "</item>"
    )


# --- reading the form --------------------------------------------------------------------------
def _numbered(params: Mapping[str, str], prefix: str) -> list[tuple[int, str]]:
    """``Prefix.N`` entries, by N (the ec2 protocol's flattened lists)."""
    out = []
    for key, value in params.items():
        if key.startswith(prefix + ".") and key[len(prefix) + 1 :].isdigit():
            out.append((int(key[len(prefix) + 1 :]), value))
    return sorted(out)


def _filters(params: Mapping[str, str]) -> list[tuple[str, list[str]]]:
    found: dict[int, dict[str, Any]] = {}
    for key, value in params.items():
        parts = key.split(".")
        if len(parts) < 3 or parts[0] != "Filter" or not parts[1].isdigit():
            continue
        entry = found.setdefault(int(parts[1]), {"name": "", "values": []})
        if parts[2] == "Name" and len(parts) == 3:
            entry["name"] = value
        elif parts[2] == "Value" and len(parts) == 4 and parts[3].isdigit():
            entry["values"].append((int(parts[3]), value))
    return [(str(f["name"]), [v for _, v in sorted(f["values"])]) for _, f in sorted(found.items())]


def _flag(params: Mapping[str, str], name: str) -> bool:
    return params.get(name, "").lower() == "true"


def _invalid(message: str) -> AwsError:
    return AwsError("InvalidParameterValue", message, 400)


def _check_ids(ids: list[str], inst: Instance) -> None:
    for wanted in ids:
        if not _INSTANCE_ID.fullmatch(wanted):
            raise AwsError("InvalidInstanceID.Malformed", f'Invalid id: "{wanted}"', 400)
    missing = [i for i in ids if i != inst.instance_id]
    if len(missing) == 1:
        raise AwsError(
            "InvalidInstanceID.NotFound", f"The instance ID '{missing[0]}' does not exist", 400
        )
    if missing:
        raise AwsError(
            "InvalidInstanceID.NotFound",
            f"The instance IDs '{', '.join(missing)}' do not exist",
            400,
        )


def _filter_values(inst: Instance) -> dict[str, str]:
    s = inst.settings
    return {
        "instance-id": inst.instance_id,
        "instance-state-name": inst.state,
        "instance-type": INSTANCE_TYPE,
        "private-dns-name": inst.private_dns_name,
        "private-ip-address": inst.private_ip,
        "availability-zone": f"{REGION}a",
        "metadata-options.http-tokens": s.http_tokens,
        "metadata-options.http-put-response-hop-limit": str(s.hop_limit),
        "metadata-options.http-endpoint": s.http_endpoint,
        **{f"tag:{k}": v for k, v in inst.tags.items()},
    }


def _dry_run(params: Mapping[str, str]) -> None:
    if _flag(params, "DryRun"):
        raise AwsError(
            "DryRunOperation", "Request would have succeeded, but DryRun flag is set.", 412
        )


# --- the operations ---------------------------------------------------------------------------
def _describe_instances(account: Account, inst: Instance, params: Mapping[str, str]) -> str:
    _dry_run(params)
    ids = [v for _, v in _numbered(params, "InstanceId")]
    _check_ids(ids, inst)
    values = _filter_values(inst)
    shown = True
    for name, wanted in _filters(params):
        if name not in values and not name.startswith("tag:"):
            raise _invalid(f"The filter '{name}' is invalid")
        have = values.get(name)
        shown = shown and have is not None and any(fnmatchcase(have, w) for w in wanted)
    if not shown:
        return "<reservationSet/>"
    return (
        "<reservationSet><item>"
        + element("reservationId", inst.derived("r", 17))
        + element("ownerId", account.account_id)
        + "<groupSet/>"
        + "<instancesSet>"
        + _instance_xml(account, inst)
        + "</instancesSet>"
        + "</item></reservationSet>"
    )


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name)
    if value is not None and value not in allowed:
        raise _invalid(
            f"Value ({value}) for parameter {name} is invalid. Valid values: {', '.join(allowed)}."
        )
    return value


def _modify_metadata_options(account: Account, inst: Instance, params: Mapping[str, str]) -> str:
    wanted = params.get("InstanceId")
    if wanted is None:
        raise AwsError("MissingParameter", "The request must contain the parameter InstanceId", 400)
    _check_ids([wanted], inst)
    tokens = _choice(params, "HttpTokens", _HTTP_TOKENS)
    endpoint = _choice(params, "HttpEndpoint", _ENABLED)
    ipv6 = _choice(params, "HttpProtocolIpv6", _ENABLED)
    tags = _choice(params, "InstanceMetadataTags", _ENABLED)
    raw_hops = params.get("HttpPutResponseHopLimit")
    hops: int | None = None
    if raw_hops is not None:
        if not raw_hops.lstrip("-").isdigit() or not 1 <= int(raw_hops) <= 64:
            raise _invalid(
                f"Value ({raw_hops}) for parameter HttpPutResponseHopLimit is invalid. "
                "Valid values are integers from 1 to 64."
            )
        hops = int(raw_hops)
    _dry_run(params)
    s = inst.settings
    with account.lock:
        if tokens is not None:
            s.http_tokens = tokens  # type: ignore[assignment]  # checked against the enum
        if hops is not None:
            s.hop_limit = hops
        if endpoint is not None:
            s.http_endpoint = endpoint  # type: ignore[assignment]
        if ipv6 is not None:
            inst.http_protocol_ipv6 = ipv6
        if tags is not None:
            inst.instance_metadata_tags = tags
    return (
        element("instanceId", inst.instance_id)
        + "<instanceMetadataOptions>"
        + _options_xml(inst, "pending")
        + "</instanceMetadataOptions>"
    )


_Handler = Callable[[Account, Instance, Mapping[str, str]], str]
ACTIONS: dict[str, _Handler] = {
    "DescribeInstances": _describe_instances,
    "ModifyInstanceMetadataOptions": _modify_metadata_options,
}


# --- authentication and authorization ---------------------------------------------------------
def _auth_error(failure: SigV4Failure) -> AwsError:
    """A failed signature, in EC2's words (its "Common client error codes")."""
    err = to_aws_error(failure, "sts")
    if err.code in ("InvalidClientTokenId", "MissingAuthenticationToken"):
        return AwsError(
            "AuthFailure",
            "AWS was not able to validate the provided access credentials",
            401,
            explanation=err.explanation,
            detail=err.detail,
        )
    if failure.kind in ("expired_token", "skewed"):
        return AwsError("RequestExpired", "Request has expired.", 400, explanation=err.explanation)
    return err


def authorize_ec2(account: Account, cred: Credential, action: str, resource: str) -> dict[str, Any]:
    """Allow the administrator; judge a role session by its role's policies.

    EC2 refuses with ``UnauthorizedOperation`` (403), not ``AccessDenied``.
    """
    try:
        return authorize_by_role(account, cred, f"ec2:{action}", resource, region=REGION)
    except AwsError as err:
        if err.code != "AccessDenied":
            raise
        raise AwsError(
            "UnauthorizedOperation",
            f"You are not authorized to perform this operation. {err.message}",
            403,
            explanation=err.explanation,
            detail=err.detail,
        ) from None


@dataclass(frozen=True)
class _Ec2Service(QueryService):
    """The query service with EC2's success and error documents (module doc)."""

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        call = QueryCall(request, b"", {}, "?", self.ids.uuid4())
        try:
            inner = await self._run(call)
            response = _ok(call.action, inner or "", call.request_id)
            outcome = "ok"
        except AwsError as err:
            response, outcome = self._refuse_ec2(call, err)
        except Exception as exc:  # a bug still answers in EC2's shape
            bug = unexpected("ec2", call.action, exc, _internal_error)
            response, outcome = self._refuse_ec2(call, bug)
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

    def _refuse_ec2(self, call: QueryCall, err: AwsError) -> tuple[web.Response, str]:
        if err.code == "InvalidAction":
            err = AwsError(
                "InvalidAction",
                f"The action {call.action} is not valid for this web service.",
                400,
                explanation=err.explanation,
            )
        call.facts.update(refusal_facts(err))
        return _xml(ec2_error_xml(err, call.request_id), err.status, call.request_id), err.code


def _internal_error(exc: Exception) -> AwsError:
    return AwsError(
        "InternalError",
        "An internal error has occurred",
        500,
        sender=False,
        explanation=f"the ec2 stand-in failed: {type(exc).__name__}: {exc}",
    )


def make_app(
    account: Account,
    instance: Instance,
    *,
    trace: Trace,
    wall_clock: Clock,
) -> web.Application:
    """The EC2 query API for ``instance`` (serve it over HTTPS with ``ServerLoop``).

    Every call is signed (SigV4, service ``ec2``, the lab's region) and recorded in
    the trace. Signatures are checked against ``wall_clock`` (botocore signs with the
    real time).
    """

    def authenticate(call: QueryCall) -> Credential:
        return verify_request(
            account, call.request, call.body, wall_clock.now(), "ec2", refusal=_auth_error
        ).credential

    def operation(action: str) -> Callable[[QueryCall], Awaitable[str | None]]:
        async def serve(call: QueryCall) -> str | None:
            assert call.caller is not None  # EC2 authenticates every call before dispatch
            resource = (
                f"arn:aws:ec2:{REGION}:{account.account_id}:instance/{inst_id}"
                if (inst_id := call.params.get("InstanceId"))
                else "*"
            )
            call.facts.update(authorize_ec2(account, call.caller, action, resource))
            result = ACTIONS[action](account, instance, call.params)
            call.facts["instance_id"] = instance.instance_id
            if action == "ModifyInstanceMetadataOptions":
                s = instance.settings
                call.facts.update(
                    http_tokens=s.http_tokens,
                    hop_limit=s.hop_limit,
                    http_endpoint=s.http_endpoint,
                )
            return result

        return serve

    return _Ec2Service(
        "ec2",
        EC2_NS,
        EC2_VERSION,
        {name: operation(name) for name in ACTIONS},
        account.ids,
        trace,
        authenticate=authenticate,
        record_calls=True,
    ).app()
