"""A small EC2: the lab's one node instance, ``DescribeInstances`` and
``ModifyInstanceMetadataOptions``, on the EC2 query protocol (:mod:`.service`).

The instance's metadata options are the IMDS stand-in's
:class:`~irsa_lab.aws.imds.ImdsSettings`, the same object the IMDS reads on every
request: what ``ec2.modify_instance_metadata_options`` sets is what the IMDS enforces.
"""

from __future__ import annotations

from .service import (
    EC2_NS,
    EC2_VERSION,
    INSTANCE_TYPE,
    Instance,
    authorize_ec2,
    ec2_error_xml,
    ip_of_dns_name,
    make_app,
)

__all__ = [
    "EC2_NS",
    "EC2_VERSION",
    "INSTANCE_TYPE",
    "Instance",
    "authorize_ec2",
    "ec2_error_xml",
    "ip_of_dns_name",
    "make_app",
]
