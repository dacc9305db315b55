"""``kubectl exec`` (v1.36.1) against the embedded lab (WebSocket remote-command v5) and the
k8s backend (the real kube-apiserver, which speaks SPDY/3.1 to the kubelet stand-in): the
same commands, the same answers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import os
import select
import ssl
import struct
import subprocess
import termios
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import yaml

from irsa_lab.backends import binaries
from irsa_lab.backends.k8s import K8sLab
from irsa_lab.constants import ACCOUNT_ID, ROLE_NAME, SERVICE_ACCOUNT
from irsa_lab.jose import decode_unverified
from irsa_lab.kube import spdy
from irsa_lab.kube.exec_ws import exec_options, exit_status
from irsa_lab.kube.status import ApiError
from irsa_lab.session import close_api_client
from irsa_lab.stack import EmbeddedLab

TOKEN_PATH = "/var/run/secrets/eks.amazonaws.com/serviceaccount/token"
POD = f"""\
apiVersion: v1
kind: Pod
metadata:
  name: mypod
spec:
  serviceAccountName: {SERVICE_ACCOUNT}
  containers:
  - name: app
    image: amazon/aws-cli
    command: ["sleep", "3600"]
"""


def _kubectl_path() -> str | None:
    found = binaries.find("kubectl")
    return str(found.path) if found is not None else None


KUBECTL = _kubectl_path()


class Lab:
    def __init__(self, state: Path, backend: str) -> None:
        self.state = state
        self.backend = backend
        self.env = {
            **os.environ,
            "KUBECONFIG": str(state / "kubeconfig"),
            "HOME": str(state / "home"),
        }

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        timeout: float = 60,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        env = {**self.env, "KUBECONFIG": str(kubeconfig)} if kubeconfig else self.env
        return subprocess.run(
            [KUBECTL, *args],
            env=env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def token_kubeconfig(self, token: str) -> Path:
        """A kubeconfig that authenticates with ``token`` only (no admin client cert)."""
        server = json.loads((self.state / "endpoints.json").read_text())["apiserver"]
        path = self.state / "token.kubeconfig"
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "lab",
                    "cluster": {
                        "server": server,
                        "certificate-authority": str(self.state / "ca.crt"),
                    },
                }
            ],
            "users": [{"name": "sa", "user": {"token": token}}],
            "contexts": [{"name": "sa", "context": {"cluster": "lab", "user": "sa"}}],
            "current-context": "sa",
        }
        path.write_text(json.dumps(config))
        return path


def _start(backend: str, state: Path) -> contextlib.AbstractContextManager[object]:
    if backend == "embedded":
        return EmbeddedLab(state_dir=state, seed=20240327)
    missing = binaries.missing()
    if missing:
        pytest.skip(f"{', '.join(missing)} not built: run `make k8s-bin` (needs Go)")
    return K8sLab(state_dir=state, seed=20240327)


@pytest.fixture(scope="module", params=["embedded", "k8s"])
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if KUBECTL is None:
        pytest.skip("kubectl v1.36.1 is not built: run `make k8s-bin` (needs Go)")
    backend = request.param
    state = tmp_path_factory.mktemp(f"exec-{backend}")
    with _start(backend, state):
        handle = Lab(state, backend)
        (state / "pod.yaml").write_text(POD)
        created = handle.kubectl("apply", "-f", str(state / "pod.yaml"))
        assert created.returncode == 0, created.stderr
        ready = handle.kubectl("wait", "--for=condition=Ready", "pod/mypod", "--timeout=30s")
        assert ready.returncode == 0, ready.stderr
        yield handle


def test_aws_sts_get_caller_identity_prints_the_assumed_role_arn(lab: Lab) -> None:
    done = lab.kubectl("exec", "mypod", "--", "aws", "sts", "get-caller-identity")
    assert done.returncode == 0, done.stderr
    arn = json.loads(done.stdout)["Arn"]
    assert arn.startswith(f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{ROLE_NAME}/")


def test_cat_prints_the_projected_token_at_its_pod_path(lab: Lab) -> None:
    done = lab.kubectl("exec", "mypod", "--", "cat", TOKEN_PATH)
    assert done.returncode == 0, done.stderr
    claims = decode_unverified(done.stdout.strip())[1]
    assert claims["sub"] == f"system:serviceaccount:default:{SERVICE_ACCOUNT}"
    assert claims["aud"] == ["sts.amazonaws.com"]


def test_a_non_zero_exit_is_kubectls_exit_code_with_its_message(lab: Lab) -> None:
    done = lab.kubectl("exec", "mypod", "--", "sh", "-c", "exit 3")
    assert done.returncode == 3
    assert done.stderr.strip() == "command terminated with exit code 3"


def test_stdin_reaches_the_command_and_its_end_ends_it(lab: Lab) -> None:
    done = lab.kubectl("exec", "-i", "mypod", "--", "cat", input="hi\n", timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hi\n"


def test_stdout_and_stderr_stay_apart(lab: Lab) -> None:
    done = lab.kubectl("exec", "mypod", "--", "sh", "-c", "echo out; echo err >&2")
    assert (done.returncode, done.stdout, done.stderr) == (0, "out\n", "err\n")


def test_a_missing_executable_fails_as_the_runtime_reports_it(lab: Lab) -> None:
    done = lab.kubectl("exec", "mypod", "--", "no-such-command")
    assert done.returncode == 127
    assert 'exec: "no-such-command": executable file not found in $PATH' in done.stdout
    assert done.stderr.strip() == "command terminated with exit code 127"


class Terminal:
    """kubectl run with a pseudo-terminal of 41 rows and 101 columns as its own."""

    def __init__(self, lab: Lab, *args: str) -> None:
        assert KUBECTL is not None
        self.master, slave = os.openpty()
        # kubectl sends its terminal's size on the resize channel.
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 41, 101, 0, 0))
        self.proc = subprocess.Popen(
            [KUBECTL, *args],
            env=lab.env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
        )
        os.close(slave)
        self.out = b""

    def read_until(self, pattern: bytes, count: int = 1, timeout: float = 30) -> bytes:
        """The output so far, once ``pattern`` appeared ``count`` times (or it ended)."""
        deadline = time.monotonic() + timeout
        while self.out.count(pattern) < count and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                self.out += chunk
            elif self.proc.poll() is not None:
                break
        return self.out

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        self.read_until(b"\0")  # until it ends
        os.close(self.master)
        return self.proc.wait(timeout=10)


def test_tty_gives_the_command_a_terminal_of_kubectls_size(lab: Lab) -> None:
    term = Terminal(lab, "exec", "-it", "mypod", "--", "sh", "-c", "test -t 0 && stty size")
    assert term.close() == 0, term.out
    assert term.out.split()[-2:] == [b"41", b"101"]


def test_an_interactive_shell_survives_ctrl_c_and_exits_with_its_code(lab: Lab) -> None:
    term = Terminal(lab, "exec", "-it", "mypod", "--", "sh")
    prompt = b"# " if os.geteuid() == 0 else b"$ "
    term.read_until(prompt)
    term.type(b"sleep 30\n")
    term.read_until(b"sleep 30")
    time.sleep(0.5)
    term.type(b"\x03")  # ^C ends sleep, not the shell
    term.read_until(prompt, count=2)
    term.type(b"echo alive$((1+1)); exit 4\n")
    assert term.close() == 4, term.out
    assert b"alive2" in term.out
    assert b"command terminated with exit code 4" in term.out


def test_ctrl_c_interrupts_the_command_alone(lab: Lab) -> None:
    term = Terminal(lab, "exec", "-it", "mypod", "--", "sh", "-c", "echo started; sleep 30")
    term.read_until(b"started")
    time.sleep(0.5)
    term.type(b"\x03")
    assert term.close() == 130, term.out
    assert term.out.strip().endswith(b"command terminated with exit code 130")
    assert b"Traceback" not in term.out


def test_a_command_killed_by_a_signal_exits_128_plus_its_number(lab: Lab) -> None:
    done = lab.kubectl("exec", "mypod", "--", "sh", "-c", "kill -9 $$")
    assert (done.returncode, done.stderr) == (137, "command terminated with exit code 137\n")


def test_a_service_account_may_not_exec(lab: Lab) -> None:
    token = lab.kubectl("create", "token", "default").stdout.strip()
    as_sa = lab.token_kubeconfig(token)
    done = lab.kubectl("exec", "mypod", "--", "true", kubeconfig=as_sa)
    assert (done.returncode, done.stderr) == (
        1,
        'Error from server (Forbidden): pods "mypod" is forbidden: User '
        '"system:serviceaccount:default:default" cannot get resource "pods" in API group "" '
        'in the namespace "default"\n',
    )
    # The exec request itself (kubectl reads the pod first), sent raw.
    url = "/api/v1/namespaces/default/pods/mypod/exec?command=true&stdout=true"
    done = lab.kubectl("get", "--raw", url, kubeconfig=as_sa)
    assert (done.returncode, done.stderr) == (
        1,
        'Error from server (Forbidden): pods "mypod" is forbidden: User '
        '"system:serviceaccount:default:default" cannot get resource "pods/exec" in API group '
        '"" in the namespace "default"\n',
    )


def test_a_request_that_does_not_upgrade_is_refused_after_the_container_check(lab: Lab) -> None:
    url = "/api/v1/namespaces/default/pods/mypod/exec"
    done = lab.kubectl("get", "--raw", f"{url}?command=true&stdout=true")
    assert done.stderr == "Error from server (BadRequest): Upgrade request required\n"
    done = lab.kubectl("get", "--raw", f"{url}?stdout=true")
    assert done.stderr == "Error from server (BadRequest): Upgrade request required\n"
    done = lab.kubectl("get", "--raw", f"{url}?command=true&stdout=true&container=zz")
    assert (
        done.stderr == "Error from server (BadRequest): container zz is not valid for pod mypod\n"
    )


def test_the_error_channel_status_carries_the_exit_code() -> None:
    assert exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    failed = exit_status(3, ["sh", "-c", "exit 3"])
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
    assert failed["message"] == (
        "command terminated with non-zero exit code: "
        "error executing command [sh -c exit 3], exit code 3"
    )
    # The API server rewraps the kubelet's error for a WebSocket client.
    assert exit_status(3)["message"] == (
        "command terminated with non-zero exit code: command terminated with exit code 3"
    )


def test_an_unscheduled_pod_has_no_host_to_exec_on() -> None:
    pod: dict[str, Any] = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}}

    class Query(dict[str, str]):
        def getall(self, key: str, default: list[str]) -> list[str]:
            return [self[key]] if key in self else default

    with pytest.raises(ApiError) as err:
        exec_options(Query(command="true", stdout="true"), pod)
    assert (err.value.code, err.value.message) == (400, "pod p does not have a host assigned")
    pod["spec"]["nodeName"] = "node"
    with pytest.raises(ApiError) as err:
        exec_options(Query(stdout="true"), pod)
    assert err.value.message == "you must specify at least 1 command"


def _read_all(data: bytes) -> list[spdy.Frame]:
    async def read() -> list[spdy.Frame]:
        stream = asyncio.StreamReader()
        stream.feed_data(data)
        stream.feed_eof()
        reader = spdy.FrameReader(stream)
        frames = []
        while (frame := await reader.read()) is not None:
            frames.append(frame)
        return frames

    return asyncio.run(read())


def test_spdy_frames_read_back_as_written_with_one_zlib_stream_per_direction() -> None:
    writer = spdy.FrameWriter()
    frames: list[spdy.Frame] = [
        spdy.SynStream(1, {"streamtype": ["error"]}),
        spdy.SynStream(3, {"streamtype": ["stdout"], "x": ["a", "b"]}, flags=spdy.FLAG_FIN),
        spdy.SynReply(3),
        spdy.DataFrame(3, b"hello", spdy.DATA_FLAG_FIN),
        spdy.RstStream(5, 5),
        spdy.Ping(7),
        spdy.GoAway(3),
    ]
    data = b"".join(writer.encode(f) for f in frames)
    # The second header block reuses the first's zlib stream: it only decodes in order.
    assert _read_all(data) == frames
    # A data frame: stream id, FIN flag and 24-bit length, then the bytes.
    assert writer.encode(spdy.DataFrame(3, b"hi", 1)) == b"\x00\x00\x00\x03\x01\x00\x00\x02hi"


def test_spdy_header_blocks_use_the_spdy3_dictionary() -> None:
    block = spdy.encode_header_block({"streamType": ["stdin"]})
    assert block == b"\x00\x00\x00\x01\x00\x00\x00\nstreamtype\x00\x00\x00\x05stdin"
    compressed = zlib.compressobj(zdict=spdy.HEADER_DICTIONARY)
    wire = compressed.compress(block) + compressed.flush(zlib.Z_SYNC_FLUSH)
    # zlib's FDICT header names the dictionary by its Adler-32.
    assert wire[2:6] == zlib.adler32(spdy.HEADER_DICTIONARY).to_bytes(4, "big")
    assert spdy.HEADER_DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.HEADER_DICTIONARY.endswith(b"utf-,*,enq=0.")
    assert len(spdy.HEADER_DICTIONARY) == 1423


async def _ws_messages(lab: Lab, query: str, send: list[bytes]) -> tuple[str | None, list[bytes]]:
    """The subprotocol and every message of one exec WebSocket, as the admin."""
    cfg = yaml.safe_load((lab.state / "kubeconfig").read_text())
    server = cfg["clusters"][0]["cluster"]["server"]
    user = cfg["users"][0]["user"]
    ctx = ssl.create_default_context(cafile=str(lab.state / "ca.crt"))
    headers = {}
    if "token" in user:
        headers["Authorization"] = f"Bearer {user['token']}"
    else:
        cert, key = lab.state / "admin.crt", lab.state / "admin.key"
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        ctx.load_cert_chain(cert, key)
    url = f"{server}/api/v1/namespaces/default/pods/mypod/exec?{query}"
    protocols = ("v5.channel.k8s.io", "v4.channel.k8s.io")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url, ssl=ctx, headers=headers, protocols=protocols) as ws,
    ):
        for message in send:
            await ws.send_bytes(message)
        got = [msg.data async for msg in ws if msg.type == aiohttp.WSMsgType.BINARY]
        protocol = ws.protocol
    # aiohttp's graceful shutdown: a TLS transport needs a moment to close after the
    # session, or the loop ends with it open.
    await asyncio.sleep(0.25)
    return protocol, got


def test_the_websocket_messages_are_the_real_servers(lab: Lab) -> None:
    script = "echo hi; echo err >&2; exit 3"
    query = urlencode(
        {"command": ["sh", "-c", script], "container": "app", "stdout": "true", "stderr": "true"},
        doseq=True,
    )
    protocol, messages = asyncio.run(_ws_messages(lab, query, []))
    assert protocol == "v5.channel.k8s.io"
    # stdout and stderr are two pipes: their order between each other is not kept.
    assert messages[0] == b"\x01"
    assert sorted(messages[1:3]) == [b"\x01hi\n", b"\x02err\n"]
    assert messages[3][:1] == b"\x03" and len(messages) == 4
    assert json.loads(messages[3][1:]) == {
        "metadata": {},
        "status": "Failure",
        "message": "command terminated with non-zero exit code: command terminated with exit code 3",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": "3"}]},
    }
    # v5's close channel ends stdin: cat sees the end of its input and exits 0.
    query = "command=cat&container=app&stdin=true&stdout=true&stderr=true"
    _, messages = asyncio.run(_ws_messages(lab, query, [b"\x00abc\n", b"\xff\x00"]))
    assert messages == [b"\x01", b"\x01abc\n", b'\x03{"metadata":{},"status":"Success"}']


def test_megabytes_of_binary_stdin_come_back_unchanged(lab: Lab) -> None:
    assert KUBECTL is not None
    data = os.urandom(3 * 1024 * 1024)
    done = subprocess.run(
        [KUBECTL, "exec", "-i", "mypod", "--", "cat"],
        env=lab.env,
        input=data,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


def test_kubectl_cp_meets_the_token_as_the_kubelets_symlink(lab: Lab) -> None:
    # The projected token is a symlink into ..data (the kubelet's atomic writer), which
    # kubectl cp skips; the file behind it copies.
    target = lab.state / "copied-token"
    done = lab.kubectl("cp", f"mypod:{TOKEN_PATH}", str(target))
    assert done.returncode == 0, done.stderr
    assert f'warning: skipping symlink: "{target}" -> "..data/token"' in done.stderr
    assert not target.exists()
    real = TOKEN_PATH.replace("/token", "/..data/token")
    done = lab.kubectl("cp", f"mypod:{real}", str(target))
    assert done.returncode == 0, done.stderr
    shown = lab.kubectl("exec", "mypod", "--", "cat", TOKEN_PATH).stdout
    assert target.read_text() == shown and shown.count(".") == 2


def test_the_official_python_client_streams_an_exec(lab: Lab) -> None:
    from kubernetes import client, config
    from kubernetes.stream import stream

    api = config.new_client_from_config(config_file=str(lab.state / "kubeconfig"))
    try:
        resp = stream(
            client.CoreV1Api(api).connect_get_namespaced_pod_exec,
            "mypod",
            "default",
            command=["sh", "-c", "echo hi; exit 3"],
            stdin=False,
            stdout=True,
            stderr=True,
            tty=False,
            _preload_content=False,
        )
        resp.run_forever(timeout=30)
        assert (resp.read_stdout(), resp.returncode) == ("hi\n", 3)
        resp.close()
        # websocket-client leaves the socket open once the server has closed first.
        resp.sock.shutdown()
    finally:
        close_api_client(api)
