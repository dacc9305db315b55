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
    server: str, ca_pem: bytes, token: str, *, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """The kubeconfig as a dict (``apiVersion: v1``, ``kind: Config``)."""
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
        "users": [{"name": USER, "user": {"token": token}}],
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
    path: Path | str, server: str, ca_pem: bytes, token: str, *, namespace: str = NAMESPACE
) -> Path:
    """Write the kubeconfig to ``path`` (0600) and return the path."""
    path = Path(path)
    text = yaml.safe_dump(kubeconfig(server, ca_pem, token, namespace=namespace), sort_keys=False)
    write_secret(path, text.encode())
    return path
