"""The key selection of the local stack's start-up reconciliation (dss.local.reconcile)."""
from __future__ import annotations

from dss.checksums import compute_checksums_of_bytes
from dss.identifiers import ObjectId, new_version
from dss.local.reconcile import one_sided


def test_only_dss_keys_held_by_one_replica_are_picked_with_the_replica_that_has_them():
    version = new_version()
    blob = compute_checksums_of_bytes(b"x").blob_key()
    both = ObjectId("files", "0" * 8 + "-0000-4000-8000-" + "0" * 12, version).to_key()
    aws_only = ObjectId("files", "1" * 8 + "-0000-4000-8000-" + "0" * 12, version).to_key()
    gcp_only = ObjectId("files", "2" * 8 + "-0000-4000-8000-" + "0" * 12, version).to_key()
    foreign = "files/not-a-dss-key"
    listings = {"aws": sorted([blob, both, aws_only, foreign]), "gcp": sorted([both, gcp_only])}
    assert sorted(one_sided(listings)) == sorted([("aws", blob), ("aws", aws_only), ("gcp", gcp_only)])

