"""Stage 3, the trust-policy playground: the plumbing behind notebook 03.

The playground widget (:mod:`irsa_lab.ui.playground`) predicts STS's answer with the
pure :func:`~irsa_lab.ui.playground.judge`. :class:`RealSts` is its ``try_for_real``
hook: it sends the same situation through the real chain, the way it would happen
on AWS, and reads STS's real answer:

1. a token with the claimed namespace, ServiceAccount and audience is minted by the
   API server's TokenRequest (``create_namespaced_service_account_token``), the call
   the kubelet makes for a pod (the namespace and ServiceAccount are created if
   needed, and removed afterwards);
2. the edited trust policy is applied with boto3's ``iam.update_assume_role_policy``
   (and the OIDC provider deleted, for the "missing provider" situation);
3. boto3's ``sts.assume_role_with_web_identity`` goes to the STS stand-in;
4. whatever was changed in IAM or Kubernetes is put back.

:func:`aws_cli` runs the real ``aws`` CLI as the account administrator, as a learner
would from a laptop on a real account.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..aws.arns import issuer_host_path, oidc_provider_host_path
from ..aws.sts.errors import failure_from_wire
from ..constants import ROLE_NAME
from ..kube.container import minimal_env
from ..trace import TraceEvent
from ..ui.playground import PRESETS, ConditionRow, Playground, Verdict, trust_policy_text
from ..ui.text import text_table
from .the_token import lab_now, oidc_providers

__all__ = [
    "PLAYGROUND_SESSION",
    "PresetCheck",
    "RealSts",
    "aws_cli",
    "broken_trust_policy",
    "compare_presets",
    "correct_trust_policy",
    "playground",
    "presets_table",
    "trust_policy",
    "verdict_summary",
]

REAL_SOURCE = "STS stand-in, called through boto3"
# The TokenRequest's lifetime: the shortest the API server accepts is 10 minutes.
TOKEN_SECONDS = 600
# The RoleSessionName of every "Try it for real" call.
PLAYGROUND_SESSION = "irsa-lab-playground"


def _sub_parts(sub: str) -> tuple[str, str]:
    parts = sub.split(":")
    if len(parts) != 4 or parts[:2] != ["system", "serviceaccount"]:
        raise ValueError(f"not a ServiceAccount subject: {sub!r}")
    return parts[2], parts[3]


def _policy_equal(a: str, b: str) -> bool:
    try:
        return bool(json.loads(a) == json.loads(b))
    except ValueError:
        return False


def trust_policy(lab: Any, role_name: str = ROLE_NAME) -> dict[str, Any]:
    """The role's trust policy as IAM holds it (boto3 ``iam.get_role``)."""
    role = lab.aws_client("iam").get_role(RoleName=role_name)["Role"]
    return dict(role["AssumeRolePolicyDocument"])


def correct_trust_policy(lab: Any) -> str:
    """The article's trust policy for this lab's issuer, as eksctl writes it."""
    return trust_policy_text(lab.endpoints["issuer"], account_id=lab.endpoints["account_id"])


def broken_trust_policy(lab: Any, *, service_account: str = "s3-read-only-sa") -> str:
    """The article's trust policy with a typo in the ServiceAccount of the ``sub`` condition."""
    return trust_policy_text(
        lab.endpoints["issuer"],
        account_id=lab.endpoints["account_id"],
        service_account=service_account,
    )


def _steps_rows(events: Sequence[TraceEvent]) -> list[ConditionRow]:
    """The STS stand-in's recorded steps as table rows; a refused trust policy adds
    one row per failed condition, as STS evaluated it."""
    rows: list[ConditionRow] = []
    for ev in events:
        if ev.source != "sts" or ev.target == "sdk" or "url" in ev.detail or "path" in ev.detail:
            continue
        shown = {
            k: v for k, v in ev.detail.items() if k in ("iss", "sub", "aud", "audience", "provider")
        }
        actual = [f"{k}={v}" for k, v in shown.items()]
        # A refused trust policy carries the evaluator's one-line verdict; the full
        # explanation is in the per-condition rows added below.
        note = "" if ev.ok else str(ev.detail.get("verdict") or ev.detail.get("why", ""))
        rows.append(ConditionRow(ev.call, "STS step", ["ok"], actual or [ev.outcome], ev.ok, note))
        for c in ev.detail.get("failed_conditions", []):
            rows.append(
                ConditionRow(
                    str(c["key"]),
                    str(c["operator"]),
                    list(c["expected"]),
                    None if c["actual"] is None else list(c["actual"]),
                    False,
                    str(c["note"]),
                )
            )
    return rows


def _step_of(events: Sequence[TraceEvent]) -> str:
    """The pipeline step that refused, as the STS stand-in recorded it."""
    failed = [e for e in events if not e.ok and e.source == "sts" and "step" in e.detail]
    return str(failed[0].detail["step"]) if failed else "trust policy"


class RealSts:
    """The playground's ``try_for_real`` hook: the real chain's verdict on a situation.

    Call it with the claims (``iss``, ``sub``, ``aud``); the trust policy and whether
    the OIDC provider is registered come from the bound :class:`Playground`
    (:meth:`bind`), or from :meth:`verdict`'s arguments.
    """

    def __init__(self, lab: Any, *, role_name: str = ROLE_NAME) -> None:
        self.lab = lab
        self.role_name = role_name
        self.playground: Playground | None = None
        self._iam = lab.aws_client("iam")
        self._sts = lab.aws_client("sts")
        self.role_arn = str(self._iam.get_role(RoleName=role_name)["Role"]["Arn"])

    def bind(self, playground: Playground) -> None:
        self.playground = playground

    def __call__(self, claims: dict[str, Any]) -> Verdict:
        pg = self.playground
        return self.verdict(
            claims,
            policy_text=None if pg is None else pg.policy_text,
            provider_registered=True if pg is None else bool(pg.provider_box.value),
        )

    # -- the real chain ------------------------------------------------------------------

    def verdict(
        self,
        claims: dict[str, Any],
        *,
        policy_text: str | None = None,
        provider_registered: bool = True,
    ) -> Verdict:
        """Mint a real token for ``claims``, apply the situation to IAM, ask STS, restore."""
        from botocore.exceptions import ClientError

        namespace, service_account = _sub_parts(str(claims["sub"]))
        auds = claims.get("aud")
        audiences = [str(a) for a in (auds if isinstance(auds, list) else [auds])]
        with self._service_account(namespace, service_account):
            token = self._mint(str(claims["iss"]), namespace, service_account, audiences)
        control = self.lab.control
        mark = control.trace_mark()
        with self._situation(policy_text, provider_registered) as refused:
            if refused is not None:
                return refused
            try:
                self._sts.assume_role_with_web_identity(
                    RoleArn=self.role_arn,
                    RoleSessionName=PLAYGROUND_SESSION,
                    WebIdentityToken=token,
                )
            except ClientError as err:
                events = control.trace_since(mark)
                error = err.response.get("Error", {})
                code, message = str(error.get("Code")), str(error.get("Message"))
                cls = failure_from_wire(code, message)
                return Verdict(
                    False,
                    code,
                    message,
                    int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)),
                    _steps_rows(events),
                    "\n".join(f"{e.call}: {e.detail.get('why', e.outcome)}" for e in events),
                    step=_step_of(events),
                    source=REAL_SOURCE,
                    failure=None if cls is None else cls(message),
                )
            events = control.trace_since(mark)
            return Verdict(
                True,
                None,
                "AssumeRoleWithWebIdentity succeeds",
                200,
                _steps_rows(events),
                "STS returned temporary credentials.",
                source=REAL_SOURCE,
            )

    def _mint(self, iss: str, namespace: str, service_account: str, audiences: list[str]) -> str:
        if iss == self.lab.endpoints["issuer"]:
            body = {"spec": {"audiences": audiences, "expirationSeconds": TOKEN_SECONDS}}
            resp = self.lab.core.create_namespaced_service_account_token(
                service_account, namespace, body
            )
            return str(resp.status.token)
        # Another issuer: no API server of ours issues for it, so sign one directly with
        # the cluster's key under that issuer.
        return self.lab.control.sign_token(
            issuer=iss,
            namespace=namespace,
            service_account=service_account,
            audiences=audiences,
            expiration_seconds=TOKEN_SECONDS,
        )

    @contextmanager
    def _service_account(self, namespace: str, name: str) -> Iterator[None]:
        from kubernetes.client.rest import ApiException

        core = self.lab.core
        made_ns = made_sa = False
        try:
            found = core.read_namespace(namespace)
            if found.status is not None and found.status.phase == "Terminating":
                # Deleted by an earlier run and still being emptied by the namespace
                # controller: nothing can be created in it, so wait until it is gone.
                _wait_until_gone(core, namespace)
                raise ApiException(status=404)
        except ApiException as err:
            if err.status != 404:
                raise
            core.create_namespace({"metadata": {"name": namespace}})
            made_ns = True
        try:
            core.read_namespaced_service_account(name, namespace)
        except ApiException as err:
            if err.status != 404:
                raise
            core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
            made_sa = True
        try:
            yield
        finally:
            if made_ns:
                core.delete_namespace(namespace)
            elif made_sa:
                core.delete_namespaced_service_account(name, namespace)

    @contextmanager
    def _situation(self, policy_text: str | None, provider_registered: bool) -> Iterator[Any]:
        """Apply the edited trust policy and provider state to IAM; yields a Verdict if
        IAM refuses the policy (STS then never sees it), else None; restores IAM."""
        from botocore.exceptions import ClientError

        iam = self._iam
        original = json.dumps(
            iam.get_role(RoleName=self.role_name)["Role"]["AssumeRolePolicyDocument"]
        )
        changed_policy = policy_text is not None and not _policy_equal(policy_text, original)
        provider: dict[str, Any] | None = None
        try:
            if changed_policy:
                try:
                    iam.update_assume_role_policy(
                        RoleName=self.role_name, PolicyDocument=policy_text
                    )
                except ClientError as err:
                    changed_policy = False
                    error = err.response.get("Error", {})
                    message = str(error.get("Message"))
                    yield Verdict(
                        False,
                        str(error.get("Code")),
                        message,
                        int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)),
                        [
                            ConditionRow(
                                "policy document",
                                "UpdateAssumeRolePolicy",
                                ["accepted by IAM"],
                                [message],
                                False,
                                "IAM refused to save the policy",
                            )
                        ],
                        f"iam.update_assume_role_policy failed: {message}",
                        step="policy syntax",
                        source=REAL_SOURCE,
                    )
                    return
            if not provider_registered:
                provider = self._remove_provider()
            yield None
        finally:
            if provider is not None:
                iam.create_open_id_connect_provider(**provider)
            if changed_policy:
                iam.update_assume_role_policy(RoleName=self.role_name, PolicyDocument=original)

    def _remove_provider(self) -> dict[str, Any] | None:
        iam = self._iam
        host_path = issuer_host_path(str(self.lab.endpoints["issuer"]))
        for entry in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
            arn = str(entry["Arn"])
            if oidc_provider_host_path(arn) == host_path:
                got = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
                iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=arn)
                return {
                    "Url": "https://" + issuer_host_path(str(got["Url"])),
                    "ClientIDList": list(got.get("ClientIDList", [])),
                    "ThumbprintList": list(got.get("ThumbprintList", [])),
                }
        return None


def playground(lab: Any, *, role_name: str = ROLE_NAME) -> Playground:
    """The playground on the role and OIDC providers as IAM holds them, wired to the
    real STS stand-in (its "Try it for real" button and :meth:`Playground.run_for_real`)."""
    iam = lab.aws_client("iam")
    role = iam.get_role(RoleName=role_name)["Role"]
    providers = oidc_providers(lab)
    real = RealSts(lab, role_name=role_name)
    pg = Playground(
        lab.endpoints["issuer"],
        providers=providers,
        role_arn=str(role["Arn"]),
        policy_text=json.dumps(role["AssumeRolePolicyDocument"], indent=2),
        try_for_real=real,
        # What "Try it for real" sends, so sts:RoleSessionName and aws:CurrentTime agree.
        session_name=PLAYGROUND_SESSION,
        now=lambda: lab_now(lab),
    )
    real.bind(pg)
    return pg


def verdict_summary(verdict: Verdict) -> str:
    """Verdict, code, message and the first failed condition, one fact a line."""
    lines = [
        f"allowed:          {verdict.allowed}",
        f"error code:       {verdict.code or '-'} (HTTP {verdict.http_status})",
        f"message:          {verdict.message}",
        f"decided at:       {verdict.step}",
    ]
    conditions = [r for r in verdict.failed_conditions if r.operator != "STS step"]
    for r in conditions[:1]:
        actual = "(absent from the request)" if r.actual is None else ", ".join(r.actual)
        if " " in r.operator:  # a check of STS's own ("aud is a client ID of ...")
            lines.append(f"failed check:     {r.key} {r.operator}")
        else:  # a trust-policy condition ("StringEquals <issuer>:sub")
            lines.append(f"failed condition: {r.operator} {r.key}")
        lines.append(f"  expected:       {', '.join(r.expected)}")
        lines.append(f"  actual:         {actual}")
    return "\n".join(lines)


def _wait_until_gone(core: Any, namespace: str, timeout: float = 60.0) -> None:
    """Return once ``namespace`` no longer exists (the namespace controller finished)."""
    from kubernetes.client.rest import ApiException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            core.read_namespace(namespace)
        except ApiException as err:
            if err.status == 404:
                return
            raise
        time.sleep(0.05)
    raise TimeoutError(f"namespace {namespace} still terminating after {timeout:.0f} s")


@dataclass(frozen=True)
class PresetCheck:
    """One preset, judged by the playground and answered by the real STS stand-in."""

    preset: str
    predicted: Verdict
    real: Verdict

    @property
    def agree(self) -> bool:
        return (self.predicted.allowed, self.predicted.code, self.predicted.message) == (
            self.real.allowed,
            self.real.code,
            self.real.message,
        )


def compare_presets(pg: Playground, names: Sequence[str] = PRESETS) -> list[PresetCheck]:
    """Apply each preset, then run it for real; the playground ends as it started."""
    if pg.try_for_real is None:
        raise ValueError("this playground has no try_for_real hook")
    start = pg.snapshot()
    checks = []
    try:
        for name in names:
            predicted = pg.apply_preset(name)
            real = pg.run_for_real()
            assert real is not None
            checks.append(PresetCheck(name, predicted, real))
    finally:
        pg.restore(start)
    return checks


def presets_table(checks: Sequence[PresetCheck]) -> str:
    """The comparison as a plain-text table."""

    def answer(v: Verdict) -> str:
        return "allowed" if v.allowed else f"{v.code} ({v.http_status})"

    return text_table(
        ("preset", "playground predicts", "real STS answers", "agree"),
        [
            (c.preset, answer(c.predicted), answer(c.real), "yes" if c.agree else "NO")
            for c in checks
        ],
    )


def aws_cli(
    lab: Any, *args: str, admin: bool = True, extra_env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``aws`` CLI against the lab, as the account administrator (``admin``)
    or with no credentials at all (a process on the node: only the IMDS as the node
    reaches it). Output is captured."""
    with tempfile.TemporaryDirectory(prefix="irsa-lab-home-") as home:
        env = minimal_env(Path(home))
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        env.update(lab.aws_env(admin=admin))
        env.update(extra_env or {})
        return subprocess.run(
            ["aws", *args],
            env=env,
            cwd=home,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
