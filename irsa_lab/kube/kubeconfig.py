"""Write the kubeconfig that points kubectl and the ``kubernetes`` client at the stand-in.

One cluster (the server URL and the lab CA as ``certificate-authority-data``), one
user with a static bearer token, one context ``irsa-lab`` with namespace ``default``.
The file holds a credential, so it is written owner-only (0600), as kubectl does.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

from ..constants import CLUSTER_NAME, NAMESPACE
from ..pki import write_secret

__all__ = ["CONTEXT", "USER", "kubeconfig", "to_yaml", "write_kubeconfig"]

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


# A string PyYAML (YAML 1.1) and Go's YAML read back as the same string when written
# plain: no indicator first, no ": " or " #", not a bool, null or number in either.
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./:@-]*")
_NOT_PLAIN = re.compile(r"(?i)y|n|yes|no|true|false|on|off|null|~|[-+]?[0-9._:]+")


def _scalar(value: object) -> str:
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"  # only empty ones come here
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int | float):
        return json.dumps(value)
    text = str(value)
    if _PLAIN.fullmatch(text) and not _NOT_PLAIN.fullmatch(text):
        return text
    return _quoted(text)


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar: printable characters as they are, the rest escaped
    (line separators too, which YAML would otherwise fold)."""
    out = ['"']
    for ch in text:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 0x20 <= o <= 0x7E or 0xA0 <= o <= 0xFFFD and o not in (0x2028, 0x2029, 0xFEFF):
            out.append(ch)
        elif o >= 0x10000:
            out.append(ch)
        else:
            out.append(f"\\u{o:04x}")
    return "".join(out) + '"'


def _block(value: dict[str, Any] | list[Any], indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    items = value.items() if isinstance(value, dict) else ((None, v) for v in value)
    for key, item in items:
        lead = f"{pad}{_scalar(key)}:" if isinstance(value, dict) else f"{pad}-"
        if not isinstance(item, dict | list) or not item:
            lines.append(f"{lead} {_scalar(item)}")
        elif isinstance(value, list):  # "- " then the item's first line, the rest below it
            inner = _block(item, indent + 2)
            lines += [f"{lead} {inner[0].lstrip()}", *inner[1:]]
        else:
            lines += [lead, *_block(item, indent + 2)]
    return lines


def to_yaml(document: dict[str, Any]) -> str:
    """``document`` as block-style YAML, keys in their order, as ``yaml.safe_dump`` with
    ``sort_keys=False`` writes a kubeconfig; written here because loading PyYAML costs
    the lab's start about 25 ms. Strings that could read as anything else are quoted."""
    return "\n".join(_block(document, 0) or ["{}"]) + "\n"


def _written(build: Callable[P, dict[str, Any]]) -> Callable[Concatenate[Path | str, P], Path]:
    """A writer that takes ``build``'s arguments after a path and writes its document."""

    def write(path: Path | str, /, *args: P.args, **kwargs: P.kwargs) -> Path:
        path = Path(path)
        write_secret(path, to_yaml(build(*args, **kwargs)).encode())
        return path

    write.__name__ = write.__qualname__ = f"write_{build.__name__}"
    write.__doc__ = (
        f"Write :func:`{build.__name__}` (its arguments after the path) to ``path`` "
        "(0600) and return the path."
    )
    return write


write_kubeconfig = _written(kubeconfig)
