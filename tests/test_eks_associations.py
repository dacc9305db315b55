import re

import pytest

from irsa_lab.aws.eks.associations import AssociationExists, AssociationNotFound, Associations


def make() -> Associations:
    return Associations(
        cluster_name="irsa-lab",
        region="us-west-2",
        account_id="111122223333",
        wall_clock=lambda: 1764526245.123,
    )


def test_a_created_association_has_the_documented_id_and_arn_and_can_be_described() -> None:
    assocs = make()
    created = assocs.create("default", "sa", "arn:aws:iam::111122223333:role/r")
    assert re.fullmatch(r"a-[a-z0-9]{17}", created.association_id)
    assert created.association_arn == (
        f"arn:aws:eks:us-west-2:111122223333:podidentityassociation/irsa-lab/{created.association_id}"
    )
    assert assocs.describe(created.association_id) == created
    assert created.to_wire()["tags"] == {}


def test_a_second_association_for_the_same_service_account_is_refused_with_the_aws_message() -> (
    None
):
    assocs = make()
    first = assocs.create("default", "sa", "arn:aws:iam::111122223333:role/r")
    with pytest.raises(
        AssociationExists, match=f"Association already exists: {first.association_id}"
    ):
        assocs.create("default", "sa", "arn:aws:iam::111122223333:role/other")


def test_list_filters_by_namespace_and_service_account_and_delete_calls_on_change() -> None:
    assocs = make()
    calls: list[int] = []
    assocs.on_change.append(lambda: calls.append(1))
    a = assocs.create("default", "sa", "arn:aws:iam::111122223333:role/r")
    assocs.create("other", "sa", "arn:aws:iam::111122223333:role/r")
    assert [x.namespace for x in assocs.list(namespace="other")] == ["other"]
    assert len(assocs.list(service_account="sa")) == 2
    assocs.delete(a.association_id)
    assert assocs.identities() == [("other", "sa")]
    assert len(calls) == 3
    with pytest.raises(AssociationNotFound):
        assocs.describe(a.association_id)
