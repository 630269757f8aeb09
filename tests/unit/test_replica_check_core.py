"""The pure parts of dss.replica_check: the merge walk, the plan, and the classification of copies."""
import json

import pytest

from dss.checksums import compute_checksums_of_bytes
from dss.replica_check import (Copy, Finding, KeyReport, Summary, compare_copies, dependencies, key_kind,
                               merge_sorted, orphan_findings, plan_prefixes, resume_plan, same_content)

U1 = "11111111-1111-1111-1111-111111111111"
V1 = "2020-01-01T000000.000000Z"
SUMS = compute_checksums_of_bytes(b"hello")
BLOB = SUMS.blob_key()


def test_merge_pairs_keys_and_tells_which_side_has_them():
    merged = list(merge_sorted(iter(["a", "c", "d"]), iter(["b", "c", "e", "f"])))
    assert merged == [("a", True, False), ("b", False, True), ("c", True, True), ("d", True, False),
                      ("e", False, True), ("f", False, True)]
    assert list(merge_sorted([], [])) == []


def test_merge_consumes_lazily_and_refuses_unsorted_listings():
    def endless():
        n = 0
        while True:
            yield f"k{n:09d}"
            n += 1
    merged = merge_sorted(endless(), iter(["k000000001"]))  # an endless listing: only what is needed is read
    assert [next(merged) for _ in range(3)] == [("k000000000", True, False), ("k000000001", True, True),
                                                ("k000000002", True, False)]
    with pytest.raises(RuntimeError, match="ascending"):
        list(merge_sorted(iter(["b", "a"]), iter([])))


def test_plan_walks_dependencies_first_without_overlaps():
    assert plan_prefixes([""]) == ["blobs/", "files/", "bundles/", "collections/"]
    assert plan_prefixes(["b"]) == ["blobs/", "bundles/"]
    assert plan_prefixes(["bundles/1", "files/", "files/ab", "blobs/0"]) == ["blobs/0", "files/", "bundles/1"]
    assert plan_prefixes(["touch/"]) == []


def test_resume_plan_continues_after_the_last_key():
    plan = ["blobs/", "files/", "bundles/"]
    assert resume_plan(plan, None) == [("blobs/", None), ("files/", None), ("bundles/", None)]
    assert resume_plan(plan, "files/x") == [("files/", "files/x"), ("bundles/", None)]
    with pytest.raises(ValueError):
        resume_plan(plan, "collections/x")


def test_key_kinds():
    assert key_kind(BLOB) == "blob"
    assert key_kind(f"files/{U1}.{V1}") == key_kind(f"bundles/{U1}.dead") == "metadata"
    assert key_kind(BLOB + ".part1") is None and key_kind("files/nonsense") is None


def blob_copy(replica, *, good=True, size=5):
    name = "s3_etag" if replica == "aws" else "crc32c"
    return Copy(size, getattr(SUMS, name) if good else "0" * 8, name)


def test_blobs_missing_in_either_direction():
    [f] = compare_copies(BLOB, "blob", {"aws": blob_copy("aws"), "gcp": None})
    assert (f.cls, f.replica, f.source, f.direction) == ("missing", "gcp", "aws", "present on aws, missing on gcp")
    [f] = compare_copies(BLOB, "blob", {"aws": None, "gcp": blob_copy("gcp")})
    assert (f.cls, f.replica, f.source) == ("missing", "aws", "gcp")


def test_a_bad_lone_blob_is_missing_with_no_source():
    [f] = compare_copies(BLOB, "blob", {"aws": blob_copy("aws", good=False), "gcp": None})
    assert (f.cls, f.replica, f.source) == ("missing", "gcp", None) and "is bad" in f.detail


def test_blob_differences_name_the_bad_copy_by_its_native_checksum():
    assert compare_copies(BLOB, "blob", {"aws": blob_copy("aws"), "gcp": blob_copy("gcp")}) == []
    [f] = compare_copies(BLOB, "blob", {"aws": blob_copy("aws"), "gcp": blob_copy("gcp", good=False)})
    assert (f.cls, f.replica, f.source, f.direction) == ("differs", "gcp", "aws", "bad copy on gcp")
    [f] = compare_copies(BLOB, "blob", {"aws": blob_copy("aws", good=False), "gcp": blob_copy("gcp", good=False)})
    assert (f.replica, f.source) == (None, None)
    [f] = compare_copies(BLOB, "blob", {"aws": blob_copy("aws"), "gcp": blob_copy("gcp", size=6)})
    assert (f.cls, f.replica, f.source) == ("differs", None, None)


def test_metadata_compares_content():
    key = f"files/{U1}.{V1}"
    a, b = b'{"a": 1, "b": 2}', b'{"b": 2, "a": 1}'
    assert same_content(a, b) and not same_content(a, b'{"a": 2}') and not same_content(b"x", b"y")
    assert compare_copies(key, "metadata", {"aws": Copy(len(a), body=a), "gcp": Copy(len(b), body=b)}) == []
    [f] = compare_copies(key, "metadata", {"aws": Copy(1, body=a), "gcp": Copy(1, body=b'{"a": 2}')})
    assert (f.cls, f.replica, f.source, f.direction) == ("differs", None, None, "undetermined")


def test_dependencies_of_each_kind():
    file_doc = {"sha256": SUMS.sha256, "sha1": SUMS.sha1, "s3-etag": SUMS.s3_etag, "crc32c": SUMS.crc32c}
    assert dependencies(f"files/{U1}.{V1}", json.dumps(file_doc).encode()) == [BLOB]
    bundle = {"files": [{"uuid": U1, "version": V1}, {"uuid": U1, "version": V1}]}
    assert dependencies(f"bundles/{U1}.{V1}", json.dumps(bundle).encode()) == [f"files/{U1}.{V1}"]
    collection = {"contents": [{"type": "bundle", "uuid": U1, "version": V1},
                               {"type": "biomaterial", "uuid": U1, "version": V1, "fragment": "/a"}]}
    assert dependencies(f"collections/{U1}.{V1}", json.dumps(collection).encode()) == [
        f"bundles/{U1}.{V1}", f"files/{U1}.{V1}"]
    assert dependencies(f"bundles/{U1}.{V1}.dead", b"anything") == []
    with pytest.raises(ValueError):
        dependencies(f"bundles/{U1}.{V1}", b'{"no files": 1}')
    with pytest.raises(ValueError):
        dependencies(f"files/{U1}.{V1}", b"not json")


def test_orphans_name_a_source_only_when_the_other_replica_has_the_dependency():
    found = orphan_findings("k", "gcp", ["d1", "d2"], {"d1": True, "d2": False})
    assert [(f.cls, f.replica, f.source, f.dependency) for f in found] == [
        ("orphaned", "gcp", "aws", "d1"), ("orphaned", "gcp", None, "d2")]


def test_summary_counts_by_class_and_direction():
    summary = Summary()
    summary.add(KeyReport("a", "consistent"))
    summary.add(KeyReport("b", "young"))
    summary.add(KeyReport("c", "diverged", [Finding("missing", "c", "gcp", "aws", "", repair="repaired"),
                                            Finding("orphaned", "c", "aws", None, "", dependency="d")]))
    assert (summary.walked, summary.consistent, summary.young, summary.repaired, summary.remaining) == (3, 1, 1, 1, 1)
    assert summary.findings == {"missing: present on aws, missing on gcp": 1, "orphaned: in aws": 1}
    assert Summary(**json.loads(json.dumps(summary.__dict__))) == summary
    assert Finding("orphaned", "c", "aws", None, "x", dependency="d").as_json() == {
        "class": "orphaned", "direction": "in aws", "key": "c", "replica": "aws", "detail": "x", "dependency": "d"}
