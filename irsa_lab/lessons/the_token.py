"""Notebook 02, the token: the file the kubelet writes, what it says, who can check it.

Everything is read from the running lab: the projected volume's folder on the
(stand-in) node, the JWT in it, the issuer's discovery document and JWKS fetched over
HTTPS as STS fetches them, the kubelet's renewal after the lab clock moves on, and a
token whose pod is gone: refused by the API server (TokenReview), accepted by STS.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import constants as C
from ..control import Unavailable
from ..jose import decode_unverified
from ..kube.authn import EXTRA_POD_NAME, EXTRA_POD_UID
from ..kube.kubelet import DATA_DIR_NAME, PROJECTED_PLUGIN_DIR
from ..session import Lab, close_api_client
from ..ui.decoder import TokenDecoder, explain_claims, verify_token
from ..ui.text import mask_secret, utc_text
from ..ui.timeline import TimelineWidget, alt_text

__all__ = [
    "NODE_KUBELET_ROOT",
    "REVIEW_CACHE_WAIT_S",
    "DeletedPodResult",
    "LIVE_RENEWAL_POD",
    "Renewal",
    "RenewalLater",
    "Review",
    "bearer_status",
    "delete_pod_keep_token",
    "claims_text",
    "lab_now",
    "oidc_providers",
    "renew_token",
    "short_token",
    "timeline",
    "timeline_text",
    "token_decoder",
    "token_review",
    "token_status",
    "token_volume_listing",
    "verify_walkthrough",
]

# Where a real node keeps pod volumes; the lab's kubelet uses a temporary folder in its
# place, and the listing below shows paths as they would be on the node.
NODE_KUBELET_ROOT = "/var/lib/kubelet"


def lab_now(lab: Lab) -> float:
    """The lab clock (stopped in a deterministic lab), else the wall clock."""
    return lab.control.now()


def short_token(token: str, head: int = 40, tail: int = 8) -> str:
    """The token cut in the middle: enough to recognise it, not enough to use it."""
    token = token.strip()
    if len(token) <= head + tail:
        return mask_secret(token)
    return f"{token[:head]}…{token[-tail:]} ({len(token)} characters)"


# --- the files -------------------------------------------------------------------------


def _node_path(lab: Lab, pod: Mapping[str, Any], volume: str) -> str:
    return (
        f"{NODE_KUBELET_ROOT}/pods/{pod['metadata']['uid']}/volumes/{PROJECTED_PLUGIN_DIR}/{volume}"
    )


def token_volume_listing(
    lab: Lab, pod_name: str = C.POD_NAME, volume: str = C.TOKEN_VOLUME_NAME
) -> str:
    """``ls -la`` of the projected volume, recursively, as the kubelet wrote it.

    Headed by where the folder is: its path on a real node, where the lab's kubelet
    wrote it on this machine (under the lab's state folder), and the container's mount.
    Modes, symlink targets and sizes; no owners or times (they say nothing here).
    """
    # On a real API server the kubelet writes the volume a moment after the pod is
    # created: wait until it runs the pod, as `kubectl wait` would, before listing.
    pod = lab.wait_running(pod_name)
    node_path = _node_path(lab, pod, volume)
    kind = lab.endpoints.get("backend") == "kind"
    folder = None if kind else lab.volume_path(pod, volume)
    # The lab's kubelet keeps the node's /var/lib/kubelet under its state folder.
    here = f"{node_path} inside the kind node container" if folder is None else str(folder)
    lines = [
        f"on the node:       {node_path}",
        f"on this machine:   {here}",
        f"in the container:  {C.TOKEN_MOUNT_PATH} (read-only mount)",
        "",
    ]
    if folder is None:
        # The real kubelet wrote it inside the node container: list it from the pod.
        done = lab.exec(pod_name, ["ls", "-la", C.TOKEN_MOUNT_PATH + "/"])
        return "\n".join([*lines, (done.stdout or done.stderr).rstrip()])
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        lines.extend(_ls(entry, entry.name))
    return "\n".join(lines)


def _ls(path: Path, shown: str) -> list[str]:
    st = path.lstat()
    mode = stat.filemode(st.st_mode)
    if stat.S_ISLNK(st.st_mode):
        return [f"{mode}  {shown} -> {os.readlink(path)}"]
    if stat.S_ISDIR(st.st_mode):
        out = [f"{mode}  {shown}/"]
        for child in sorted(path.iterdir(), key=lambda p: p.name):
            out.extend(_ls(child, f"{shown}/{child.name}"))
        return out
    return [f"{mode}  {shown}  ({st.st_size} bytes)"]


def token_status(lab: Lab, pod_name: str = C.POD_NAME) -> dict[str, Any]:
    """The kubelet's record of the pod's ``aws-iam-token``: times, renewals, folder."""
    pod = lab.get_pod(pod_name)
    uid = pod["metadata"]["uid"]
    volumes = {v.get("name") for v in pod["spec"].get("volumes") or []}
    if C.TOKEN_VOLUME_NAME not in volumes:
        raise LookupError(f"pod {pod_name} has no {C.TOKEN_VOLUME_NAME} volume")
    # A node that watches the API server (k8s backend) starts the pod a moment later.
    deadline = time.monotonic() + KUBELET_SYNC_WAIT_S
    while True:
        try:
            records = lab.control.token_status(uid)
        except Unavailable:
            # A real kubelet (kind) keeps no record the lab can read: the token says it all.
            return _status_from_token(lab.read_token(pod_name))
        for s in records:
            if s["volume"] == C.TOKEN_VOLUME_NAME:
                return s
        if time.monotonic() > deadline:
            raise LookupError(f"the kubelet has not started pod {pod_name} yet")
        time.sleep(0.1)


KUBELET_SYNC_WAIT_S = 10.0


def _status_from_token(token: str) -> dict[str, Any]:
    """The kubelet's figures for a token, from its claims: it renews once the token is
    older than 80% of its lifetime, or 24 h."""
    _, claims = decode_unverified(token)
    iat, exp = float(claims["iat"]), float(claims["exp"])
    ttl = exp - iat
    renew_after = min(C.KUBELET_REFRESH_FRACTION * ttl, C.KUBELET_REFRESH_MAX_AGE_S)
    aud = claims.get("aud")
    return {
        "volume": C.TOKEN_VOLUME_NAME,
        "path": C.TOKEN_FILE_NAME,
        "file": Path(C.TOKEN_FILE),
        "audiences": aud if isinstance(aud, list) else [aud],
        "expiration_seconds": int(ttl),
        "issued_at": iat,
        "expires_at": exp,
        "renew_at": iat + renew_after,
        "renewals": None,
        "payload_dir": None,
    }


# --- decoding and verifying --------------------------------------------------------------


def oidc_providers(lab: Lab) -> dict[str, list[str]]:
    """The account's IAM OIDC providers, URL (issuer without https://) -> client IDs,
    read with boto3 as ``aws iam list-open-id-connect-providers`` would."""
    iam = lab.aws_client("iam")
    providers: dict[str, list[str]] = {}
    for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=entry["Arn"])
        providers[str(got["Url"]).removeprefix("https://")] = list(got.get("ClientIDList", []))
    return providers


def token_decoder(lab: Lab, token: str) -> TokenDecoder:
    """The decoder widget: STS's token checks against the lab issuer's JWKS and the
    account's OIDC providers, at the lab's time."""
    return TokenDecoder(
        token,
        jwks=lab.jwks(),
        now=lambda: lab_now(lab),
        providers=oidc_providers(lab),
        signing_key=_signing_key(lab),
    )


def _signing_key(lab: Lab) -> Any:
    """The cluster's signing key where this process holds it (embedded, ``k8s``, kind's
    key file), so "re-sign with the lab key" works; ``None`` for a lab in another process,
    whose admin endpoint never hands the key out."""
    read = getattr(lab.control, "signing_key", None)
    if read is None:
        return None
    try:
        return read()
    except (Unavailable, OSError):
        return None


def claims_text(lab: Lab, token: str) -> str:
    """Each claim, what it means, and where IAM or STS meets it (times relative to now)."""
    _, claims = decode_unverified(token)
    out = []
    for row in explain_claims(claims, now=lab_now(lab)):
        out += [f"{row.name}: {row.value}", f"    means: {row.meaning}", f"    IAM/STS: {row.iam}"]
    return "\n".join(out)


def verify_walkthrough(lab: Lab, token: str) -> str:
    """How a verifier that knows nothing but the token checks it, one step at a time."""
    header, claims = decode_unverified(token)
    iss = str(claims.get("iss", ""))
    where = lab.endpoints["oidc"]
    doc = lab.discovery()
    jwks = lab.jwks()
    keys = [k for k in jwks.get("keys", []) if isinstance(k, dict)]
    lines = [
        f"1. Read iss from the token, not trusting it yet: {iss}",
        f"2. GET {iss}/.well-known/openid-configuration",
        f"   (in this lab that host is served at {where})",
        f"   issuer:   {doc.get('issuer')}",
        f"   jwks_uri: {doc.get('jwks_uri')}",
        f"   -> the document names the same issuer as the token: {doc.get('issuer') == iss}",
        f"3. GET {doc.get('jwks_uri')}: {len(keys)} key{'s' if len(keys) != 1 else ''}",
    ]
    lines += [
        f"   kid {k.get('kid')}  kty {k.get('kty')}  alg {k.get('alg')}  use {k.get('use')}"
        for k in keys
    ]
    lines.append(f"4. The token's header: alg {header.get('alg')}, kid {header.get('kid')}")
    lines.append("5. The checks STS runs on the token itself, in order (the STS stand-in's code):")
    v = verify_token(token, jwks, providers=oidc_providers(lab), now=lab_now(lab))
    lines += ["   " + line for line in v.text().splitlines()]
    return "\n".join(lines)


# --- lifetimes ------------------------------------------------------------------------------


def timeline(
    lab: Lab, token: str, *, session_s: int = C.DEFAULT_SESSION_DURATION_S
) -> TimelineWidget:
    """The lifetime timeline of ``token`` and of one STS session taken when the pod starts.

    The SDK calls STS the first time the application asks for credentials; sessions
    last ``session_s`` (1 h by default; stage 3 makes the real call).
    """
    _, claims = decode_unverified(token)
    iat, exp = float(claims["iat"]), float(claims["exp"])
    return TimelineWidget(iat, exp, sts_issued=iat, sts_expires=iat + session_s)


def timeline_text(widget: TimelineWidget) -> str:
    """What the timeline shows, in words, at the widget's "now"."""
    f = widget.facts()
    return alt_text(f) + f"\nstate: {widget.state()}"


# --- renewal ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Renewal:
    """The token volume before and after the kubelet renewed the token."""

    before_dir: str
    after_dir: str
    before_iat: float
    after_iat: float
    after_exp: float
    old_dir_exists: bool
    data_link: str
    token_link: str
    clock_before: float
    clock_after: float

    def text(self) -> str:
        return "\n".join(
            [
                f"lab clock: {utc_text(self.clock_before)} -> {utc_text(self.clock_after)}",
                f"..data pointed to  {self.before_dir}",
                f"..data points to   {self.after_dir}",
                f"old folder still there: {self.old_dir_exists}",
                f"token -> {self.token_link}   (the link the SDK opens; never changed)",
                f"iat: {utc_text(self.before_iat)} -> {utc_text(self.after_iat)}",
                f"new exp: {utc_text(self.after_exp)}",
            ]
        )


@dataclass(frozen=True)
class RenewalLater:
    """Where the lab clock cannot move (a real API server signs with the time it reads):
    when the kubelet will renew the token, in numbers, and how to watch it live."""

    backend: str
    now: float
    issued_at: float
    expires_at: float
    renew_at: float

    def text(self) -> str:
        ttl = self.expires_at - self.issued_at
        wait = max(0.0, self.renew_at - self.now)
        return "\n".join(
            [
                f"the {self.backend} lab runs on the wall clock: its API server signs tokens with "
                "the time it reads, so the lab cannot move time forward.",
                f"iat: {utc_text(self.issued_at)}   exp: {utc_text(self.expires_at)}   "
                f"(lifetime {ttl:.0f} s)",
                f"the kubelet renews it after 80% of its lifetime: at {utc_text(self.renew_at)}, "
                f"in {wait:.0f} s ({wait / 3600:.1f} h)",
                f"to watch one renewal live: the_token.renew_token(lab, live=True) makes a pod "
                f"whose token lives {C.MIN_TOKEN_EXPIRATION_S} s and waits for its renewal, "
                f"about {C.KUBELET_REFRESH_FRACTION * C.MIN_TOKEN_EXPIRATION_S:.0f} s later",
            ]
        )


LIVE_RENEWAL_POD = "renewal-pod"


def renew_token(
    lab: Lab, pod_name: str = C.POD_NAME, *, past_by_s: float = 60, live: bool = False
) -> Renewal | RenewalLater:
    """Move the lab clock ``past_by_s`` beyond the kubelet's renewal point and let it renew.

    Where the clock cannot move, say when the renewal will come (:class:`RenewalLater`);
    with ``live``, make a pod whose token lives 600 s and wait the ~480 s until the
    kubelet renews it (too slow for a workshop, there for the curious).
    """
    control = lab.control
    if live:
        return _renew_live(lab)
    before = token_status(lab, pod_name)
    start = control.now()
    try:
        before_dir, old_claims = _payload(before)
        control.advance_clock(float(before["renew_at"]) - start + past_by_s)
    except Unavailable:
        return RenewalLater(
            lab.backend, start, before["issued_at"], before["expires_at"], before["renew_at"]
        )
    return _renewal(before, before_dir, old_claims, start, control.now())


def _payload(status: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    folder = Path(status["file"]).parent
    if not folder.exists():
        raise Unavailable("the token's folder is inside the node")
    _, claims = decode_unverified((folder / C.TOKEN_FILE_NAME).read_text())
    return os.readlink(folder / DATA_DIR_NAME), claims


def _renewal(
    before: Mapping[str, Any], before_dir: str, old_claims: Mapping[str, Any], t0: float, t1: float
) -> Renewal:
    folder = Path(before["file"]).parent
    after_dir = os.readlink(folder / DATA_DIR_NAME)
    _, new_claims = decode_unverified((folder / C.TOKEN_FILE_NAME).read_text())
    return Renewal(
        before_dir=before_dir,
        after_dir=after_dir,
        before_iat=float(old_claims["iat"]),
        after_iat=float(new_claims["iat"]),
        after_exp=float(new_claims["exp"]),
        old_dir_exists=(folder / before_dir).exists(),
        data_link=after_dir,
        token_link=os.readlink(folder / C.TOKEN_FILE_NAME),
        clock_before=t0,
        clock_after=t1,
    )


def _renew_live(lab: Lab, *, timeout: float = 2 * C.MIN_TOKEN_EXPIRATION_S) -> Renewal:
    """A pod whose token lives 600 s; wait for the kubelet to renew it, on the wall clock."""
    from ..lessons.pod_mutation import mypod_manifest

    manifest = mypod_manifest()
    manifest["metadata"]["name"] = LIVE_RENEWAL_POD
    manifest["metadata"]["annotations"] = {
        C.TOKEN_EXPIRATION_ANNOTATION: str(C.MIN_TOKEN_EXPIRATION_S)
    }
    lab.recreate_pod(manifest)
    deadline = time.monotonic() + 30
    while True:
        try:
            before = token_status(lab, LIVE_RENEWAL_POD)
            before_dir, old_claims = _payload(before)
            break
        except (LookupError, OSError, Unavailable):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    t0 = lab.control.now()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, claims = decode_unverified(Path(before["file"]).read_text())
        if claims["iat"] != old_claims["iat"]:
            return _renewal(before, before_dir, old_claims, t0, lab.control.now())
        time.sleep(2)
    raise TimeoutError(f"the kubelet did not renew the token within {timeout:.0f} s")


# --- a deleted pod's token ------------------------------------------------------------------

# How long to ask again on a real API server, which caches a successful TokenReview
# for 10 s (the embedded one answers afresh at once).
REVIEW_CACHE_WAIT_S = 15.0


@dataclass(frozen=True)
class Review:
    """The ``status`` of one TokenReview, as the API server wrote it."""

    audiences_asked: list[str]
    status: dict[str, Any]

    @property
    def authenticated(self) -> bool:
        return bool(self.status.get("authenticated"))

    def lines(self) -> list[str]:
        """What the review says, one fact a line."""
        asked = (
            f"spec.audiences {json.dumps(self.audiences_asked)}"
            if self.audiences_asked
            else "no spec.audiences (so: the API server's own)"
        )
        head = f"TokenReview, {asked} -> authenticated: "
        if not self.authenticated:
            return [head + "false", f"  error: {self.status.get('error', '')}"]
        user = self.status.get("user") or {}
        extra = user.get("extra") or {}
        return [
            head + "true",
            f"  user:      {user.get('username', '')}",
            f"  groups:    {', '.join(user.get('groups') or [])}",
            f"  pod:       {', '.join(extra.get(EXTRA_POD_NAME, []))} "
            f"(uid {', '.join(extra.get(EXTRA_POD_UID, []))})",
            f"  audiences: {json.dumps(self.status.get('audiences') or [])}",
        ]


@dataclass(frozen=True)
class DeletedPodResult:
    """What the API server and STS make of a pod's token, before and after the pod goes."""

    pod: str
    pod_uid: str
    review_alive: Review
    bearer_status: int
    review_api_audiences: Review
    api_server_status: int
    review_deleted: Review
    token_file_exists: bool
    sts_ok: bool
    sts_detail: dict[str, str]

    def text(self) -> str:
        lines = [f"token bound to pod {self.pod} (uid {self.pod_uid})", "", "while the pod runs:"]
        lines += ["  " + line for line in self.review_alive.lines()]
        lines.append(
            f"  GET /api with the same token as bearer token -> HTTP {self.bearer_status}"
            f" {_HTTP.get(self.bearer_status, '')}"
        )
        lines += ["  " + line for line in self.review_api_audiences.lines()]
        lines += [
            "",
            f"the pod is deleted (GET the pod -> HTTP {self.api_server_status}); token file on "
            f"the node still there: {self.token_file_exists} (our copy is in memory)",
        ]
        lines += ["  " + line for line in self.review_deleted.lines()]
        lines.append(
            "  STS AssumeRoleWithWebIdentity with the same token -> "
            f"{'accepted' if self.sts_ok else 'refused'}"
        )
        lines += [f"    {k}: {v}" for k, v in self.sts_detail.items()]
        return "\n".join(lines)


_HTTP = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


def token_review(lab: Lab, token: str, audiences: list[str] | None = None) -> Review:
    """Ask the API server who ``token`` is (a TokenReview, as the admin), for ``audiences``
    (None: the API server's own audiences)."""
    from kubernetes import client

    spec: dict[str, Any] = {"token": token}
    if audiences:
        spec["audiences"] = audiences
    resp = client.AuthenticationV1Api(lab.api_client).create_token_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
        _preload_content=False,
    )
    return Review(list(audiences or []), dict(json.loads(resp.data)["status"]))


def bearer_status(lab: Lab, token: str) -> int:
    """The HTTP status of ``GET /api`` (API discovery, which every authenticated user may
    read) sent with ``token`` as the bearer token, with the ``kubernetes`` client."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    admin = lab.api_client.configuration
    cfg = client.Configuration(host=admin.host, api_key={"authorization": f"Bearer {token}"})
    cfg.ssl_ca_cert = admin.ssl_ca_cert
    api = client.ApiClient(cfg)
    try:
        client.CoreApi(api).get_api_versions()
        return 200
    except ApiException as err:
        return int(err.status)
    finally:
        close_api_client(api)


def _review_until_refused(lab: Lab, token: str, audiences: list[str]) -> Review:
    deadline = time.monotonic() + REVIEW_CACHE_WAIT_S
    review = token_review(lab, token, audiences)
    while review.authenticated and lab.backend != "embedded" and time.monotonic() < deadline:
        time.sleep(1.0)
        review = token_review(lab, token, audiences)
    return review


def delete_pod_keep_token(
    lab: Lab, pod_name: str = C.POD_NAME, *, session_name: str = "after-pod-deleted"
) -> DeletedPodResult:
    """Copy the pod's token and show it to the API server (TokenReview for STS's audience,
    and as a bearer token); delete the pod; show it to the API server and to STS again."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from kubernetes.client.rest import ApiException

    pod = lab.get_pod(pod_name)
    token_file = lab.volume_path(pod) / C.TOKEN_FILE_NAME
    token = token_file.read_text()
    _, claims = decode_unverified(token)
    bound = claims.get("kubernetes.io", {}).get("pod", {})
    audiences = [C.DEFAULT_AUDIENCE]
    alive = token_review(lab, token, audiences)
    as_bearer = bearer_status(lab, token)
    for_api = token_review(lab, token)
    lab.delete_pod(pod_name)
    try:
        lab.core.read_namespaced_pod(pod_name, C.NAMESPACE)
        status = 200
    except ApiException as err:
        status = int(err.status)
    deleted = _review_until_refused(lab, token, audiences)
    ep = lab.endpoints
    # AssumeRoleWithWebIdentity is an unsigned call: the token is the only credential.
    sts = boto3.session.Session(region_name=ep["region"]).client(
        "sts",
        endpoint_url=ep["sts"],
        verify=ep["ca_bundle"],
        config=Config(signature_version=UNSIGNED),
    )
    try:
        resp = sts.assume_role_with_web_identity(
            RoleArn=C.ROLE_ARN, RoleSessionName=session_name, WebIdentityToken=token
        )
        ok = True
        detail = {
            "AssumedRoleUser.Arn": resp["AssumedRoleUser"]["Arn"],
            "SubjectFromWebIdentityToken": resp["SubjectFromWebIdentityToken"],
            "Audience": resp["Audience"],
            "Credentials.AccessKeyId": mask_secret(resp["Credentials"]["AccessKeyId"]),
            "Credentials.SecretAccessKey": mask_secret(resp["Credentials"]["SecretAccessKey"]),
        }
    except ClientError as err:
        ok = False
        detail = {"Error": f"{err.response['Error']['Code']}: {err.response['Error']['Message']}"}
    return DeletedPodResult(
        pod=str(bound.get("name", pod_name)),
        pod_uid=str(bound.get("uid", "")),
        review_alive=alive,
        bearer_status=as_bearer,
        review_api_audiences=for_api,
        api_server_status=status,
        review_deleted=deleted,
        token_file_exists=token_file.exists(),
        sts_ok=ok,
        sts_detail=detail,
    )
