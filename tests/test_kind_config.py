"""kind-config.yaml and the signing keys it mounts, checked without Docker."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from irsa_lab.constants import (
    DEFAULT_AUDIENCE,
    KIND_API_SERVER_PORT,
    KIND_ISSUER,
    KIND_JWKS_URI,
    KIND_KEYS_CONTAINER_DIR,
)
from irsa_lab.kind.config import (
    AUDIT_LOG_DIR,
    PLACEHOLDER_KEYS_DIR,
    api_server_args,
    kind_config,
    kind_config_text,
    main,
    validate_kind_config,
)
from irsa_lab.kind.keys import ensure_keys, jwks, load_keys, public_pem, write_keys
from irsa_lab.pki import SigningKey

ROOT = Path(__file__).resolve().parents[1]
# docs/reference/kubernetes.md §5.1: kind v0.32.0's node image.
SPEC_NODE_IMAGE = (
    "kindest/node:v1.36.1@sha256:3489c7674813ba5d8b1a9977baea8a6e553784dab7b84759d1014dbd78f7ebd5"
)


@pytest.fixture(scope="module")
def repo_config() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "kind-config.yaml").read_text()))


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate()


def _patch(config: dict[str, Any]) -> dict[str, Any]:
    (text,) = config["kubeadmConfigPatches"]
    return dict(yaml.safe_load(text))


def test_repo_kind_config_is_exactly_what_the_renderer_writes() -> None:
    assert (ROOT / "kind-config.yaml").read_text() == kind_config_text()


def test_module_command_prints_the_config_for_a_given_key_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--keys-dir", str(tmp_path)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == kind_config(keys_dir=tmp_path)


def test_repo_kind_config_passes_validation(repo_config: dict[str, Any]) -> None:
    assert validate_kind_config(repo_config) == []


def test_node_image_is_the_spec_image_pinned_by_digest(repo_config: dict[str, Any]) -> None:
    (node,) = repo_config["nodes"]
    assert node["role"] == "control-plane"
    assert node["image"] == SPEC_NODE_IMAGE


def test_api_server_listens_on_loopback_at_a_fixed_port(repo_config: dict[str, Any]) -> None:
    assert repo_config["networking"] == {
        "apiServerAddress": "127.0.0.1",
        "apiServerPort": KIND_API_SERVER_PORT,
    }


def test_api_server_flags_make_it_an_eks_shaped_issuer(repo_config: dict[str, Any]) -> None:
    args = api_server_args(repo_config)
    assert args["service-account-issuer"] == KIND_ISSUER
    assert KIND_ISSUER.startswith("https://oidc.eks.eu-west-1.amazonaws.com/id/")
    assert args["service-account-jwks-uri"] == KIND_JWKS_URI
    assert args["service-account-signing-key-file"] == f"{KIND_KEYS_CONTAINER_DIR}/sa.key"
    assert args["service-account-key-file"] == f"{KIND_KEYS_CONTAINER_DIR}/sa.pub"
    # In-cluster tokens keep the EKS audience; IRSA tokens ask for sts.amazonaws.com
    # through TokenRequest, which needs no API audience.
    assert args["api-audiences"].split(",") == ["https://kubernetes.default.svc"]
    assert DEFAULT_AUDIENCE not in args["api-audiences"]


def test_kubeadm_patch_has_no_api_version_and_uses_the_map_form(
    repo_config: dict[str, Any],
) -> None:
    patch = _patch(repo_config)
    assert patch["kind"] == "ClusterConfiguration"
    assert "apiVersion" not in patch
    assert isinstance(patch["apiServer"]["extraArgs"], dict)
    # The controller manager must sign legacy tokens with the key the API server trusts.
    assert (
        patch["controllerManager"]["extraArgs"]["service-account-private-key-file"]
        == f"{KIND_KEYS_CONTAINER_DIR}/sa.key"
    )


def test_key_folder_is_mounted_read_only_where_the_flags_point(tmp_path: Path) -> None:
    config = kind_config(keys_dir=tmp_path)
    mount, audit = config["nodes"][0]["extraMounts"]
    assert mount == {
        "hostPath": str(tmp_path),
        "containerPath": KIND_KEYS_CONTAINER_DIR,
        "readOnly": True,
    }
    # The audit log comes back to the host beside the keys (the lab's admission record).
    assert audit == {"hostPath": str(tmp_path.parent / "audit"), "containerPath": AUDIT_LOG_DIR}
    # The apiserver static pod mounts /etc/kubernetes/pki: the keys must live below it.
    assert KIND_KEYS_CONTAINER_DIR.startswith("/etc/kubernetes/pki/")
    assert str(PLACEHOLDER_KEYS_DIR).startswith("/")


def _set(path: tuple[Any, ...], value: Any) -> Any:
    def change(config: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(config)
        target: Any = out
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return out

    return change


def _patch_change(**changes: Any) -> Any:
    def change(config: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(config)
        patch = _patch(out)
        for dotted, value in changes.items():
            target = patch
            *parents, last = dotted.split(".")
            for part in parents:
                target = target[part]
            target[last] = value
        out["kubeadmConfigPatches"] = [yaml.safe_dump(patch)]
        return out

    return change


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (_set(("nodes", 0, "image"), "kindest/node:v1.36.1"), "not pinned"),
        (_set(("networking", "apiServerPort"), 0), "apiServerPort"),
        (_set(("networking", "apiServerAddress"), "0.0.0.0"), "apiServerAddress"),  # noqa: S104
        (_set(("nodes", 0, "extraMounts", 0, "hostPath"), "keys"), "absolute"),
        (_set(("nodes", 0, "extraMounts", 0, "readOnly"), False), "readOnly"),
        (_patch_change(apiVersion="kubeadm.k8s.io/v1beta3"), "apiVersion"),
        (_patch_change(**{"apiServer.extraArgs.service-account-issuer": "api"}), "https"),
        (
            _patch_change(**{"apiServer.extraArgs.service-account-issuer": "https://x/?q=1"}),
            "no query",
        ),
        (_patch_change(**{"apiServer.extraArgs.api-audiences": ""}), "api-audiences"),
        (
            _patch_change(
                **{"apiServer.extraArgs.service-account-key-file": "/etc/kubernetes/pki/sa.pub"}
            ),
            "service-account-key-file",
        ),
    ],
)
def test_validator_names_what_a_broken_config_gets_wrong(
    repo_config: dict[str, Any], change: Any, complaint: str
) -> None:
    problems = validate_kind_config(change(repo_config))
    assert any(complaint in p for p in problems), problems


# --- keys -------------------------------------------------------------------------------
def test_private_key_is_written_owner_only(tmp_path: Path, key: SigningKey) -> None:
    keys = write_keys(tmp_path / "keys", key)
    assert stat.S_IMODE(keys.signing_key_file.stat().st_mode) == 0o600
    assert keys.signing_key_file.read_bytes() == key.pem


def test_kid_is_sha256_of_the_der_public_key_base64url(tmp_path: Path, key: SigningKey) -> None:
    keys = write_keys(tmp_path, key)
    public = serialization.load_pem_public_key(keys.public_key_file.read_bytes())
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()
    assert keys.kid == expected
    assert len(expected) == 43
    assert json.loads(keys.jwks_file.read_text())["keys"][0]["kid"] == expected


def test_jwk_modulus_and_exponent_are_the_private_keys(tmp_path: Path, key: SigningKey) -> None:
    (jwk,) = json.loads(write_keys(tmp_path, key).jwks_file.read_text())["keys"]
    numbers = key.private_key.public_key().public_numbers()

    def b64int(text: str) -> int:
        return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")

    assert (b64int(jwk["n"]), b64int(jwk["e"])) == (numbers.n, numbers.e)
    assert {jwk["kty"], jwk["alg"], jwk["use"]} == {"RSA", "RS256", "sig"}


def test_token_signed_with_the_key_verifies_against_the_published_jwks(
    tmp_path: Path, key: SigningKey
) -> None:
    keys = write_keys(tmp_path, key)
    token = jwt.encode(
        {
            "iss": KIND_ISSUER,
            "aud": [DEFAULT_AUDIENCE],
            "sub": "system:serviceaccount:default:s3-readonly-sa",
        },
        load_keys(tmp_path).key.private_key,
        algorithm="RS256",
        headers={"kid": keys.kid},
    )
    jwk_set = jwt.PyJWKSet.from_dict(json.loads(keys.jwks_file.read_text()))
    signing = next(k for k in jwk_set.keys if k.key_id == jwt.get_unverified_header(token)["kid"])
    claims = jwt.decode(
        token, signing.key, algorithms=["RS256"], audience=DEFAULT_AUDIENCE, issuer=KIND_ISSUER
    )
    assert claims["sub"].endswith(":s3-readonly-sa")


def test_token_from_another_key_does_not_verify_against_the_jwks(
    tmp_path: Path, key: SigningKey, other_key: SigningKey
) -> None:
    keys = write_keys(tmp_path, key)
    token = jwt.encode(
        {"iss": KIND_ISSUER}, other_key.private_key, algorithm="RS256", headers={"kid": keys.kid}
    )
    (jwk,) = jwt.PyJWKSet.from_dict(jwks(key)).keys
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, jwk.key, algorithms=["RS256"], options={"verify_aud": False})


def test_loading_keys_rewrites_stale_public_files(
    tmp_path: Path, key: SigningKey, other_key: SigningKey
) -> None:
    write_keys(tmp_path, key)
    (tmp_path / "sa.pub").write_bytes(public_pem(other_key))
    (tmp_path / "jwks.json").write_text("{}")
    keys = load_keys(tmp_path)
    assert keys.public_key_file.read_bytes() == public_pem(key)
    assert json.loads(keys.jwks_file.read_text()) == jwks(key)


def test_ensure_keys_keeps_an_existing_key(tmp_path: Path, key: SigningKey) -> None:
    write_keys(tmp_path, key)
    assert ensure_keys(tmp_path).kid == key.kid
    assert ensure_keys(tmp_path / "new").kid != key.kid


def test_audit_policy_logs_pod_writes_at_request_level_and_nothing_else(tmp_path: Path) -> None:
    from irsa_lab.kind.config import AUDIT_POLICY_PATH, audit_policy
    from irsa_lab.kind.keys import ensure_keys

    policy = audit_policy()
    first, last = policy["rules"]
    # Request level is the lowest that keeps the webhook's patch annotation.
    assert first["level"] == "Request"
    assert {"group": "", "resources": ["pods", "serviceaccounts", "serviceaccounts/token"]} in (
        first["resources"]
    )
    assert last == {"level": "None"}
    args = api_server_args(kind_config(keys_dir=tmp_path))
    assert args["audit-policy-file"] == AUDIT_POLICY_PATH
    assert args["audit-log-path"].startswith(AUDIT_LOG_DIR + "/")
    # The key folder the node mounts carries the same policy file.
    keys = ensure_keys(tmp_path / "keys")
    written = yaml.safe_load((keys.folder / "audit-policy.yaml").read_text())
    assert written == policy
