"""Differential suites: the stand-ins and the real programs given the same inputs."""

__all__: list[str] = []
