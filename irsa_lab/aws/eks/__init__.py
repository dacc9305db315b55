"""EKS Pod Identity's AWS side; see docs/reference/pod-identity.md.

:mod:`.associations` (the model), :mod:`.service` (the EKS API: associations and
``DescribeCluster``, §1), :mod:`.auth` (EKS Auth, §2), :mod:`.trust` (§6), :mod:`.agent` (§4.7).
"""

from .associations import Association, AssociationExists, AssociationNotFound, Associations

__all__ = ["Association", "AssociationExists", "AssociationNotFound", "Associations"]
