"""What the kind tests that run without Docker share: the AWS stand-ins started as the
kind backend starts them, with their pod-side listeners on a stand-in gateway."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from irsa_lab.constants import KIND_DISCOVERY_URL, KIND_ISSUER
from irsa_lab.pki import LabCA
from irsa_lab.stack import AwsHandle, start_aws_for_issuer

GATEWAY = "127.0.0.2"  # a loopback address stands for the kind network's gateway


@contextlib.contextmanager
def gateway_aws(state_dir: Path) -> Iterator[AwsHandle]:
    """The stand-ins for the kind issuer, pods' listeners bound on :data:`GATEWAY`."""
    handle = start_aws_for_issuer(
        state_dir=state_dir,
        issuer=KIND_ISSUER,
        discovery_url=KIND_DISCOVERY_URL,
        ca_pem_for_discovery=LabCA.create().cert_pem,
        seed=7,
        pod_host=GATEWAY,
        pod_bind=GATEWAY,
    )
    try:
        yield handle
    finally:
        handle.stop()
