"""The backends that run the IRSA chain: embedded stand-ins, real Kubernetes (k8s), kind."""

__all__: list[str] = []
