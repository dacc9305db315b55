"""What the embedded Kubernetes side is known to do differently from Kubernetes, where no
suite of ``make fidelity`` measures it yet (controllers, events, exec, protobuf errors).

Each entry: what, the lab, Kubernetes, why it is acceptable. ``docs/fidelity.md`` shows
them; a difference a suite comes to measure moves there, or is fixed.
"""

from __future__ import annotations

__all__ = ["KUBE_DIFFERENCES"]

KUBE_DIFFERENCES: tuple[tuple[str, str, str, str], ...] = (
    (
        "HTTP transport (every stand-in)",
        "HTTP/1.1 from the lab's own server (irsa_lab.web on asyncio): keep-alive, chunked "
        "watches, WebSocket exec; ALPN offers no h2",
        "Go's net/http: HTTP/2 over TLS by ALPN, HTTP/1.1 otherwise",
        "kubectl, client-go, the kubernetes client and botocore fall back to HTTP/1.1, and "
        "every request and answer carries the same headers and bodies",
    ),
    (
        "pod-template-hash",
        "FNV-32a over the template's JSON",
        "FNV-32a over Go's object dump of the template",
        "a label value no lesson compares with a real cluster's",
    ),
    (
        "rolling update",
        "all new pods at once, then the old ReplicaSet scaled to 0 once they are available; "
        "minReadySeconds and progressDeadlineSeconds ignored",
        "maxSurge/maxUnavailable steps; ProgressDeadlineExceeded",
        "`rollout restart` and `rollout status` end the same; the steps take milliseconds here",
    ),
    (
        "delete propagation",
        "Foreground and Orphan ignored: the owner goes at once, dependents on the next "
        "controller pass (about 0.2 s)",
        "the garbage collector honours propagationPolicy",
        "the end state is the same for the lab's Deployments",
    ),
    (
        "namespace deletion",
        "Terminating for one controller pass, no conditions, no spec.finalizers",
        "the namespace controller's phases and conditions",
        "what a learner sees (`Terminating`, then gone) is the same",
    ),
    (
        "kubelet events",
        "`Pulled` always says the image is already present (both backends' kubelet stand-in)",
        "Pulling, then Successfully pulled image ... in Xs",
        "no image is pulled: the lab runs no containers",
    ),
    (
        "kubectl logs",
        "embedded: 400 saying the lab runs no container's main command; k8s backend: the "
        "kubelet stand-in answers an empty log",
        "what the container printed",
        "the lab runs commands through exec, not a container's main process",
    ),
    (
        "kubectl exec",
        "about 1.2 s (embedded) and 2.4 s (k8s) to start the command in a fresh process; "
        "killed with its process group when the client leaves; stdout and stderr ordered "
        "only within each stream",
        "milliseconds through the container runtime; the exec'd process runs on",
        "the command, its env, its token files, its output and its exit code are a pod's",
    ),
    (
        "exec transports",
        "embedded: WebSocket only (a SPDY client gets `Upgrade request required`); the "
        "kubelet stand-in: SPDY/3.1 with v4 only, no flow control, no attach or port-forward",
        "the API server proxies SPDY too; the kubelet speaks WebSocket and every version",
        "kubectl 1.29 and later use WebSocket; the real API server uses SPDY v4 to kubelets",
    ),
    (
        "the kubelet's client check",
        "any client certificate from the cluster CA",
        "a SubjectAccessReview on nodes/proxy",
        "only the lab's API server reaches it, on loopback",
    ),
    (
        "protobuf errors",
        "every corrupt body is `unexpected EOF`; a body of another kind names the expected "
        "type; empty non-pointer fields left out when the lab writes protobuf",
        "Go's specific proto errors; `unknown conversion`; Go writes empty fields",
        "the same status code and reason; the decoded objects are the same",
    ),
    (
        "strategic merge patch",
        "for Deployments and ReplicaSets; pods and ServiceAccounts get a plain merge patch",
        "strategic merge for every built-in kind",
        "`kubectl apply`, `set image` and `set env` behave as on a cluster for the lab's kinds",
    ),
    (
        "events written by users",
        "405: only the lab's components post events",
        "allowed with RBAC",
        "no lesson posts an event",
    ),
)
