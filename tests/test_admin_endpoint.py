"""The admin endpoint: another process sees and turns what StackControl does in-process."""

from __future__ import annotations

import ipaddress
import json
import socket
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from irsa_lab import constants as C
from irsa_lab.admin import TOKEN_FILE, RemoteControl, admin_app, serve_admin
from irsa_lab.clock import LAB_EPOCH, ManualClock, SystemClock
from irsa_lab.control import StackControl, Unavailable
from irsa_lab.httpd import ServerLoop, free_port
from irsa_lab.jose import decode_unverified
from irsa_lab.labs.catalog import pod_manifest
from irsa_lab.pki import LabCA
from irsa_lab.session import Lab
from irsa_lab.stack import EmbeddedLab


@dataclass
class Admin:
    stack: EmbeddedLab
    lab: Lab
    url: str
    endpoints: dict[str, Any]
    local: StackControl
    remote: RemoteControl
    ca: ssl.SSLContext


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Admin]:
    state = tmp_path_factory.mktemp("admin") / "state"
    stack = EmbeddedLab(state_dir=state, seed=11, clock=ManualClock(LAB_EPOCH)).start()
    lab = Lab(stack.endpoints.as_dict(), stack.state_dir, backend="embedded", embedded=stack)
    try:
        local = StackControl(stack)
        url = serve_admin(stack.loop, local, stack.state_dir, tls=stack.ca.issue().server_context())
        endpoints = {**stack.endpoints.as_dict(), "admin": url}
        remote = RemoteControl(endpoints, stack.state_dir)
        ca = ssl.create_default_context(cafile=stack.endpoints.ca_bundle)
        yield Admin(stack, lab, url, endpoints, local, remote, ca)
    finally:
        lab.close()
        stack.stop()


def raw(
    admin: Admin, method: str, path: str, body: bytes | None = None, **auth: str | None
) -> tuple[int, dict[str, Any]]:
    """One request as any HTTP client sends it: with the real token, or ``token=`` given."""
    req = urllib.request.Request(admin.url + path, data=body, method=method)  # noqa: S310
    token = auth["token"] if "token" in auth else (admin.stack.state_dir / TOKEN_FILE).read_text()
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, context=admin.ca, timeout=10) as resp:  # noqa: S310
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def default_pod(admin: Admin) -> dict[str, Any]:
    try:
        return admin.lab.get_pod(C.POD_NAME)
    except Exception:  # noqa: BLE001 - not created yet
        return admin.lab.create_pod(pod_manifest())


# --- the views ----------------------------------------------------------------------------


def test_the_remote_trace_is_the_stacks_trace_after_a_real_sts_call(admin: Admin) -> None:
    mark = admin.remote.trace_mark()
    assert mark == admin.local.trace_mark()
    uid = default_pod(admin)["metadata"]["uid"]
    assert admin.remote.token_status(uid)
    assume_role(admin)
    since = admin.remote.trace_since(mark)
    assert since == admin.local.trace_since(mark)
    assert any(e.target == "sts" and e.call == "AssumeRoleWithWebIdentity" for e in since)
    assert admin.remote.trace_events() == admin.local.trace_events()


def test_token_status_of_the_default_pod_round_trips_with_its_paths(admin: Admin) -> None:
    uid = default_pod(admin)["metadata"]["uid"]
    remote = admin.remote.token_status(uid)
    assert remote == admin.local.token_status(uid)
    assert remote and isinstance(remote[0]["file"], Path) and remote[0]["file"].is_file()
    assert admin.remote.token_status("no-such-uid") == []


def test_the_clock_advances_from_the_other_process(admin: Admin) -> None:
    before = admin.stack.clock.now()
    assert admin.remote.now() == before
    admin.remote.advance_clock(90)
    assert admin.stack.clock.now() == before + 90 == admin.remote.now()


def test_a_token_signed_remotely_names_the_other_issuer_and_the_clusters_key(admin: Admin) -> None:
    token = admin.remote.sign_token(
        issuer="https://attacker.example",
        namespace="other",
        service_account="evil",
        audiences=["sts.amazonaws.com"],
        expiration_seconds=3600,
    )
    header, claims = decode_unverified(token)
    assert claims["iss"] == "https://attacker.example"
    assert claims["sub"] == "system:serviceaccount:other:evil"
    assert claims["aud"] == ["sts.amazonaws.com"]
    assert claims["exp"] - claims["iat"] == 3600
    assert header["kid"] == admin.stack.signing_key.kid


# --- the knobs ------------------------------------------------------------------------------


def imds_v1_status(admin: Admin) -> int:
    req = urllib.request.Request(admin.stack.endpoints.imds + "/latest/meta-data/")  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback
            return int(resp.status)
    except urllib.error.HTTPError as err:
        with err:
            return err.code


def test_metadata_options_set_remotely_are_what_the_imds_stand_in_enforces(admin: Admin) -> None:
    before = admin.remote.metadata_options()
    assert imds_v1_status(admin) == 200
    try:
        after = admin.remote.modify_metadata_options(http_tokens="required", hop_limit=1)
        assert after == {"HttpTokens": "required", "HttpPutResponseHopLimit": 1}
        assert admin.local.metadata_options() == after == admin.remote.metadata_options()
        assert imds_v1_status(admin) == 401
    finally:
        admin.remote.modify_metadata_options(
            http_tokens=before["HttpTokens"], hop_limit=before["HttpPutResponseHopLimit"]
        )
    assert imds_v1_status(admin) == 200


def test_another_python_process_turns_the_knob(admin: Admin, tmp_path: Path) -> None:
    endpoints = tmp_path / "endpoints.json"
    endpoints.write_text(json.dumps(admin.endpoints))
    code = (
        "import json, sys; from pathlib import Path; from irsa_lab.admin import RemoteControl; "
        "c = RemoteControl(json.loads(Path(sys.argv[1]).read_text()), Path(sys.argv[2])); "
        "print(json.dumps(c.modify_metadata_options(hop_limit=7)))"
    )
    before = admin.local.metadata_options()
    try:
        out = subprocess.run(
            [sys.executable, "-c", code, str(endpoints), str(admin.stack.state_dir)],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert json.loads(out.stdout) == admin.local.metadata_options()
        assert admin.stack.imds_settings.hop_limit == 7
    finally:
        admin.local.modify_metadata_options(hop_limit=before["HttpPutResponseHopLimit"])


def test_options_ec2_refuses_raise_value_error_and_change_nothing(admin: Admin) -> None:
    before = admin.remote.metadata_options()
    with pytest.raises(ValueError, match="HttpTokens must be one of optional, required"):
        admin.remote.modify_metadata_options(http_tokens="sometimes")
    with pytest.raises(ValueError, match="between 1 and 64, not 65"):
        admin.remote.modify_metadata_options(hop_limit=65)
    assert admin.remote.metadata_options() == before


def test_the_webhook_stops_and_starts_from_the_other_process(admin: Admin) -> None:
    try:
        admin.remote.stop_webhook()
        assert not admin.stack.webhook_running and not admin.remote.webhook_running()
    finally:
        admin.remote.start_webhook()
    assert admin.stack.webhook_running and admin.remote.webhook_running()


def test_waiting_for_the_pod_identity_config_returns_once_the_webhook_has_it(
    admin: Admin,
) -> None:
    associations = admin.stack.aws.associations
    made = associations.create("default", "waited-sa", C.ROLE_ARN)
    try:
        admin.remote.wait_for_pod_identity_config(timeout=5)
        config = json.loads(admin.stack.pod_identity_config.path.read_text())
        assert {"namespace": "default", "serviceAccount": "waited-sa"} in config["identities"]
    finally:
        associations.delete(made.association_id)
    status, answer = raw(admin, "POST", "/webhook/pod-identity-config/wait", b'{"timeout": "x"}')
    assert status == 400 and "wrong type" in answer["message"]


def assume_role(admin: Admin) -> None:
    """A real AssumeRoleWithWebIdentity with the default pod's token."""
    uid = default_pod(admin)["metadata"]["uid"]
    token = admin.remote.token_status(uid)[0]["file"].read_text()
    sts = boto3.client(
        "sts",
        endpoint_url=admin.stack.endpoints.sts,
        verify=admin.stack.endpoints.ca_bundle,
        region_name=C.REGION,
    )
    sts.assume_role_with_web_identity(
        RoleArn=C.ROLE_ARN, RoleSessionName="admin-test", WebIdentityToken=token
    )


def key_fetches(admin: Admin, mark: int) -> list[str]:
    return [
        e.call for e in admin.remote.trace_since(mark) if (e.source, e.target) == ("sts", "oidc")
    ]


def test_forgetting_the_issuer_keys_makes_sts_fetch_them_again(admin: Admin) -> None:
    assume_role(admin)
    mark = admin.remote.trace_mark()
    assume_role(admin)
    assert key_fetches(admin, mark) == [], "STS fetched the keys it had cached"
    admin.remote.forget_issuer_keys()
    mark = admin.remote.trace_mark()
    assume_role(admin)
    assert key_fetches(admin, mark), "STS did not fetch the issuer's keys after they were forgotten"


# --- refusals ---------------------------------------------------------------------------------


# "\xff\xfe" goes out as two bytes that are not UTF-8.
@pytest.mark.parametrize("token", [None, "", "not-the-token", "\xff\xfe"])
def test_a_missing_or_wrong_token_is_401_before_any_route(admin: Admin, token: str | None) -> None:
    for method, path in [("GET", "/trace"), ("POST", "/webhook/stop"), ("GET", "/no-such")]:
        status, body = raw(admin, method, path, token=token)
        assert (status, body["error"]) == (401, "Unauthorized")
    assert admin.stack.webhook_running


def test_a_client_with_a_stale_token_file_gets_permission_error(
    admin: Admin, tmp_path: Path
) -> None:
    (tmp_path / TOKEN_FILE).write_text("stale")
    with pytest.raises(PermissionError, match="refused"):
        RemoteControl(admin.endpoints, tmp_path).trace_mark()


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        ("PUT", "/metadata-options", b"{not json", "not JSON"),
        ("PUT", "/metadata-options", b"[1]", "JSON object"),
        ("PUT", "/metadata-options", b'{"HttpTokens": 1}', "wrong type"),
        ("PUT", "/metadata-options", b'{"HttpPutResponseHopLimit": true}', "wrong type"),
        ("PUT", "/metadata-options", b'{"HttpTokens": "nope"}', "HttpTokens must be one of"),
        ("PUT", "/metadata-options", b'{"Hop": 2}', "unknown fields"),
        ("POST", "/clock/advance", b"{}", "finite number"),
        ("POST", "/clock/advance", b'{"seconds": "ten"}', "wrong type"),
        ("POST", "/tokens", b'{"issuer": "https://x"}', "missing fields"),
        ("GET", "/trace?since=abc", None, "since must be an integer"),
    ],
)
def test_bad_input_is_400_with_a_message(
    admin: Admin, method: str, path: str, body: bytes | None, says: str
) -> None:
    status, answer = raw(admin, method, path, body)
    assert status == 400 and answer["error"] == "BadRequest"
    assert says in answer["message"]


def test_what_the_backend_cannot_do_is_409_and_unavailable_with_its_message(admin: Admin) -> None:
    class WallClockStack:  # a stack whose clock cannot move, as on a real API server
        backend = "k8s"
        clock = SystemClock()

    control = StackControl(WallClockStack())
    served = admin.stack.loop.serve("admin-wall", admin_app(control, "t0k"))
    try:
        (admin.stack.state_dir / "other").mkdir(exist_ok=True)
        (admin.stack.state_dir / "other" / TOKEN_FILE).write_text("t0k")
        remote = RemoteControl({"admin": served.url}, admin.stack.state_dir / "other")
        with pytest.raises(Unavailable) as caught:
            remote.advance_clock(1)
        with pytest.raises(Unavailable) as local:
            control.advance_clock(1)
        assert str(caught.value) == str(local.value)
        with pytest.raises(Unavailable, match="no kubelet"):
            remote.token_status("any")
    finally:
        admin.stack.loop.unserve("admin-wall")


def test_no_admin_url_or_no_token_file_is_unavailable_naming_irsa_lab_up(
    admin: Admin, tmp_path: Path
) -> None:
    for endpoints, state in [({}, admin.stack.state_dir), (admin.endpoints, tmp_path)]:
        with pytest.raises(Unavailable, match="irsa-lab up"):
            RemoteControl(endpoints, state).metadata_options()
    gone = {**admin.endpoints, "admin": f"https://127.0.0.1:{free_port()}"}
    with pytest.raises(Unavailable, match="does not answer"):
        RemoteControl(gone, admin.stack.state_dir).webhook_running()
    assert RemoteControl(admin.endpoints, tmp_path).backend == "embedded"


def test_the_client_verifies_the_endpoint_with_the_labs_ca(admin: Admin, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    other_ca.write_bytes(LabCA.create().cert_pem)
    wrong = RemoteControl({**admin.endpoints, "ca_bundle": str(other_ca)}, admin.stack.state_dir)
    with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
        wrong.trace_mark()


# --- the token file and the socket ----------------------------------------------------------------


def test_the_token_file_is_0600_and_fresh_on_every_start(admin: Admin, tmp_path: Path) -> None:
    path = admin.stack.state_dir / TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loop = ServerLoop("admin-test").start()
    try:
        url = serve_admin(loop, admin.local, tmp_path)
        again = tmp_path / TOKEN_FILE
        assert stat.S_IMODE(again.stat().st_mode) == 0o600
        assert len(again.read_text()) >= 32 and again.read_text() != path.read_text()
        assert RemoteControl({"admin": url}, tmp_path).webhook_running()
    finally:
        loop.stop()


def _outward_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        addr = str(s.getsockname()[0])
    return None if ipaddress.ip_address(addr).is_loopback else addr


def test_the_endpoint_listens_on_loopback_only(admin: Admin) -> None:
    served = admin.stack.loop.served()["admin"]
    assert served.url.startswith("https://127.0.0.1:")
    assert served.server.addresses
    for address in served.server.addresses:
        assert ipaddress.ip_address(address[0]).is_loopback
    outward = _outward_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback address to try (a network interface)")
    with pytest.raises(OSError), socket.create_connection((outward, served.port), timeout=2):
        pass
