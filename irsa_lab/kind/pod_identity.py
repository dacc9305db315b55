"""EKS Pod Identity on the kind backend: the webhook's identities file and the agent's route.

The upstream webhook learns which pods get Pod Identity settings from the JSON file named
by ``--watch-container-credentials-config``, which it reloads when fsnotify reports an
event naming that file in the file's **directory** (docs/reference/pod-identity.md §5.2,
§5.3). On kind the file lives on the node, in a ``hostPath`` directory
(:data:`NODE_CONFIG_DIR`) that the webhook's pod mounts at the same path:

- :class:`NodeConfigSync` keeps it equal to ``AwsSide.associations``: on every change it
  writes a temporary file beside it and renames it onto :data:`NODE_CONFIG_FILE` inside
  the node container (``docker exec``), so the watcher sees one event with the file's own
  name and never a half-written file. A ConfigMap volume would not do: its updates swap
  the ``..data`` symlink, an event that names ``..data``, so the webhook would never reload;
- :class:`ConfigLoadWaiter` waits for the reload, which the webhook reports only in its
  log (``kubectl logs``): "Successfully loaded container credentials config file", or
  "Container credentials config file is empty, clearing cache".

Pods reach the agent at EKS's own address. botocore (and the other AWS SDKs) fetch
``http://`` container credentials only from loopback or the link-local agent and ECS
addresses (§4.2): a pod cannot be pointed at ``http://<gateway>:<port>``, and the agent
answers 403 for any ``Host`` but its own (§4.7). So the webhook injects upstream's default
``http://169.254.170.23/v1/credentials``, and :func:`agent_route_script` adds a DNAT rule
in the node's ``nat`` table that sends pods' packets for ``169.254.170.23:80`` to the
agent's pod-side listener on the host. On EKS the agent itself listens there, on every
node, with ``hostNetwork`` (§4.7).
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..constants import CONTAINER_CREDENTIALS_FULL_URI, KIND_WEBHOOK_NAMESPACE, KIND_WEBHOOK_SERVICE
from ..webhook.container_credentials import (
    CONFIG_LOADED_LINES,
    AssociationsLike,
    IdentitiesSync,
)

__all__ = [
    "AGENT_CHAIN",
    "ConfigLoadWaiter",
    "ConfigLoads",
    "NODE_CONFIG_DIR",
    "NODE_CONFIG_FILE",
    "NODE_CONFIG_VOLUME",
    "NodeConfigSync",
    "POD_AGENT_URL",
    "agent_route_script",
    "config_loads",
    "node_container",
    "route_agent",
    "write_config_argv",
]

# A directory of the node (hostPath), mounted at the same path in the webhook's pod.
NODE_CONFIG_DIR = "/etc/irsa-lab/pod-identity"
NODE_CONFIG_FILE = f"{NODE_CONFIG_DIR}/identities.json"
NODE_CONFIG_VOLUME = "pod-identity-config"
# The URL the webhook injects: the agent's address on EKS (upstream's default, §5.1).
POD_AGENT_URL = CONTAINER_CREDENTIALS_FULL_URI
# The node's nat chain that holds the rule sending pods' agent traffic to the host.
AGENT_CHAIN = "IRSA-LAB-POD-IDENTITY"
WRITE_TIMEOUT_S = 30.0
LOGS_TIMEOUT_S = 30.0

Run = Callable[..., str]
Kubectl = Callable[[Sequence[str], float], str]


def node_container(cluster: str) -> str:
    """The Docker container of the cluster's one node (kind names it so)."""
    return f"{cluster}-control-plane"


def write_config_argv(node: str, path: str = NODE_CONFIG_FILE) -> list[str]:
    """``docker exec`` that replaces ``path`` in ``node`` with its stdin, atomically.

    The temporary file is in the same directory, so ``mv`` is a rename(2): the watcher
    sees its create and writes under the temporary name (ignored) and one move onto the
    file's own name (the reload), §5.3.
    """
    folder, _, name = path.rpartition("/")
    tmp = f"{folder}/.{name}.tmp"
    script = (
        f"mkdir -p {shlex.quote(folder)} && cat > {shlex.quote(tmp)} && "
        f"chmod 0644 {shlex.quote(tmp)} && mv -f {shlex.quote(tmp)} {shlex.quote(path)}"
    )
    return ["docker", "exec", "-i", node, "sh", "-c", script]


class NodeConfigSync(IdentitiesSync):
    """An :class:`IdentitiesSync` for the file on the kind node: each replacement goes
    through ``run`` (the kind backend's docker runner, :func:`write_config_argv`)."""

    def __init__(
        self,
        associations: AssociationsLike,
        run: Run,
        *,
        node: str,
        path: str = NODE_CONFIG_FILE,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(associations, before_write=before_write)
        self.run = run
        self.node = node
        self.path = path

    def replace(self, data: bytes) -> None:
        self.run(
            write_config_argv(self.node, self.path),
            input=data.decode(),
            timeout=WRITE_TIMEOUT_S,
            fix=f"`docker exec {self.node} ls -l {self.path.rpartition('/')[0]}`",
        )


def agent_route_script(host: str, port: int, *, agent_url: str = POD_AGENT_URL) -> str:
    """The ``sh`` script, run in the node, that sends pods' ``agent_url`` traffic to
    ``host:port`` (the agent's pod-side listener; module doc).

    ``host`` may be a name (``host.docker.internal`` on Docker Desktop): the node resolves
    it, since a DNAT rule needs an address. The rule lives in a chain of its own, flushed
    first, so a resumed cluster's rule points at this start's port.
    """
    parts = urlsplit(agent_url)
    agent_ip, agent_port = parts.hostname or "", parts.port or 80
    try:
        ipaddress.IPv4Address(host)
        target = f"target={shlex.quote(host)}"
    except ValueError:
        target = (
            f"target=$(getent ahostsv4 {shlex.quote(host)} | awk 'NR==1 {{print $1}}'); "
            f'[ -n "$target" ] || {{ echo "cannot resolve {host}" >&2; exit 1; }}'
        )
    nat = "iptables -w -t nat"
    return "; ".join(
        [
            "set -e",
            target,
            f"{nat} -N {AGENT_CHAIN} 2>/dev/null || true",
            f"{nat} -F {AGENT_CHAIN}",
            f"{nat} -A {AGENT_CHAIN} -d {agent_ip}/32 -p tcp --dport {agent_port} "
            f'-j DNAT --to-destination "$target:{port}"',
            f"{nat} -C PREROUTING -j {AGENT_CHAIN} 2>/dev/null || "
            f"{nat} -I PREROUTING 1 -j {AGENT_CHAIN}",
        ]
    )


def route_agent(run: Run, *, node: str, pod_url: str, agent_url: str = POD_AGENT_URL) -> None:
    """Add the node's DNAT rule for the agent (:func:`agent_route_script`); ``pod_url`` is
    the agent's pod-side URL (``endpoints.json``'s ``pod_identity_agent_pod``)."""
    parts = urlsplit(pod_url)
    if not parts.hostname or not parts.port:
        raise ValueError(f"the agent's pod-side URL has no host and port: {pod_url!r}")
    run(
        ["docker", "exec", node, "sh", "-c", agent_route_script(parts.hostname, parts.port)],
        timeout=WRITE_TIMEOUT_S,
        fix=f"`docker exec {node} iptables -t nat -S {AGENT_CHAIN}` shows the rule",
    )


@dataclass(frozen=True)
class ConfigLoads:
    """How many times the webhook's current pod has logged loading the file."""

    pod: str | None
    count: int


_PREFIX = re.compile(r"^\[pod/([^/\]]+)/")


def config_loads(
    kubectl: Kubectl,
    *,
    namespace: str = KIND_WEBHOOK_NAMESPACE,
    deployment: str = KIND_WEBHOOK_SERVICE,
) -> ConfigLoads:
    """Count the load lines in the webhook pod's log (``kubectl logs --prefix``).

    The prefix names the pod, so a count from a pod that replaced the one counted
    before (the webhook stopped and started again) is not compared with the old one.
    """
    out = kubectl(
        ["--namespace", namespace, "logs", f"deployment/{deployment}", "--prefix"],
        LOGS_TIMEOUT_S,
    )
    pod: str | None = None
    count = 0
    for line in out.splitlines():
        m = _PREFIX.match(line)
        if m and pod is None:
            pod = m.group(1)
        count += sum(text in line for text in CONFIG_LOADED_LINES)
    return ConfigLoads(pod, count)


class ConfigLoadWaiter:
    """Waits until the webhook has reloaded the file the last write replaced.

    :meth:`mark` (a :class:`NodeConfigSync` ``before_write``) counts the loads just before
    the write; :meth:`wait` returns once the webhook's log holds a later one, or a pod
    other than the one counted has loaded it (it loads the file when it starts).
    """

    def __init__(
        self,
        kubectl: Kubectl,
        *,
        running: Callable[[], bool],
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        interval: float = 0.2,
    ) -> None:
        self.kubectl = kubectl
        self.running = running
        self.sleep = sleep
        self.monotonic = monotonic
        self.interval = interval
        self.at_write = ConfigLoads(None, 0)

    def _loads(self) -> ConfigLoads:
        try:
            return config_loads(self.kubectl)
        except Exception:  # noqa: BLE001 - no pod yet, or the API server restarting
            return ConfigLoads(None, 0)

    def mark(self) -> None:
        self.at_write = self._loads()

    def loaded(self) -> bool:
        now = self._loads()
        if now.pod is None:
            return False
        if now.pod != self.at_write.pod:
            return now.count > 0
        return now.count > self.at_write.count

    def wait(self, timeout: float = 10.0) -> None:
        """Return once the reload is in the log; TimeoutError after ``timeout`` seconds.

        A stopped webhook (no ready replica) returns at once: it loads the current file
        when it starts again.
        """
        if not self.running():
            return
        end = self.monotonic() + timeout
        while not self.loaded():
            if self.monotonic() >= end:
                raise TimeoutError(
                    f"the webhook did not log loading {NODE_CONFIG_FILE} within {timeout:g} s "
                    f"(`kubectl -n {KIND_WEBHOOK_NAMESPACE} logs deployment/"
                    f"{KIND_WEBHOOK_SERVICE}`)"
                )
            self.sleep(self.interval)
