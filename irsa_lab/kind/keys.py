"""The kind cluster's service-account signing key pair, made before the cluster exists.

The lab brings its own key pair instead of letting kubeadm make one, so the ``kid``
and the JWKS are known (and can be shown to the learner) before ``kind create cluster``
runs. The folder is mounted into the node (``kind-config.yaml``, ``extraMounts``) and
the API server flags point at its files:

- ``sa.key``: the PEM private key (PKCS#8, mode 0600): ``--service-account-signing-key-file``
- ``sa.pub``: the PEM public key (SubjectPublicKeyInfo): ``--service-account-key-file``
- ``jwks.json``: the JWKS the API server will publish at ``/openid/v1/jwks``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from ..constants import KIND_JWKS_FILE, KIND_PUBLIC_KEY_FILE, KIND_SIGNING_KEY_FILE
from ..pki import SigningKey, write_secret

__all__ = ["KindKeys", "ensure_keys", "jwks", "load_keys", "main", "public_pem", "write_keys"]


def jwks(key: SigningKey) -> dict[str, Any]:
    """The JWK Set the API server publishes for ``key``: one RS256 signing key."""
    return {"keys": [key.public_jwk()]}


def public_pem(key: SigningKey) -> bytes:
    """The public half as PEM SubjectPublicKeyInfo, the form ``sa.pub`` has under kubeadm."""
    return key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@dataclass(frozen=True)
class KindKeys:
    """The key files in one folder, and the key they hold."""

    folder: Path
    key: SigningKey

    @property
    def signing_key_file(self) -> Path:
        return self.folder / KIND_SIGNING_KEY_FILE

    @property
    def public_key_file(self) -> Path:
        return self.folder / KIND_PUBLIC_KEY_FILE

    @property
    def jwks_file(self) -> Path:
        return self.folder / KIND_JWKS_FILE

    @property
    def kid(self) -> str:
        return self.key.kid


def write_keys(folder: Path, key: SigningKey | None = None) -> KindKeys:
    """Write ``key`` (a new RSA 2048 key if None) and its public forms into ``folder``."""
    key = key or SigningKey.generate()
    folder.mkdir(parents=True, exist_ok=True)
    keys = KindKeys(folder, key)
    write_secret(keys.signing_key_file, key.pem)
    keys.public_key_file.write_bytes(public_pem(key))
    keys.jwks_file.write_text(json.dumps(jwks(key), indent=2) + "\n")
    return keys


def load_keys(folder: Path) -> KindKeys:
    """Read the key pair back; the public files are rewritten if they disagree with it."""
    key = SigningKey.from_pem((folder / KIND_SIGNING_KEY_FILE).read_bytes())
    keys = KindKeys(folder, key)
    # A hand-edited or stale sa.pub would make the API server publish a key that does
    # not verify its own tokens: the private key is the one source of truth.
    if not keys.public_key_file.exists() or keys.public_key_file.read_bytes() != public_pem(key):
        keys.public_key_file.write_bytes(public_pem(key))
    if not keys.jwks_file.exists() or json.loads(keys.jwks_file.read_text()) != jwks(key):
        keys.jwks_file.write_text(json.dumps(jwks(key), indent=2) + "\n")
    return keys


def ensure_keys(folder: Path) -> KindKeys:
    """The keys in ``folder``, made first if there are none.

    The folder is what the node mounts under ``/etc/kubernetes/pki``, so the API
    server's audit policy is written beside the keys too.
    """
    from .config import AUDIT_POLICY_FILE, audit_policy_text

    keys = load_keys(folder) if (folder / KIND_SIGNING_KEY_FILE).exists() else write_keys(folder)
    (folder / AUDIT_POLICY_FILE).write_text(audit_policy_text())
    (folder.parent / "audit").mkdir(exist_ok=True)
    return keys


def main(argv: list[str] | None = None) -> int:
    """``python -m irsa_lab.kind.keys DIR``: make (or keep) the key pair in DIR, print its kid."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m irsa_lab.kind.keys DIR", file=sys.stderr)
        return 2
    keys = ensure_keys(Path(args[0]).expanduser().absolute())
    print(f"kid {keys.kid}: {keys.signing_key_file}, {keys.public_key_file}, {keys.jwks_file}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
