"""The lab is safe to run on a shared machine: loopback only, private key files, TLS always
verified, and no secret stored in a notebook."""

from __future__ import annotations

import json
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from irsa_lab.stack import EmbeddedLab

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedLab]:
    # No seed: the stack generates its own signing key and writes it to sa-signer.key.
    lab = EmbeddedLab(state_dir=tmp_path_factory.mktemp("security")).start()
    try:
        yield lab
    finally:
        lab.stop()


def _listening_ports_by_address() -> dict[int, set[str]]:
    """Listening TCP ports in /proc/net/tcp{,6} and the local addresses they are bound to."""
    found: dict[int, set[str]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state != "0A":  # LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            if len(addr_hex) == 8:
                addr = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1])
            else:
                raw = bytes.fromhex(addr_hex)
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                addr = socket.inet_ntop(socket.AF_INET6, words)
            found.setdefault(int(port_hex, 16), set()).add(addr)
    return found


def test_every_served_socket_is_bound_to_127_0_0_1(stack: EmbeddedLab) -> None:
    served = stack.loop.served()
    assert {"apiserver", "webhook", "oidc", "sts", "iam", "s3", "imds", "imds-pod"} <= set(served)
    for name, srv in served.items():
        # AppRunner.addresses: getsockname() of every listening socket of the server.
        addresses = srv.server.addresses
        assert addresses, name
        for address in addresses:
            assert tuple(address[:2]) == ("127.0.0.1", srv.port), name
        assert srv.url.startswith(("https://127.0.0.1:", "http://127.0.0.1:")), srv.url


def test_the_kernel_lists_the_stacks_ports_as_listening_on_loopback_only(
    stack: EmbeddedLab,
) -> None:
    listening = _listening_ports_by_address()
    for name, srv in stack.loop.served().items():
        assert listening.get(srv.port) == {"127.0.0.1"}, (name, listening.get(srv.port))


def test_only_imds_and_the_pod_identity_agent_speak_plain_http_as_on_aws(
    stack: EmbeddedLab,
) -> None:
    plain = {n for n, s in stack.loop.served().items() if s.url.startswith("http://")}
    # As on AWS: botocore allows plain HTTP to both (docs/reference/pod-identity.md §4.2).
    assert plain == {"imds", "imds-pod", "pod-identity-agent"}


def test_key_files_and_files_holding_secrets_are_0600(stack: EmbeddedLab) -> None:
    state = stack.state_dir
    for name in ("sa-signer.key", "endpoints.json", "kubeconfig"):
        mode = stat.S_IMODE((state / name).stat().st_mode)
        assert mode == 0o600, f"{name} is {oct(mode)}"
    endpoints = json.loads((state / "endpoints.json").read_text())
    assert endpoints["admin_secret_access_key"]  # the reason it must be private


def test_no_private_key_lies_in_the_state_directory_outside_the_0600_files(
    stack: EmbeddedLab,
) -> None:
    for path in stack.state_dir.rglob("*"):
        if path.is_file() and b"PRIVATE KEY-----" in path.read_bytes():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# --- TLS verification is never turned off ---------------------------------------------------

_INSECURE = re.compile(
    r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False|ssl\s*=\s*False"
    r"|InsecureRequestWarning|--insecure-skip-tls-verify|--no-verify-ssl"
    r"|insecure-skip-tls-verify\s*:\s*true"
)
# file (relative to the repository) -> why the pattern is allowed there.
_ALLOWED: dict[str, str] = {
    "tests/test_security.py": "this test spells the patterns it looks for",
    "bench/run.py": "moto_server speaks plain HTTP, so boto3 gets verify=False for it only",
}


def _scanned_files() -> list[Path]:
    files = [*ROOT.joinpath("irsa_lab").rglob("*.py"), *ROOT.joinpath("tests").rglob("*.py")]
    files += [*ROOT.joinpath("bench").glob("*.py"), *ROOT.joinpath("irsa_lab").rglob("*.yaml")]
    files += [*ROOT.glob("*.yaml"), ROOT / "Makefile"]
    return [f for f in files if f.is_file() and ".venv" not in f.parts]


def test_tls_verification_is_never_disabled_outside_the_allowlist() -> None:
    offenders = []
    for path in _scanned_files():
        rel = path.relative_to(ROOT).as_posix()
        if rel in _ALLOWED:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if _INSECURE.search(line):
                offenders.append(f"{rel}:{number}: {line.strip()}")
    assert offenders == []


def test_the_insecure_pattern_scanner_would_catch_each_spelling() -> None:
    for line in (
        "requests.get(url, verify=False)",
        "ctx.verify_mode = ssl.CERT_NONE",
        "ctx.check_hostname = False",
        "session.get(url, ssl=False)",
        "urllib3.disable_warnings(InsecureRequestWarning)",
        "kubectl --insecure-skip-tls-verify get pods",
        "aws --no-verify-ssl s3 ls",
    ):
        assert _INSECURE.search(line), line
    assert not _INSECURE.search("boto3.client('sts', verify=ca_bundle)")


# --- no secret stored in a notebook ---------------------------------------------------------

_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_SECRET = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
_SESSION_TOKEN = re.compile(
    r"(?:SessionToken|\bToken)[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+=]{100,})", re.IGNORECASE
)
_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")


def secrets_in(text: str) -> list[str]:
    """What in ``text`` looks like a full secret: a 40-character secret key near an access
    key id, a long session token, or a PEM private key."""
    found = []
    for match in _KEY_ID.finditer(text):
        window = text[max(0, match.start() - 400) : match.end() + 400]
        found += [f"secret key near {match.group()}" for m in _SECRET.finditer(window)]
    found += [f"session token {m.group(1)[:12]}..." for m in _SESSION_TOKEN.finditer(text)]
    found += ["private key" for _ in _PRIVATE_KEY.finditer(text)]
    return found


def _stored_notebooks() -> list[Path]:
    return sorted([*ROOT.glob("notebooks/**/*.ipynb"), *ROOT.glob("labs/**/*.ipynb")])


def test_stored_notebooks_hold_no_full_secret_session_token_or_private_key() -> None:
    found = {
        nb.relative_to(ROOT).as_posix(): hits
        for nb in _stored_notebooks()
        if (hits := secrets_in(nb.read_text(errors="replace")))
    }
    assert found == {}


def test_the_secret_scanner_catches_each_kind_and_passes_masked_values() -> None:
    key_id = "ASIA" + "Q" * 16
    secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    token = "IQoJb3JpZ2luX2VjE" + "A" * 120
    assert secrets_in(f'"AccessKeyId": "{key_id}",\n "SecretAccessKey": "{secret}"')
    assert secrets_in(f'"SessionToken": "{token}"')
    assert secrets_in("-----BEGIN RSA PRIVATE KEY-----\nMIIE...")
    masked = (
        f'"AccessKeyId": "{key_id}", "SecretAccessKey": "wJal************************************"'
    )
    assert secrets_in(masked) == []
