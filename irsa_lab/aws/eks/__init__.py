"""The EKS API stand-in (Pod Identity associations); see docs/reference/pod-identity.md §1."""

from .associations import Association, AssociationExists, AssociationNotFound, Associations

__all__ = ["Association", "AssociationExists", "AssociationNotFound", "Associations"]
