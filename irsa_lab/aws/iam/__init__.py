"""The IAM stand-in: roles, role policies, managed policies and OIDC providers.

- :mod:`.validation`: IAM's input constraints, refused in IAM's own words;
- :mod:`.operations`: one plain function per IAM call over an
  :class:`~irsa_lab.aws.model.Account` (``create_role``, ``attach_role_policy``,
  ``create_open_id_connect_provider`` ...), raising :class:`~irsa_lab.aws.errors.AwsError`
  with IAM's codes and messages; notebooks and tests call them directly;
- :mod:`.service`: the same operations over IAM's query protocol (form ``POST /``,
  SigV4 with service ``iam``), which is what boto3's ``iam`` client and ``aws iam``
  speak, on the query-protocol service shared with STS.
"""

from __future__ import annotations

from . import operations
from .operations import *  # noqa: F403 - the operations are the package's surface
from .service import ACTIONS, authorize_iam_call, make_app

__all__ = ["ACTIONS", "authorize_iam_call", "make_app"]
__all__ += operations.__all__
