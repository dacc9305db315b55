"""Stage 4, the STS call: the plumbing behind notebook 04.

A command runs inside the pod (``lab.exec``); everything the components received and
answered meanwhile is read back from the lab's trace, together with the kubelet's
TokenRequest and write that put the token the SDK read into the file (found by the
payload folder the read resolved to), and turned into the steps of a sequence diagram (:mod:`irsa_lab.ui.sequence`), into a step-by-step account of what
botocore did, and into a Mermaid text view. :func:`broken_trust` breaks the trust
policy for a failed run to draw under the working one.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from ..constants import BUCKET, POD_NAME, ROLE_NAME
from ..trace import TraceEvent
from ..ui.playground import trust_policy_text
from ..ui.sequence import FIGURE_DPI, Step, lane_of, steps_from_trace

__all__ = [
    "PodRun",
    "Run",
    "as_png",
    "botocore_story",
    "broken_trust",
    "exchange_steps",
    "mask_session",
    "recorded_run",
    "token_origin",
    "upload",
]

SESSION_NAME = re.compile(r"botocore-session-\d+")
MASKED_SESSION = "botocore-session-<digits>"
# What each trace step means, told from the SDK's side.
_MEANING = {
    "TokenRequest": "the kubelet asked the API server for a token bound to the pod",
    "renew TokenRequest": "the kubelet asked the API server for a fresh token (renewal)",
    "write": "the kubelet wrote the token into the pod's projected volume",
    "rewrite": "the kubelet swapped the renewed token into the pod's projected volume",
    "read token": "read the projected token from AWS_WEB_IDENTITY_TOKEN_FILE",
    "AssumeRoleWithWebIdentity": "botocore sent AssumeRoleWithWebIdentity (unsigned: the "
    "token is the proof) with AWS_ROLE_ARN and a generated session name",
    "parse token": "STS split the JWT and read its header and claims",
    "find OIDC provider": "STS looked up the IAM OIDC provider named by the token's iss",
    "GET openid-configuration": "STS fetched the issuer's discovery document",
    "GET jwks": "STS fetched the issuer's public keys (jwks_uri)",
    "verify signature": "STS checked the signature with the key named by kid",
    "check claims": "STS checked exp/iat/nbf and that aud is a client ID of the provider",
    "evaluate trust policy": "STS evaluated the role's trust policy (sub and aud conditions)",
    "AssumeRoleWithWebIdentity reply": "STS answered",
    "GetCallerIdentity": "the CLI called GetCallerIdentity, signed with the temporary keys",
    "ListBuckets": "the CLI listed buckets, signed with the temporary keys",
    "PutObject": "the CLI uploaded an object, signed with the temporary keys",
}


def as_png(fig: Figure) -> Any:
    """A figure as a PNG image for ``display``.

    The figures are built without pyplot (no global state), so the notebook's inline
    backend never registers a PNG formatter for them; this renders it explicitly.
    Its text form, ``<IPython.core.display.Image object>``, is the same on every run.
    """
    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI)
    return Image(data=buf.getvalue(), format="png")


def mask_session(text: str) -> str:
    """Hide the digits of botocore's generated session name (they change every run)."""
    return SESSION_NAME.sub(MASKED_SESSION, text)


@dataclass(frozen=True)
class PodRun:
    """A command run in a pod, with what the components recorded meanwhile."""

    returncode: int
    stdout: str
    stderr: str
    events: list[TraceEvent]

    @property
    def printed(self) -> str:
        """What the command printed: stdout, else its last stderr line."""
        return self.stdout.strip() or (self.stderr.strip().splitlines() or [""])[-1]

    @property
    def output(self) -> str:
        """What the command printed, botocore's session digits masked."""
        return mask_session(self.printed)


@dataclass(frozen=True)
class Run(PodRun):
    """One command run in the article's pod (notebook 04)."""

    argv: tuple[str, ...] = ()

    @property
    def identity(self) -> dict[str, Any]:
        """The parsed JSON of ``aws sts get-caller-identity``, session digits masked."""
        return dict(json.loads(mask_session(self.stdout)))

    @property
    def steps(self) -> list[Step]:
        return exchange_steps(self.events)


def recorded_run(
    lab: Any, argv: Sequence[str], *, pod: str = POD_NAME, cold_keys: bool = True
) -> Run:
    """Run ``argv`` in ``pod`` and keep the trace of it.

    ``cold_keys`` empties STS's cache of the issuer's discovery document and JWKS
    first, so the run shows STS fetching them (as it does the first time it meets an
    issuer; afterwards it uses its cache)."""
    control = lab.control
    if cold_keys:
        control.forget_issuer_keys()
    mark = control.trace_mark()
    done = lab.exec(pod, list(argv))
    during = control.trace_since(mark)
    events = token_origin(control.trace_events(), during) + during
    return Run(done.returncode, done.stdout, done.stderr, events, argv=tuple(argv))


def token_origin(events: Sequence[TraceEvent], reads: Sequence[TraceEvent]) -> list[TraceEvent]:
    """The kubelet's TokenRequest and volume write behind each "read token" in ``reads``.

    A read names the pod's uid and the ``..`` payload folder it resolved to; the
    kubelet's write of that folder, and its last TokenRequest for the same pod and
    volume before it, are taken from ``events`` (all the trace holds). Nothing is
    returned for a read that names no folder, or whose write the trace no longer holds.
    """
    out: list[TraceEvent] = []
    for read in reads:
        if read.call != "read token" or not read.detail.get("payload"):
            continue
        uid = read.detail.get("uid")
        write = next(
            (
                e
                for e in reversed(events)
                if e.recorder == "kubelet"
                and e.target == "token-file"
                and e.detail.get("uid") == uid
                and e.detail.get("payload") == read.detail["payload"]
            ),
            None,
        )
        if write is None:
            continue
        request = next(
            (
                e
                for e in reversed(events)
                if e.recorder == "kubelet"
                and e.call.endswith("TokenRequest")
                and e.ok
                and e.seq < write.seq
                and e.detail.get("uid") == uid
                and e.detail.get("volume") == write.detail.get("volume")
            ),
            None,
        )
        for ev in (request, write):
            if ev is not None and ev not in out:
                out.append(ev)
    return sorted(out, key=lambda e: (e.wall, e.seq))


def _sdk_view(events: Sequence[TraceEvent]) -> list[TraceEvent]:
    """The events as seen by the caller of each step.

    The OIDC host and STS's key fetcher both record each fetch; keep STS's side (the
    fetcher's, which carries the URL) and drop the host's record and the key summary.
    """
    return [
        ev
        for ev in events
        if not (ev.target == "oidc" and (ev.recorder == "oidc" or "url" not in ev.detail))
    ]


def exchange_steps(events: Sequence[TraceEvent]) -> list[Step]:
    """The sequence-diagram steps of a recorded run (:func:`recorded_run`)."""
    return steps_from_trace(_sdk_view(events))


# The detail shown under a step whose call alone decides it: a template over the
# recorded detail (a key the event lacks shows as None).
_DETAIL_BY_CALL = {
    "read token": "{path}, opened by {opener} in {process}, called from {called_from}",
    "parse token": "iss={iss}, sub={sub}, aud={aud}, kid={kid}",
    "verify signature": "{alg} with kid {kid}",
}


class _Detail(dict[str, Any]):
    def __missing__(self, key: str) -> None:
        return None


def _fact(ev: TraceEvent) -> str:
    d = ev.detail
    if ev.call.endswith("TokenRequest"):
        return (
            f"{d.get('serviceaccount')} for pod {d.get('pod')}, audiences={d.get('audiences')}, "
            f"expirationSeconds={d.get('expirationSeconds')}"
        )
    if ev.recorder == "kubelet" and ev.target == "token-file":
        return f"volume {d.get('volume')}"
    if ev.call in _DETAIL_BY_CALL:
        return _DETAIL_BY_CALL[ev.call].format_map(_Detail(d))
    if ev.call == "AssumeRoleWithWebIdentity" and ev.source == "sdk":
        return f"RoleArn={d.get('role_arn')}, RoleSessionName={d.get('session')}"
    if ev.call == "find OIDC provider" and ev.ok:
        return str(d.get("provider", ""))
    if ev.target == "oidc":
        return f"{d.get('url')} -> HTTP {d.get('status')}"
    if ev.call == "check claims" and ev.ok:
        return f"exp {d.get('exp')}, audience {d.get('audience')}"
    if ev.call == "evaluate trust policy":
        return str(d.get("verdict", ""))
    if ev.call == "AssumeRoleWithWebIdentity reply":
        return f"credentials for {d.get('arn')}" if ev.ok else str(d.get("message", ""))
    if ev.target == "s3":
        return f"{d.get('action')}: {d.get('decision')}"
    if ev.call == "GetCallerIdentity":
        return str(d.get("arn", ""))
    return ""


def botocore_story(events: Sequence[TraceEvent]) -> str:
    """What happened, step by step, in words, with the recorded facts (no secrets:
    the access key id and the credentials' expiry are left out)."""
    lines = []
    n = 0
    for ev in _sdk_view(events):
        src, dst = lane_of(ev.source, ev.call), lane_of(ev.target, ev.call)
        if src is None or dst is None:
            continue
        n += 1
        result = "ok" if ev.ok else f"FAILED: {ev.outcome}"
        lines.append(f"{n:>2}. {_MEANING.get(ev.call, ev.call)} [{result}]")
        fact = _fact(ev)
        if fact:
            lines.append(f"    {mask_session(fact)}")
    return "\n".join(lines)


@contextmanager
def broken_trust(lab: Any, how: str = "sub", *, role_name: str = ROLE_NAME) -> Iterator[str]:
    """Break the role's trust policy for the duration of a ``with`` block.

    ``how="sub"``: the ``sub`` condition names ``s3-read-only-sa`` (a typo);
    ``how="aud"``: the ``aud`` condition expects ``sts.amazon.com``.
    Yields a one-line description; the original policy is restored afterwards.
    """
    if how not in ("sub", "aud"):
        raise ValueError(f"how must be 'sub' or 'aud', not {how!r}")
    iam = lab.aws_client("iam")
    original = json.dumps(iam.get_role(RoleName=role_name)["Role"]["AssumeRolePolicyDocument"])
    issuer = lab.endpoints["issuer"]
    if how == "sub":
        broken = trust_policy_text(issuer, service_account="s3-read-only-sa")
        what = "sub condition expects system:serviceaccount:default:s3-read-only-sa"
    else:
        broken = trust_policy_text(issuer, audience="sts.amazon.com")
        what = "aud condition expects sts.amazon.com"
    iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=broken)
    try:
        yield what
    finally:
        iam.update_assume_role_policy(RoleName=role_name, PolicyDocument=original)


def upload(lab: Any, *, pod: str = POD_NAME, key: str = "hello.txt") -> Run:
    """Try to write to the bucket from the pod (``aws s3api put-object``)."""
    return recorded_run(
        lab,
        ["aws", "s3api", "put-object", "--bucket", BUCKET, "--key", key],
        pod=pod,
        cold_keys=False,
    )
