"""The AWS side of the chain: STS, IAM, S3 and IMDS stand-ins, and the policy engine.

Each service is a module or package of its own; the package imports nothing itself.
"""

__all__: list[str] = []
