"""IAM policy documents: parsed as IAM parses them, evaluated as IAM evaluates them, explained.

Three ideas, one module each (docs/reference/sts.md §2.3):

- :mod:`.grammar`: a JSON document read into statements (:func:`parse_policy`), refused
  with ``MalformedPolicyDocument`` and IAM's own text where the grammar is broken;
- :mod:`.evaluation`: a :class:`RequestContext` (built by :mod:`.request`, e.g.
  :func:`oidc_trust_context` for ``AssumeRoleWithWebIdentity``) decided against labelled
  policies (:func:`evaluate`), the condition operators being those of :mod:`.operators`;
- :mod:`.explanation`: the :class:`Decision` that comes back, with a row and a "why"
  for every statement and every condition, and the plain-text report the playground
  and STS's ``AccessDenied`` explanation show.

Two more rooms serve the permission checks of the S3 and IAM stand-ins:
:mod:`.variables` replaces policy variables (``${aws:userid}``) in ``2012-10-17``
documents, and :mod:`.authorization` judges a role session by its identity-based and
its session policies together (:func:`authorize`), with the global condition keys of
:func:`global_keys` in the request.

The names below are the public surface; ``from irsa_lab.aws.policy import evaluate``.
"""

from __future__ import annotations

from .authorization import Authorization, authorize
from .evaluation import evaluate
from .explanation import ConditionResult, Decision, StatementResult
from .grammar import ConditionEntry, Policy, PolicyKind, Statement, parse_policy
from .request import RequestContext, global_keys, oidc_trust_context

__all__ = [
    "Authorization",
    "ConditionEntry",
    "ConditionResult",
    "Decision",
    "Policy",
    "PolicyKind",
    "RequestContext",
    "Statement",
    "StatementResult",
    "authorize",
    "evaluate",
    "global_keys",
    "oidc_trust_context",
    "parse_policy",
]
