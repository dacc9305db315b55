"""Write the kubeconfig that points kubectl and the ``kubernetes`` client at the stand-in.

One cluster (the server URL and the lab CA as ``certificate-authority-data``), one
user with a static bearer token, one context ``irsa-lab`` with namespace ``default``.
The file holds a credential, so it is written owner-only (0600), as kubectl does.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from ..constants import CLUSTER_NAME, NAMESPACE
from ..pki import write_secret

CONTEXT = "irsa-lab"
USER = "irsa-lab-admin"


def kubeconfig(
    server: str,
    ca_pem: bytes,
    token: str | None = None,
    *,
    namespace: str = NAMESPACE,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
) -> dict[str, Any]:
    """The kubeconfig as a dict (``apiVersion: v1``, ``kind: Config``).

    The user authenticates with a bearer ``token`` or, as kubeadm's ``admin.conf``
    does, with a client certificate and key.
    """
    user: dict[str, str] = {}
    if token is not None:
        user["token"] = token
    if client_cert_pem is not None and client_key_pem is not None:
        user["client-certificate-data"] = base64.b64encode(client_cert_pem).decode("ascii")
        user["client-key-data"] = base64.b64encode(client_key_pem).decode("ascii")
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_pem).decode("ascii"),
                },
            }
        ],
        "users": [{"name": USER, "user": user}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CLUSTER_NAME, "user": USER, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }


def write_kubeconfig(
    path: Path | str,
    server: str,
    ca_pem: bytes,
    token: str | None = None,
    *,
    namespace: str = NAMESPACE,
    client_cert_pem: bytes | None = None,
    client_key_pem: bytes | None = None,
) -> Path:
    """Write the kubeconfig to ``path`` (0600) and return the path."""
    path = Path(path)
    doc = kubeconfig(
        server,
        ca_pem,
        token,
        namespace=namespace,
        client_cert_pem=client_cert_pem,
        client_key_pem=client_key_pem,
    )
    text = yaml.safe_dump(doc, sort_keys=False)
    write_secret(path, text.encode())
    return path
