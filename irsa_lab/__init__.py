"""irsa-lab: the EKS IAM Roles for Service Accounts chain, run for real on loopback.

``irsa_lab.lab()`` gives a notebook a running lab in one call.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "lab"]


def lab(*args: Any, **kwargs: Any) -> Any:
    """Start (or connect to) the lab for this process; see :func:`irsa_lab.session.lab`."""
    from .session import lab as _lab

    return _lab(*args, **kwargs)
