"""Where pods of the kind cluster reach the AWS stand-ins, and the CA they trust.

On EKS a pod reaches ``sts.<region>.amazonaws.com`` and IMDS over the network. On
kind the stand-ins run on the host, so a pod needs an address of the host that its
packets can get to (defect 7 of issue 15):

- **Linux**: the ``kind`` Docker network's gateway (``docker network inspect kind``,
  ``IPAM.Config[].Gateway``, often ``172.18.0.1``). It is an address of the host's
  bridge interface, so the stand-ins listen there too, in kind mode only, on ports of
  their own; everything else in the lab stays on 127.0.0.1.
- **Docker Desktop** (macOS, Windows): the gateway is inside Docker's VM and not an
  address of the host; ``host.docker.internal`` is forwarded to the host's loopback,
  so the loopback listeners serve pods too and no other address is bound.

The stand-ins' server certificate names that address as well, and the lab CA goes
to pods in the ConfigMap ``irsa-lab-ca`` (key ``ca.crt``), mounted at
:data:`POD_CA_DIR` by the lab's scenario pods (:func:`with_lab_ca`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..constants import NAMESPACE

if TYPE_CHECKING:
    import ssl

    from ..httpd import ServerLoop

__all__ = [
    "CA_CONFIGMAP",
    "CA_CONFIGMAP_KEY",
    "DOCKER_DESKTOP_HOST",
    "KIND_NETWORK",
    "POD_CA_BUNDLE",
    "POD_CA_DIR",
    "POD_CA_VOLUME",
    "POD_SERVED",
    "PodNetwork",
    "bind_for_pods",
    "ca_configmap",
    "gateway_of",
    "pod_endpoint_fields",
    "pod_network",
    "serve_for_pods",
    "with_lab_ca",
]

KIND_NETWORK = "kind"  # the Docker network kind puts its nodes on
DOCKER_DESKTOP_HOST = "host.docker.internal"
CA_CONFIGMAP = "irsa-lab-ca"
CA_CONFIGMAP_KEY = "ca.crt"
POD_CA_VOLUME = "irsa-lab-ca"
POD_CA_DIR = "/etc/irsa-lab/ca"
POD_CA_BUNDLE = f"{POD_CA_DIR}/{CA_CONFIGMAP_KEY}"
# The stand-ins a pod talks to, by their ServerLoop name -> endpoints.json key. IMDS as
# a pod reaches it is the "imds-pod" server (one more hop than the node's). Pods reach
# the Pod Identity agent at 169.254.170.23, which the node forwards to its pod-side
# listener (irsa_lab.kind.pod_identity).
POD_SERVED: Mapping[str, str] = {
    "sts": "sts_pod",
    "iam": "iam_pod",
    "s3": "s3_pod",
    "imds-pod": "imds_pod",
    "pod-identity-agent": "pod_identity_agent_pod",
}

Run = Callable[..., str]


@dataclass(frozen=True)
class PodNetwork:
    """The host name pods use for the stand-ins, and the address to bind for them.

    ``bind`` is None when the loopback listeners already reach pods (Docker Desktop).
    """

    host: str
    bind: str | None
    why: str


def gateway_of(network: Mapping[str, Any]) -> str | None:
    """The IPv4 gateway of one ``docker network inspect`` entry (kind's is dual-stack)."""
    for config in (network.get("IPAM") or {}).get("Config") or []:
        gateway = str(config.get("Gateway") or "")
        try:
            if gateway and ipaddress.ip_address(gateway).version == 4:
                return gateway
        except ValueError:
            continue
    return None


def pod_network(run: Run, network: str | None = None) -> PodNetwork:
    """Ask Docker where the host is, as kind's pods see it (module doc).

    ``network`` defaults to kind's own choice: ``$KIND_EXPERIMENTAL_DOCKER_NETWORK``,
    else ``kind``.
    """
    network = network or os.environ.get("KIND_EXPERIMENTAL_DOCKER_NETWORK") or KIND_NETWORK
    info = json.loads(run(["docker", "info", "--format", "{{json .}}"], timeout=30) or "{}")
    os_name = str(info.get("OperatingSystem", ""))
    if "Docker Desktop" in os_name:
        return PodNetwork(DOCKER_DESKTOP_HOST, None, f"Docker Desktop ({os_name})")
    out = run(
        ["docker", "network", "inspect", network],
        timeout=30,
        fix="`kind create cluster` creates the `kind` network; `docker network ls` lists them",
    )
    entries = json.loads(out or "[]")
    gateway = gateway_of(entries[0]) if entries else None
    if gateway is None:
        raise ValueError(f"the docker network {network!r} has no IPv4 gateway: {out[:300]}")
    return PodNetwork(gateway, gateway, f"the {network!r} network's gateway")


def bind_for_pods(host: str) -> socket.socket:
    """A listening socket on ``host``, any free port (the kind network's gateway)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(512)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def serve_for_pods(loop: ServerLoop, host: str, tls: ssl.SSLContext) -> dict[str, int]:
    """Also serve the pod-facing stand-ins (:data:`POD_SERVED`) on ``host``; their ports.

    Each gets a second listening socket on the server it already has, so both
    addresses serve the same app and state; stopping the loop closes both. IMDS is
    plain HTTP, as on EC2.
    """
    from .. import web

    served = loop.served()
    ports: dict[str, int] = {}
    for name in POD_SERVED:
        server = served[name].server
        sock = bind_for_pods(host)
        context = None if served[name].url.startswith("http://") else tls

        async def add(
            server: web.Server = server,
            sock: socket.socket = sock,
            context: ssl.SSLContext | None = context,
        ) -> None:
            await server.add_socket(sock, context)

        try:
            loop.call(add())
        except BaseException:
            sock.close()
            raise
        ports[name] = int(sock.getsockname()[1])
    return ports


def pod_endpoint_fields(
    urls: Mapping[str, str], *, host: str, ports: Mapping[str, int] | None = None
) -> dict[str, str]:
    """``endpoints.json``'s pod-side fields: each stand-in's URL with the pods' host.

    ``ports`` are the pod-side listeners' ports (Linux); without them a pod reaches
    the loopback listener's port (Docker Desktop forwards to it). A URL's path stays
    (the agent's ``/v1/credentials``). A stand-in this AWS side does not serve is left
    out.
    """
    shown = f"[{host}]" if ":" in host else host
    out: dict[str, str] = {}
    for name, key in POD_SERVED.items():
        if name not in urls:
            continue
        parts = urlsplit(urls[name])
        port = (ports or {}).get(name) or parts.port
        out[key] = f"{parts.scheme}://{shown}:{port}{parts.path}"
    out["ca_bundle_pod"] = POD_CA_BUNDLE
    out["pod_host"] = host
    return out


def ca_configmap(ca_pem: bytes, namespace: str = NAMESPACE) -> dict[str, Any]:
    """The ConfigMap that carries the stand-ins' CA to pods (not a secret: a public cert)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CA_CONFIGMAP,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "irsa-lab"},
        },
        "data": {CA_CONFIGMAP_KEY: ca_pem.decode()},
    }


def with_lab_ca(pod: Mapping[str, Any], containers: Iterable[str] | None = None) -> dict[str, Any]:
    """``pod`` with the ``irsa-lab-ca`` ConfigMap mounted at :data:`POD_CA_DIR`.

    Every container (or those named in ``containers``) gets the mount; a pod that
    already has it is returned unchanged. ``optional: true`` so a pod in a namespace
    without the ConfigMap still starts (its AWS calls then fail on the certificate).
    """
    out = json.loads(json.dumps(pod))
    spec = out.setdefault("spec", {})
    volumes: list[dict[str, Any]] = spec.setdefault("volumes", [])
    if not any(v.get("name") == POD_CA_VOLUME for v in volumes):
        volumes.append(
            {"name": POD_CA_VOLUME, "configMap": {"name": CA_CONFIGMAP, "optional": True}}
        )
    wanted: Sequence[str] | None = list(containers) if containers is not None else None
    for c in spec.get("containers") or []:
        if wanted is not None and c.get("name") not in wanted:
            continue
        mounts: list[dict[str, Any]] = c.setdefault("volumeMounts", [])
        if not any(m.get("name") == POD_CA_VOLUME for m in mounts):
            mounts.append({"name": POD_CA_VOLUME, "mountPath": POD_CA_DIR, "readOnly": True})
    return dict(out)
