"""The kubelet stand-in: projected volumes with the atomic ..data layout, renewal at 80%/24 h."""

from __future__ import annotations

import os
import re
import stat
import threading
from pathlib import Path

from token_fixtures import (  # noqa: F401 - fixtures
    CA_PEM,
    POD_UID,
    FakeApiServer,
    clock_fixture,
    demo_key_fixture,
    fake_api_fixture,
    ids_fixture,
    irsa_pod,
    issuer_fixture,
    kubelet_fixture,
)

from irsa_lab.clock import LAB_EPOCH, ManualClock
from irsa_lab.constants import DEFAULT_AUDIENCE, NODE_NAME, TOKEN_VOLUME_NAME
from irsa_lab.ids import Ids
from irsa_lab.jose import decode_unverified
from irsa_lab.kube.kubelet import Kubelet, volume_dir
from irsa_lab.trace import Trace

API_VOLUME = "kube-api-access-x7k2p"
PAYLOAD_DIR = re.compile(r"^\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d{10}$")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _payload_dirs(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if PAYLOAD_DIR.match(p.name))


def test_volume_dir_mirrors_the_kubelet_layout(tmp_path: Path) -> None:
    assert volume_dir(tmp_path, "u1", "aws-iam-token") == (
        tmp_path / "pods" / "u1" / "volumes" / "kubernetes.io~projected" / "aws-iam-token"
    )


def test_sync_writes_the_atomic_layout_with_symlinks_and_modes(kubelet: Kubelet) -> None:
    kubelet.sync_pod(irsa_pod())
    target = volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME)
    assert kubelet.host_path(irsa_pod(), TOKEN_VOLUME_NAME) == target
    assert sorted(os.listdir(target)) == sorted(["token", "..data", *_payload_dirs(target)])
    (payload,) = _payload_dirs(target)
    assert payload.startswith("..2024_03_27_14_00_00.")
    assert os.readlink(target / "token") == "..data/token"
    assert os.readlink(target / "..data") == payload
    assert not (target / "token").resolve().is_symlink()
    assert _mode(target / payload) == 0o755
    assert _mode(target / payload / "token") == 0o644


def test_service_account_volume_gets_token_ca_and_namespace(kubelet: Kubelet) -> None:
    kubelet.sync_pod(irsa_pod())
    target = volume_dir(kubelet.root, POD_UID, API_VOLUME)
    assert sorted(n for n in os.listdir(target) if not n.startswith("..")) == [
        "ca.crt",
        "namespace",
        "token",
    ]
    assert (target / "ca.crt").read_bytes() == CA_PEM
    assert (target / "namespace").read_text() == "default"
    _, claims = decode_unverified((target / "token").read_text())
    # 3607 s for the API audience: the one-year extension applies (§1.3).
    assert claims["kubernetes.io"]["warnafter"] == claims["iat"] + 3607


def test_token_requests_are_bound_to_the_pod(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    kubelet.sync_pod(irsa_pod())
    bodies = {r[2]["spec"]["expirationSeconds"]: r for r in fake_api.requests}
    ns, sa, body = bodies[86400]
    assert (ns, sa) == ("default", "s3-readonly-sa")
    assert body == {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenRequest",
        "spec": {
            "audiences": [DEFAULT_AUDIENCE],
            "expirationSeconds": 86400,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "mypod", "uid": POD_UID},
        },
    }
    # No audience in the projection: none in the request, the server picks the API audiences.
    assert "audiences" not in bodies[3607][2]["spec"]
    token = (volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME) / "token").read_text()
    _, claims = decode_unverified(token)
    assert claims["aud"] == [DEFAULT_AUDIENCE]
    assert claims["kubernetes.io"]["pod"] == {"name": "mypod", "uid": POD_UID}


def test_sync_reports_the_pod_running(kubelet: Kubelet, fake_api: FakeApiServer) -> None:
    kubelet.sync_pod(irsa_pod())
    ((ns, name, status),) = fake_api.statuses
    assert (ns, name, status["phase"]) == ("default", "mypod", "Running")
    assert status["startTime"] == "2024-03-27T14:00:00Z"
    assert status["podIP"] == status["hostIP"] == "127.0.0.1"
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"
    (cs,) = status["containerStatuses"]
    assert cs["name"] == "aws-cli" and cs["ready"] and cs["restartCount"] == 0
    assert "running" in cs["state"]
    kubelet.sync_pod(irsa_pod())
    assert len(fake_api.statuses) == 1  # nothing changed, nothing sent


def test_sync_is_deterministic_with_a_seeded_lab(tmp_path: Path) -> None:
    from token_fixtures import make_issuer

    def layout(root: Path) -> tuple[list[str], str]:
        issuer, clock = make_issuer()
        api = FakeApiServer(issuer, clock)
        k = Kubelet(
            root=root,
            request_token=api.token_request,
            ca_pem=CA_PEM,
            clock=clock,
            ids=Ids(5),
            trace=Trace(clock),
        )
        k.sync_pod(irsa_pod())
        target = volume_dir(root, POD_UID, TOKEN_VOLUME_NAME)
        return _payload_dirs(target), (target / "token").read_text()

    assert layout(tmp_path / "a") == layout(tmp_path / "b")


def test_nothing_is_rewritten_before_80_percent_of_the_ttl(
    kubelet: Kubelet, clock: ManualClock
) -> None:
    kubelet.sync_pod(irsa_pod(token_expiration=3600))
    target = volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME)
    before = (_payload_dirs(target), (target / "token").read_text())
    clock.advance(2880)  # exactly 80% of 3600 s: not yet "older than"
    assert kubelet.tick() == []
    assert (_payload_dirs(target), (target / "token").read_text()) == before


def test_past_80_percent_the_token_is_swapped_in_a_new_payload_dir(
    kubelet: Kubelet, clock: ManualClock
) -> None:
    kubelet.sync_pod(irsa_pod(token_expiration=3600))
    target = volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME)
    (old_dir,) = _payload_dirs(target)
    old_token = (target / "token").read_text()
    clock.advance(2881)
    renewed = kubelet.tick()
    assert [(r.volume, r.path) for r in renewed] == [(TOKEN_VOLUME_NAME, "token")]
    (new_dir,) = _payload_dirs(target)
    assert new_dir != old_dir and new_dir.startswith("..2024_03_27_14_48_01.")
    assert os.readlink(target / "..data") == new_dir
    assert not (target / old_dir).exists()
    assert not (target / "..data_tmp").exists()
    new_token = (target / "token").read_text()
    assert new_token != old_token
    assert decode_unverified(new_token)[1]["iat"] == int(LAB_EPOCH) + 2881
    assert renewed[0].issued_at == LAB_EPOCH + 2881
    assert renewed[0].payload_dir == target / new_dir
    # The API volume (3607 s) is not due yet: 2881 s < 80% of 3607 s.
    assert _payload_dirs(volume_dir(kubelet.root, POD_UID, API_VOLUME))[0].startswith(
        "..2024_03_27_14_00_00."
    )


def test_irsa_default_token_renews_at_about_19_2_hours(
    kubelet: Kubelet, clock: ManualClock
) -> None:
    kubelet.sync_pod(irsa_pod())
    (info,) = [t for t in kubelet.token_status(POD_UID) if t["volume"] == TOKEN_VOLUME_NAME]
    assert info["renew_at"] == LAB_EPOCH + 0.8 * 86400
    assert info["expires_at"] == LAB_EPOCH + 86400
    clock.set(LAB_EPOCH + 0.8 * 86400 + 1)
    vols = {r.volume for r in kubelet.tick()}
    assert TOKEN_VOLUME_NAME in vols


def test_the_24_hour_rule_wins_for_long_ttls(kubelet: Kubelet, clock: ManualClock) -> None:
    kubelet.sync_pod(irsa_pod(token_expiration=172800))  # 48 h: 80% would be 38.4 h
    info = next(t for t in kubelet.token_status(POD_UID) if t["volume"] == TOKEN_VOLUME_NAME)
    assert info["renew_at"] == LAB_EPOCH + 86400
    clock.set(LAB_EPOCH + 86400)
    assert TOKEN_VOLUME_NAME not in {r.volume for r in kubelet.tick()}
    clock.set(LAB_EPOCH + 86401)
    assert TOKEN_VOLUME_NAME in {r.volume for r in kubelet.tick()}


def test_a_clock_that_jumps_back_forces_a_refresh(kubelet: Kubelet, clock: ManualClock) -> None:
    kubelet.sync_pod(irsa_pod())
    clock.set(LAB_EPOCH - 60)
    assert {r.volume for r in kubelet.tick()} == {TOKEN_VOLUME_NAME, API_VOLUME}


def test_no_echoed_expiration_means_no_refresh(
    kubelet: Kubelet, fake_api: FakeApiServer, clock: ManualClock
) -> None:
    fake_api.echo_expiration = False
    kubelet.sync_pod(irsa_pod(token_expiration=3600))
    clock.advance(10 * 86400)
    assert kubelet.tick() == []


def test_a_reader_never_sees_a_partial_or_empty_token_during_renewals(
    kubelet: Kubelet, clock: ManualClock
) -> None:
    kubelet.sync_pod(irsa_pod(token_expiration=600))
    path = volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME) / "token"
    written = {path.read_text()}
    seen: list[str] = []
    missing = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal missing
        while not stop.is_set():
            try:
                with open(path) as fh:  # re-open each time, as §1.6 asks of readers
                    seen.append(fh.read())
            except FileNotFoundError:
                missing += 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(100):
            clock.advance(481)
            renewed = kubelet.tick()
            assert renewed
            written.add(path.read_text())
    finally:
        stop.set()
        t.join()
    assert len(written) == 101
    # Every read that opened the file got one whole token, never a prefix or nothing.
    assert seen and set(seen) <= written
    # A reader that resolved ..data just before the swap can find the old folder gone
    # (ENOENT), as on a real node where the old payload dir is deleted at once. That
    # is at most a rare miss per swap, never a torn read.
    assert missing < len(written)


def test_token_files_are_0600_with_a_shared_run_as_user(kubelet: Kubelet) -> None:
    kubelet.sync_pod(irsa_pod(security_context={"runAsUser": 1000}))
    target = volume_dir(kubelet.root, POD_UID, API_VOLUME)
    assert _mode((target / "token").resolve()) == 0o600
    assert _mode((target / "ca.crt").resolve()) == 0o644


def test_token_files_are_0640_with_an_fs_group(kubelet: Kubelet) -> None:
    kubelet.sync_pod(irsa_pod(security_context={"fsGroup": 65534}))
    target = volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME)
    assert _mode((target / "token").resolve()) == 0o640


def test_default_mode_and_item_mode_are_honoured(kubelet: Kubelet) -> None:
    pod = irsa_pod()
    api = pod["spec"]["volumes"][0]["projected"]
    api["defaultMode"] = 0o440
    api["sources"][1]["configMap"]["items"][0]["mode"] = 0o400
    kubelet.sync_pod(pod)
    target = volume_dir(kubelet.root, POD_UID, API_VOLUME)
    assert _mode((target / "token").resolve()) == 0o440
    assert _mode((target / "namespace").resolve()) == 0o440
    assert _mode((target / "ca.crt").resolve()) == 0o400


def test_forget_pod_removes_its_folders(kubelet: Kubelet) -> None:
    kubelet.sync_pod(irsa_pod())
    kubelet.forget_pod(irsa_pod())
    assert not (kubelet.root / "pods" / POD_UID).exists()
    assert kubelet.token_status(POD_UID) == []
    assert kubelet.tick() == []


def test_a_failed_token_request_leaves_the_pod_pending_until_a_tick_succeeds(
    kubelet: Kubelet, fake_api: FakeApiServer
) -> None:
    fake_api.fail_with = RuntimeError("apiserver down")
    kubelet.sync_pod(irsa_pod())
    assert fake_api.statuses[-1][2]["phase"] == "Pending"
    waiting = fake_api.statuses[-1][2]["containerStatuses"][0]["state"]
    assert waiting == {"waiting": {"reason": "ContainerCreating"}}
    assert not volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME).exists()
    fake_api.fail_with = None
    kubelet.tick()
    assert fake_api.statuses[-1][2]["phase"] == "Running"
    assert (volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME) / "token").exists()


def test_a_failed_renewal_keeps_the_old_token(
    kubelet: Kubelet, fake_api: FakeApiServer, clock: ManualClock
) -> None:
    kubelet.sync_pod(irsa_pod(token_expiration=3600))
    path = volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME) / "token"
    before = path.read_text()
    fake_api.fail_with = RuntimeError("apiserver down")
    clock.advance(3000)
    assert kubelet.tick() == []
    assert path.read_text() == before


def test_token_status_lists_each_token_with_its_timeline(kubelet: Kubelet) -> None:
    kubelet.sync_pod(irsa_pod())
    rows = {(t["volume"], t["path"]): t for t in kubelet.token_status(POD_UID)}
    irsa = rows[(TOKEN_VOLUME_NAME, "token")]
    assert irsa["audiences"] == [DEFAULT_AUDIENCE]
    assert irsa["expiration_seconds"] == 86400
    assert irsa["issued_at"] == LAB_EPOCH
    assert irsa["file"] == volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME) / "token"
    api = rows[(API_VOLUME, "token")]
    assert api["audiences"] == [] and api["expiration_seconds"] == 3607
    assert api["renewals"] == 0


def test_an_unseeded_kubelet_adds_up_to_ten_seconds_of_jitter(tmp_path: Path) -> None:
    k = Kubelet(
        root=tmp_path,
        request_token=lambda *a: {},
        ca_pem=b"",
        clock=ManualClock(0),
        ids=Ids(),
        trace=Trace(),
    )
    assert k.max_jitter_s == 10.0


def test_trace_records_file_writes_status_and_failed_token_requests(
    kubelet: Kubelet, fake_api: FakeApiServer, clock: ManualClock
) -> None:
    kubelet.sync_pod(irsa_pod(token_expiration=3600))
    events = kubelet.trace.events()
    calls = [(e.source, e.target, e.call, e.outcome) for e in events]
    # The kubelet records what it sent, granted or not: each TokenRequest, then its files.
    assert calls == [
        ("kubelet", "apiserver", "TokenRequest", "ok"),
        ("kubelet", "token-file", "write", "ok"),
        ("kubelet", "apiserver", "TokenRequest", "ok"),
        ("kubelet", "token-file", "write", "ok"),
        ("kubelet", "apiserver", "update pod status", "ok"),
    ]
    assert {e.recorder for e in events} == {"kubelet"}
    assert events[-1].detail["node"] == NODE_NAME
    assert [e.detail["volume"] for e in events[:4]] == [API_VOLUME] * 2 + [TOKEN_VOLUME_NAME] * 2
    assert {e.detail["uid"] for e in events[:4]} == {POD_UID}
    mark = kubelet.trace.mark()
    fake_api.fail_with = RuntimeError("apiserver down")
    clock.advance(3000)
    kubelet.tick()
    failed = kubelet.trace.since(mark)
    assert {e.detail["volume"] for e in failed} == {API_VOLUME, TOKEN_VOLUME_NAME}
    for e in failed:
        assert (e.call, e.outcome) == ("renew TokenRequest", "RuntimeError")
        assert e.detail["message"] == "apiserver down"


def test_the_token_request_recorded_is_the_one_sent_and_names_the_payload_written(
    kubelet: Kubelet, fake_api: FakeApiServer
) -> None:
    kubelet.sync_pod(irsa_pod())
    events = kubelet.trace.events()
    request = next(
        e for e in events if e.call == "TokenRequest" and e.detail["volume"] == TOKEN_VOLUME_NAME
    )
    sent = next(
        body
        for _, _, body in fake_api.requests
        if body["spec"].get("audiences") == [DEFAULT_AUDIENCE]
    )
    assert request.detail["audiences"] == sent["spec"]["audiences"]
    assert request.detail["expirationSeconds"] == sent["spec"]["expirationSeconds"]
    assert request.detail["serviceaccount"] == "s3-readonly-sa"
    write = events[events.index(request) + 1]
    target = volume_dir(kubelet.root, POD_UID, TOKEN_VOLUME_NAME)
    # The payload the write names is the one the token file resolves to.
    assert write.detail["payload"] == (target / "token").resolve().parent.name
