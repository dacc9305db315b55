"""The EC2 instance metadata service (IMDS) stand-in: the node role's credentials.

When nothing earlier in botocore's chain finds credentials, it asks IMDS
(docs/reference/sts.md §4.8): ``PUT /latest/api/token`` for an IMDSv2 session token, then
``GET /latest/meta-data/iam/security-credentials/`` (the role name) and
``GET .../security-credentials/<role>`` (the keys). Any process on the node,
including every pod, gets the *node's* role this way: the security problem the
article ends on.

Two settings of the instance, :class:`ImdsSettings`, are the mitigations:

* ``http_tokens="required"`` refuses IMDSv1 (a GET without a session token: 401);
* ``hop_limit`` is the IP TTL of the token response. A container behind the node's
  bridge is one hop further than the node, so with ``hop_limit=1`` the response
  expires on the way and never reaches the pod. The stand-in is served twice, once
  as seen from the node and once as seen from a pod, and at the pod position with
  ``hop_limit < 2`` it holds the PUT unanswered (the client times out, as it does
  on EC2) and then drops the connection. Only that answer is limited: the token
  itself is the instance's, valid from either view until it expires (EC2 names
  the setting ``HttpPutResponseHopLimit``: it limits the PUT's response).

IMDS speaks plain HTTP on a link-local address on EC2; the lab serves it on
127.0.0.1, also without TLS, and clients reach it through
``AWS_EC2_METADATA_SERVICE_ENDPOINT``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Literal

from .. import web
from ..clock import Clock, SystemClock, rfc3339
from ..constants import (
    IMDS_MAX_TOKEN_TTL_S,
    IMDS_TOKEN_HEADER,
    IMDS_TOKEN_TTL_HEADER,
    NODE_INSTANCE_ID,
    REGION,
)
from ..ids import Ids
from ..trace import Trace
from .arns import assumed_role_arn
from .model import Account, Credential
from .sts import session_token

__all__ = [
    "CREDENTIALS_PATH",
    "IMDS_CREDENTIAL_LIFETIME_S",
    "ImdsSettings",
    "Position",
    "instance_profile_id",
    "make_app",
    "node_credentials",
]

Position = Literal["node", "pod"]
CREDENTIALS_PATH = "/latest/meta-data/iam/security-credentials/"
TOKEN_PATH = "/latest/api/token"  # noqa: S105 - a URL path, not a secret
IMDS_CREDENTIAL_LIFETIME_S = 6 * 3600  # role credentials from IMDS last about 6 hours
REFRESH_BEFORE_S = 3600  # ... and are replaced when less than an hour is left
DROPPED_RESPONSE_HOLD_S = 2.0  # how long a PUT whose answer "never arrives" is held
EXTRA_HOPS: dict[str, int] = {"node": 0, "pod": 1}  # pod traffic crosses the node's bridge


@dataclass
class ImdsSettings:
    """The instance's metadata options; mutable, so a lab can flip them live.

    ``http_tokens``: ``"optional"`` (IMDSv1 allowed) or ``"required"`` (IMDSv2 only).
    ``hop_limit``: the IP TTL of token responses (EC2 default 1, EKS managed node
    groups launch with 2); a caller needs ``1 + extra hops`` to receive one.
    ``http_endpoint``: ``"disabled"`` turns the IMDS off: every request gets 403
    Forbidden, as EC2 answers then.

    The EC2 stand-in's ``ModifyInstanceMetadataOptions`` (:mod:`.ec2`) and the lab's
    control change this object, and the IMDS reads it on every request: one truth.

    One object per instance, shared by its node and pod views, so it also holds the
    instance's IMDSv2 session tokens (token -> expiry on the lab clock): a token
    belongs to the instance, not to the view that handed it out. The hop limit only
    decides whether the PUT's answer arrives.
    """

    http_tokens: Literal["optional", "required"] = "optional"
    hop_limit: int = 2
    http_endpoint: Literal["enabled", "disabled"] = "enabled"
    tokens: dict[str, float] = field(default_factory=dict, repr=False, compare=False)


def instance_profile_id(instance_id: str) -> str:
    """``AIPA`` + 17 base32 characters, derived from the instance id.

    Derived rather than drawn from the lab's ids, so each view computes the same one
    without taking a value from the seeded sequence.
    """
    digest = hashlib.sha256(instance_id.encode()).digest()
    return "AIPA" + base64.b32encode(digest).decode()[:17]


def _role_name(node_role: str) -> str:
    return node_role.rsplit("/", 1)[-1] if node_role.startswith("arn:") else node_role


def node_credentials(
    account: Account,
    node_role: str,
    *,
    wall_clock: Clock,
    ids: Ids,
    instance_id: str = NODE_INSTANCE_ID,
) -> Credential:
    """The node role's current IMDS credentials, issued (and registered) when needed.

    Both views of the IMDS (node and pod) share them, as they are one instance's.
    A fresh set replaces the old one when less than an hour is left.
    """
    name = _role_name(node_role)
    now = wall_clock.now()
    with account.lock:
        for cred in account.credentials.values():
            if (
                cred.source == "imds"
                and cred.role_name == name
                and cred.expiration is not None
                and cred.expiration - now > REFRESH_BEFORE_S
            ):
                return cred
        role = account.roles.get(name)
        role_id = role.role_id if role is not None else ids.aws_unique_id("AROA")
        cred = Credential(
            access_key_id=ids.access_key_id("ASIA"),
            secret_access_key=ids.secret_token(40),
            kind="assumed-role",
            arn=assumed_role_arn(account.account_id, name, instance_id),
            user_id=f"{role_id}:{instance_id}",
            session_token=session_token(ids),
            expiration=float(int(now) + IMDS_CREDENTIAL_LIFETIME_S),
            role_name=name,
            source="imds",
            # What the permission checks read of an instance-role session:
            # aws:TokenIssueTime (lab clock, as aws:CurrentTime) and the region.
            issued_at=account.clock.now(),
            region=REGION,
        )
        account.credentials[cred.access_key_id] = cred
        return cred


def make_app(
    account: Account,
    *,
    node_role: str,
    position: Position | str,
    settings: ImdsSettings,
    clock: Clock,
    wall_clock: Clock | None = None,
    ids: Ids,
    trace: Trace,
    instance_id: str = NODE_INSTANCE_ID,
    region: str = REGION,
) -> web.Application:
    """The IMDS as seen from ``position`` (``"node"`` or ``"pod"``; anything else: ValueError).

    Session tokens expire on ``clock`` (the lab clock); credential ``Expiration``
    uses ``wall_clock``, because botocore compares it with the real time.
    """
    if position not in EXTRA_HOPS:
        raise ValueError(f"position must be 'node' or 'pod', not {position!r}")
    wall = wall_clock or SystemClock()
    role_name = _role_name(node_role)
    tokens = settings.tokens  # the instance's, shared with the other view
    caller = "pod" if position == "pod" else "node"

    def text(body: str, status: int = 200) -> web.Response:
        return web.Response(text=body, status=status, content_type="text/plain")

    def unauthorized() -> web.Response:
        return web.Response(status=401, text="", content_type="text/plain")

    def turned_off(call: str) -> web.Response | None:
        """403 Forbidden for every request while the instance's HttpEndpoint is disabled."""
        if settings.http_endpoint != "disabled":
            return None
        why = "the instance's metadata options say HttpEndpoint=disabled"
        trace.record(caller, "imds", call, "Forbidden", position=position, why=why)
        return text("", 403)

    async def put_token(request: web.Request) -> web.StreamResponse:
        off = turned_off("PUT /latest/api/token")
        if off is not None:
            return off
        raw = request.headers.get(IMDS_TOKEN_TTL_HEADER, "")
        if "X-Forwarded-For" in request.headers:
            # IMDS refuses token requests that went through a proxy.
            trace.record(caller, "imds", "PUT /latest/api/token", "Forbidden", position=position)
            return text("", 403)
        if not raw.isdigit() or not 1 <= int(raw) <= IMDS_MAX_TOKEN_TTL_S:
            trace.record(
                caller,
                "imds",
                "PUT /latest/api/token",
                "BadRequest",
                ttl=raw[:40],
                position=position,
            )
            return text("", 400)
        needed = 1 + EXTRA_HOPS[position]
        if settings.hop_limit < needed:
            trace.record(
                caller,
                "imds",
                "PUT /latest/api/token",
                "dropped",
                position=position,
                hop_limit=settings.hop_limit,
                hops_needed=needed,
                why=f"the response's IP TTL ({settings.hop_limit}) runs out before the "
                f"{position} ({needed} hops away): the answer never arrives",
            )
            # Hold the request so the client times out, as on EC2, then drop it.
            await asyncio.sleep(DROPPED_RESPONSE_HOLD_S)
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=504)  # never delivered: the socket is closed
        ttl = int(raw)
        token = ids.secret_token(56)
        now = clock.now()
        for old in [t for t, exp in tokens.items() if exp <= now]:
            del tokens[old]
        tokens[token] = now + ttl
        trace.record(
            caller,
            "imds",
            "PUT /latest/api/token",
            ttl=ttl,
            position=position,
            hop_limit=settings.hop_limit,
        )
        return web.Response(
            text=token, content_type="text/plain", headers={IMDS_TOKEN_TTL_HEADER: str(ttl)}
        )

    def refusal(request: web.Request) -> str | None:
        """Why this GET is refused (401), or None when it may go on."""
        token = request.headers.get(IMDS_TOKEN_HEADER)
        if token is None:
            if settings.http_tokens == "required":
                return "IMDSv1 (no session token) is disabled: http_tokens=required"
            return None
        expiry = tokens.get(token)
        if expiry is None or expiry <= clock.now():
            return "the session token is unknown or expired"
        return None

    async def get(request: web.Request) -> web.Response:
        path = request.path
        call = f"GET {path}"
        off = turned_off(call)
        if off is not None:
            return off
        why = refusal(request)
        if why is not None:
            trace.record(caller, "imds", call, "Unauthorized", position=position, why=why)
            return unauthorized()
        version = "v2" if IMDS_TOKEN_HEADER in request.headers else "v1"
        if path == CREDENTIALS_PATH:
            trace.record(caller, "imds", call, position=position, imds=version, role=role_name)
            return text(role_name)
        if path.startswith(CREDENTIALS_PATH):
            asked = path[len(CREDENTIALS_PATH) :].rstrip("/")
            if asked != role_name:
                trace.record(caller, "imds", call, "NotFound", position=position)
                return text("", 404)
            cred = node_credentials(
                account, role_name, wall_clock=wall, ids=ids, instance_id=instance_id
            )
            assert cred.expiration is not None
            document = {
                "Code": "Success",
                "LastUpdated": rfc3339(cred.expiration - IMDS_CREDENTIAL_LIFETIME_S),
                "Type": "AWS-HMAC",
                "AccessKeyId": cred.access_key_id,
                "SecretAccessKey": cred.secret_access_key,
                "Token": cred.session_token,
                "Expiration": rfc3339(cred.expiration),
            }
            trace.record(
                caller,
                "imds",
                call,
                position=position,
                imds=version,
                arn=cred.arn,
                access_key_id=cred.access_key_id,
            )
            return web.Response(text=json.dumps(document, indent=2), content_type="text/plain")
        fixed = {
            "/latest/meta-data/instance-id": instance_id,
            "/latest/meta-data/placement/region": region,
            "/latest/meta-data/placement/availability-zone": f"{region}a",
            "/latest/meta-data/iam/info": json.dumps(
                {
                    "Code": "Success",
                    "InstanceProfileArn": f"arn:aws:iam::{account.account_id}:"
                    f"instance-profile/{role_name}",
                    "InstanceProfileId": instance_profile_id(instance_id),
                },
                indent=2,
            ),
            "/latest/meta-data/": "iam/\ninstance-id\nplacement/",
            "/latest/meta-data/iam/": "info\nsecurity-credentials/",
        }
        body = fixed.get(path) or fixed.get(path.rstrip("/"))
        if body is None:
            trace.record(caller, "imds", call, "NotFound", position=position)
            return text("", 404)
        trace.record(caller, "imds", call, position=position, imds=version)
        return text(body)

    app = web.Application()
    app.router.add_route("PUT", TOKEN_PATH, put_token)
    app.router.add_route("GET", "/{tail:.*}", get)
    return app
