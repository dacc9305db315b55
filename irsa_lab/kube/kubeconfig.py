"""Write the kubeconfig that points kubectl and the ``kubernetes`` client at the stand-in.

One cluster (the server URL and the lab CA as ``certificate-authority-data``), one
user with a static bearer token, one context ``irsa-lab`` with namespace ``default``.
The file holds a credential, so it is written owner-only (0600), as kubectl does.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

import yaml

from ..constants import CLUSTER_NAME, NAMESPACE
from ..pki import write_secret

__all__ = ["CONTEXT", "USER", "kubeconfig", "write_kubeconfig"]

P = ParamSpec("P")

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


def _written(build: Callable[P, dict[str, Any]]) -> Callable[Concatenate[Path | str, P], Path]:
    """A writer that takes ``build``'s arguments after a path and writes its document."""

    def write(path: Path | str, /, *args: P.args, **kwargs: P.kwargs) -> Path:
        path = Path(path)
        write_secret(path, yaml.safe_dump(build(*args, **kwargs), sort_keys=False).encode())
        return path

    write.__name__ = write.__qualname__ = f"write_{build.__name__}"
    write.__doc__ = (
        f"Write :func:`{build.__name__}` (its arguments after the path) to ``path`` "
        "(0600) and return the path."
    )
    return write


write_kubeconfig = _written(kubeconfig)
