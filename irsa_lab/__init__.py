"""irsa-lab: the EKS IAM Roles for Service Accounts chain, run for real on loopback.

``irsa_lab.lab()`` gives a notebook a running lab in one call.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import Lab

__version__ = "0.1.0"
__all__ = ["__version__", "lab"]


def lab(
    backend: str | None = None,
    *,
    state_dir: Path | str | None = None,
    deterministic: bool = True,
) -> Lab:
    """Start (or connect to) the lab for this process; see :func:`irsa_lab.session.lab`.

    The session module is imported on the first call, so ``import irsa_lab`` starts
    and loads nothing heavy.
    """
    from .session import lab as _lab

    return _lab(backend, state_dir=state_dir, deterministic=deterministic)
