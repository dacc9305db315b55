"""STS: AssumeRoleWithWebIdentity and GetCallerIdentity, as the IRSA chain meets them.

- :mod:`.errors`: one exception class per way the call fails, with its wire form;
- :mod:`.params`: the request against the service model (the ``parameters`` step);
- :mod:`.checks`: the check pipeline, shared by the stand-in, the playground and
  the token decoder;
- :mod:`.service`: the stand-in itself (credentials, the query-protocol app).
"""

from __future__ import annotations

from ...jose import ALGORITHMS as SUPPORTED_ALGORITHMS
from .checks import IAM_STEPS, STEPS, TOKEN_STEPS, IamView, KeysForIssuer, Pipeline, State
from .errors import ACCESS_DENIED_MESSAGE, StsError, failure_from_wire
from .params import validate_parameters
from .service import (
    AssumeRoleResult,
    AssumeRoleWithWebIdentityResult,
    CallerIdentity,
    assume_role_with_web_identity,
    get_caller_identity,
    make_app,
    pipeline_for,
    session_token,
)

__all__ = [
    "ACCESS_DENIED_MESSAGE",
    "IAM_STEPS",
    "STEPS",
    "SUPPORTED_ALGORITHMS",
    "TOKEN_STEPS",
    "AssumeRoleResult",
    "AssumeRoleWithWebIdentityResult",
    "CallerIdentity",
    "IamView",
    "KeysForIssuer",
    "Pipeline",
    "State",
    "StsError",
    "assume_role_with_web_identity",
    "failure_from_wire",
    "get_caller_identity",
    "make_app",
    "pipeline_for",
    "session_token",
    "validate_parameters",
]
