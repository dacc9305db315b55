"""The Kubernetes side of the chain: the API server, the kubelet and the node stand-ins.

Each component is a module of its own; the package imports nothing itself.
"""

__all__: list[str] = []
