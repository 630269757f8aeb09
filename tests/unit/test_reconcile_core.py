"""The key selection of the local stack's start-up reconciliation (dss.local.reconcile)."""
from __future__ import annotations

from dss.checksums import compute_checksums_of_bytes
from dss.identifiers import ObjectId, new_version
from dss.local.reconcile import one_sided, unjournaled


def test_only_dss_keys_held_by_one_replica_are_picked_with_the_replica_that_has_them():
    version = new_version()
    blob = compute_checksums_of_bytes(b"x").blob_key()
    both = ObjectId("files", "0" * 8 + "-0000-4000-8000-" + "0" * 12, version).to_key()
    aws_only = ObjectId("files", "1" * 8 + "-0000-4000-8000-" + "0" * 12, version).to_key()
    gcp_only = ObjectId("files", "2" * 8 + "-0000-4000-8000-" + "0" * 12, version).to_key()
    foreign = "files/not-a-dss-key"
    listings = {"aws": sorted([blob, both, aws_only, foreign]), "gcp": sorted([both, gcp_only])}
    assert sorted(one_sided(listings)) == sorted([("aws", blob), ("aws", aws_only), ("gcp", gcp_only)])



def test_bundle_versions_without_the_journal_marker_their_state_calls_for_are_picked():
    u1, u2, u3 = (f"{i}" * 8 + "-0000-4000-8000-" + "0" * 12 for i in (1, 2, 3))
    v1, v2 = "2020-01-01T000000.000000Z", "2020-01-02T000000.000000Z"
    bundles = sorted([
        f"bundles/{u1}.{v1}", f"bundles/{u1}.{v2}",  # v1 journaled, v2 not
        f"bundles/{u2}.{v1}", f"bundles/{u2}.{v1}.dead",  # tombstoned, only its CREATE journaled
        f"bundles/{u3}.{v1}", f"bundles/{u3}.{v2}", f"bundles/{u3}.dead",  # all dead: v1 done, v2 not
        "bundles/not-a-bundle-key",
    ])
    markers = sorted([f"events/by-id/{u1}.{v1}.CREATE", f"events/by-id/{u2}.{v1}.CREATE",
                      f"events/by-id/{u3}.{v1}.TOMBSTONE", f"events/by-id/{u3}.{v2}.CREATE",
                      "events/by-id/00000000-0000-4000-8000-000000000000.x.CREATE"])  # a uuid with no bundle
    assert list(unjournaled(iter(bundles), iter(markers))) == [
        f"bundles/{u1}.{v2}", f"bundles/{u2}.{v1}", f"bundles/{u3}.{v2}"]


def test_nothing_journaled_means_every_version_is_picked():
    u = "4" * 8 + "-0000-4000-8000-" + "0" * 12
    keys = [f"bundles/{u}.2020-01-01T000000.000000Z"]
    assert list(unjournaled(iter(keys), iter([]))) == keys
