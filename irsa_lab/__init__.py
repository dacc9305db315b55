"""irsa-lab: the EKS IAM Roles for Service Accounts chain, run for real on loopback."""

__version__ = "0.1.0"
