"""The EKS Pod Identity Agent stand-in: the node's credentials endpoint for pods.

What botocore's container provider calls (docs/reference/pod-identity.md §4.3): ``GET
<AWS_CONTAINER_CREDENTIALS_FULL_URI>`` with the pod's token file as the ``Authorization``
value. The agent (§4.7, v0.1.37) then:

1. checks the ``Host`` it was called through;
2. checks the token without its signature: present, a JWT, not expired;
3. answers from its cache, keyed by the token, when the entry has more than 15 s left;
4. otherwise calls EKS Auth's ``AssumeRoleForPodIdentity`` over HTTPS, SigV4-signed with the
   node role's credentials, and caches the answer;
5. answers ``{"AccessKeyId", "SecretAccessKey", "Token", "AccountId", "Expiration"}``, or
   EKS Auth's own status with ``[<request id>]: (<code>): <message>, fault: client``.

On EKS it listens on ``169.254.170.23:80`` with ``hostNetwork``. Here it listens on
loopback and also accepts its loopback address as ``Host``, where the real agent would
answer 403 (§4.8; docs/fidelity.md). It takes the node role's credentials from the
instance's metadata in process rather than over HTTP (docs/fidelity.md).
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ... import jose, web
from ...client_http import aiohttp_module
from ...clock import Clock, rfc3339
from ...trace import Trace
from ..arns import arn_account
from ..model import Credential

__all__ = ["AGENT_HOSTS", "CredentialCache", "credentials_path", "make_app"]

AGENT_HOSTS = ("169.254.170.23", "fd00:ec2::23")
CACHE_MARGIN_S = 15  # §4.7 step 4
MAX_CACHE_S = 3 * 3600  # --max-credential-retention-before-renewal
_PATH = "/v1/credentials"


def credentials_path() -> str:
    """The path the agent serves: ``/v1/credentials``."""
    return _PATH


@dataclass
class CredentialCache:
    """The agent's cache: token -> (answer, until when to keep it), on the wall clock."""

    entries: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)

    def get(self, token: str, now: float) -> dict[str, Any] | None:
        found = self.entries.get(token)
        if found is None:
            return None
        answer, keep_until = found
        if keep_until - now <= CACHE_MARGIN_S:
            del self.entries[token]
            return None
        return answer

    def put(self, token: str, answer: dict[str, Any], expires: float, now: float) -> None:
        self.entries[token] = (answer, min(expires, now + MAX_CACHE_S))

    def clear(self) -> None:
        self.entries.clear()


def _host_of(header: str) -> str:
    host = header.strip()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _text(body: str, status: int) -> web.Response:
    # Go's http.Error: text/plain, the message and a newline.
    return web.Response(text=body + "\n", status=status, content_type="text/plain", charset="utf-8")


def make_app(
    *,
    cluster: str,
    eks_auth_url: Callable[[], str],
    node_credentials: Callable[[], Credential],
    ssl_context: ssl.SSLContext,
    region: str,
    clock: Clock,
    wall_clock: Clock,
    trace: Trace,
    own_hosts: tuple[str, ...] = ("127.0.0.1", "localhost", "::1"),
    cache: CredentialCache | None = None,
) -> web.Application:
    """The agent's app. ``eks_auth_url`` gives the EKS Auth endpoint (known once it is served).

    Token times are judged on ``clock`` (the lab's, which issued them); the cache on
    ``wall_clock``, which the credentials expire on.
    """
    the_cache = cache if cache is not None else CredentialCache()
    allowed = AGENT_HOSTS + own_hosts

    async def credentials(request: web.Request) -> web.Response:
        started = time.perf_counter()

        def record(outcome: str, **facts: Any) -> None:
            trace.record(
                "pod",
                "pod-identity-agent",
                f"{request.method} {_PATH}",
                outcome,
                duration_ms=(time.perf_counter() - started) * 1000,
                **{k: v for k, v in facts.items() if v is not None},
            )

        host = _host_of(request.headers.get("Host", ""))
        if host not in allowed:
            record("403", host=host)
            return _text(
                "Access Denied. Called agent through invalid address, please use either "
                f"[{' '.join(AGENT_HOSTS)}] address not {host}",
                403,
            )
        token = request.headers.get("Authorization", "")
        if not token:
            record("400", why="no Authorization header")
            return _text("Service account token cannot be empty", 400)
        try:
            claims = jose.parse_compact(token).claims
        except jose.JoseError as exc:
            record("400", why=str(exc))
            return _text(f"Service account token cannot be parsed: {exc}", 400)
        token_now = clock.now()
        exp, nbf = claims.get("exp"), claims.get("nbf")
        if isinstance(exp, int | float) and token_now >= exp:
            record("400", why="token expired")
            return _text(
                "Service account token failed basic claim validations: token has invalid "
                "claims: token is expired",
                400,
            )
        if isinstance(nbf, int | float) and token_now < nbf:
            record("400", why="token not valid yet")
            return _text(
                "Service account token failed basic claim validations: token has invalid "
                "claims: token is not valid yet",
                400,
            )
        now = wall_clock.now()
        cached = the_cache.get(token, now)
        if cached is not None:
            record("ok", cache="hit", arn=cached.get("_arn"))
            return _credentials_response(cached)
        status, body = await _assume(token)
        if status != 200:
            record(str(status), code=body.get("code"), message=body.get("message"))
            fault = "client" if status < 500 else "server"
            return _text(
                f"[{body.get('request_id', '')}]: ({body.get('code', 'Unknown')}): "
                f"{body.get('message', '')}, fault: {fault}",
                status,
            )
        creds = body["credentials"]
        arn = body["assumedRoleUser"]["arn"]
        answer = {
            "AccessKeyId": creds["accessKeyId"],
            "SecretAccessKey": creds["secretAccessKey"],
            "Token": creds["sessionToken"],
            "AccountId": arn_account(arn),
            "Expiration": rfc3339(float(creds["expiration"])),
            "_arn": arn,
        }
        the_cache.put(token, answer, float(creds["expiration"]), now)
        record(
            "ok", cache="miss", arn=arn, association=body["podIdentityAssociation"]["associationId"]
        )
        return _credentials_response(answer)

    # One client for the agent's life, its connections to EKS Auth kept alive between
    # calls, as the real agent's Go HTTP client does: a pod's first fetch then costs no
    # TLS handshake. Made on first use, inside the loop that serves the agent.
    sessions: list[Any] = []

    def _session() -> Any:
        if not sessions:
            aiohttp = aiohttp_module()
            sessions.append(
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=5),
                    connector=aiohttp.TCPConnector(ssl=ssl_context),
                )
            )
        return sessions[0]

    async def close_session(_: web.Application) -> None:
        while sessions:
            await sessions.pop().close()

    async def _assume(token: str) -> tuple[int, dict[str, Any]]:
        """POST to EKS Auth, signed with the node's credentials: (status, parsed answer)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        url = f"{eks_auth_url().rstrip('/')}/clusters/{cluster}/assume-role-for-pod-identity"
        body = json.dumps({"token": token}).encode()
        node = node_credentials()
        aws_request = AWSRequest(
            method="POST", url=url, data=body, headers={"Content-Type": "application/json"}
        )
        SigV4Auth(
            Credentials(node.access_key_id, node.secret_access_key, node.session_token),
            "eks-auth",
            region,
        ).add_auth(aws_request)
        aiohttp = aiohttp_module()
        try:
            async with _session().post(
                url, data=body, headers=dict(aws_request.headers.items())
            ) as resp:
                raw = await resp.read()
                request_id = resp.headers.get("x-amzn-RequestId", "")
                status = resp.status
                error_type = resp.headers.get("x-amzn-ErrorType", "").split(":", 1)[0]
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 500, {
                "code": "RequestError",
                "message": f"operation error EKS Auth: AssumeRoleForPodIdentity, {exc}",
                "request_id": "",
            }
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = {}
        if status == 200 and isinstance(parsed, dict):
            return 200, parsed
        message = parsed.get("message", "") if isinstance(parsed, dict) else ""
        return status, {"code": error_type, "message": message, "request_id": request_id}

    async def not_found(request: web.Request) -> web.Response:
        return _text("404 page not found", 404)

    app = web.Application()
    app.on_cleanup.append(close_session)
    app.router.add_route("*", _PATH, credentials)
    app.router.add_route("*", "/{tail:.*}", not_found)
    return app


def _credentials_response(answer: dict[str, Any]) -> web.Response:
    wire = {k: v for k, v in answer.items() if not k.startswith("_")}
    return web.Response(body=json.dumps(wire).encode(), status=200, content_type="application/json")
