import pytest

from dss.bundle_manifest import (VersionListing, api_file, check_unique_names, live_bundles, manifest_entry,
                                 patched_files, tombstone_document)
from dss.errors import DSSError

U1 = "11111111-1111-1111-1111-111111111111"
U2 = "22222222-2222-2222-2222-222222222222"
V1, V2, V3 = "2020-01-01T000000.000000Z", "2021-01-01T000000.000000Z", "2022-01-01T000000.000000Z"
META = {"content-type": "application/json", "size": 3, "crc32c": "a" * 8, "s3-etag": "b" * 32, "sha1": "c" * 40,
        "sha256": "d" * 64, "format": "0.0.4", "creator_uid": 1, "version": V1}


def test_manifest_entry_takes_the_stored_checksums_and_the_users_name():
    entry = manifest_entry({"uuid": U1.upper(), "version": V1, "name": "a.json", "indexed": 1}, META)
    assert entry == {"name": "a.json", "uuid": U1, "version": V1, "content-type": "application/json", "size": 3,
                     "indexed": True, "crc32c": "a" * 8, "s3-etag": "b" * 32, "sha1": "c" * 40, "sha256": "d" * 64}
    assert api_file(entry)["s3_etag"] == "b" * 32 and "s3-etag" not in api_file(entry)


def test_unique_names():
    check_unique_names([{"name": "a"}, {"name": "A"}])  # case matters to the store (the hca client objects)
    with pytest.raises(DSSError) as e:
        check_unique_names([{"name": "a"}, {"name": "b"}, {"name": "a"}])
    assert e.value.code == "duplicate_filename"


@pytest.mark.parametrize("names", [["d", "d/e"], ["a/b/c", "a/b"], ["x/y/z", "q", "x"]])
def test_a_name_may_not_also_be_a_directory(names):
    with pytest.raises(DSSError) as e:
        check_unique_names([{"name": n} for n in names])
    assert e.value.code == "illegal_file_name" and "also a directory" in e.value.title


def test_names_sharing_directories_are_fine():
    check_unique_names([{"name": n} for n in ["d/e", "d/f", "d/g/h", "de", "d.json", "dx/e"]])


def test_patch_removes_exact_triples_then_adds():
    a = {"name": "a", "uuid": U1, "version": V1}
    b = {"name": "b", "uuid": U2, "version": V1}
    c = {"name": "c", "uuid": U2, "version": V2}
    assert patched_files([a, b], remove=[{**a, "uuid": U1.upper()}], add=[c]) == [b, c]
    assert patched_files([a, b], remove=[{**a, "version": V2}], add=[]) == [a, b]
    with pytest.raises(DSSError):
        patched_files([a, b], remove=[], add=[{**c, "name": "a"}])


def test_tombstone_documents():
    assert tombstone_document("x@y", "why") == {"email": "x@y", "reason": "why", "admin_deleted": True}
    assert tombstone_document("x@y", "why", V1)["version"] == V1


def keys(*names):
    return [f"bundles/{n}" for n in names]


def test_version_listing_rules():
    listing = VersionListing.of(U1, keys(f"{U1}.{V1}", f"{U1}.{V2}", f"{U1}.{V2}.dead", f"{U1}.{V3}",
                                         f"{U2}.{V3}"))
    assert listing.latest_live() == V3
    assert listing.is_live(V1) and not listing.is_live(V2) and not listing.is_live("2030-01-01T000000.000000Z")
    dead = VersionListing.of(U1, keys(f"{U1}.{V1}", f"{U1}.dead"))
    assert dead.latest_live() is None and not dead.is_live(V1)
    only_dead_versions = VersionListing.of(U1, keys(f"{U1}.{V1}", f"{U1}.{V1}.dead"))
    assert only_dead_versions.latest_live() is None


def test_live_bundles_in_listing_order():
    listing = keys(f"{U1}.{V1}", f"{U1}.{V1}.dead", f"{U1}.{V2}", f"{U1}.{V3}.dead",  # orphan tombstone ignored
                   f"{U2}.{V1}", f"{U2}.{V2}", f"{U2}.dead") + ["bundles/not-a-key", "files/x"]
    assert [(u, v) for u, v, _ in live_bundles(listing)] == [(U1, V2)]
    assert [k for _, _, k in live_bundles(listing)] == [f"bundles/{U1}.{V2}"]
    assert list(live_bundles([])) == []


def test_live_bundles_streams_one_uuid_at_a_time():
    consumed = []

    def listing():
        for key in keys(f"{U1}.{V1}", f"{U2}.{V1}", f"{U2}.{V2}"):
            consumed.append(key)
            yield key

    stream = live_bundles(listing())
    assert next(stream)[0] == U1
    assert len(consumed) == 2  # U1 is emitted once U2 starts: nothing further was read


# --- the file name rule ------------------------------------------------------------------------------------------

def test_the_longest_name_fills_the_checkout_key_to_the_store_limit():
    from dss.bundle_manifest import STORE_KEY_LIMIT_BYTES, file_name_problem
    from dss.checkout_rules import bundle_object_key
    longest = SEGMENT * 4 + "é" * 76 + "x"  # 800 + 153 bytes
    assert file_name_problem(longest) is None
    assert len(bundle_object_key(U1, V1, longest).encode()) == STORE_KEY_LIMIT_BYTES == 1024
    assert file_name_problem(longest + "x") is not None


SEGMENT = "s" * 199 + "/"  # 200 bytes with its separator


@pytest.mark.parametrize("name", ["a", "a.json", "meta/a.json", ".bashrc", "good..path", "with space", "ünï",
                                  "x" * 200, "é" * 100, "名" * 66, SEGMENT * 4 + "x" * 153, "a~/b", "~x", "a."])
def test_legal_names(name):
    from dss.bundle_manifest import file_name_problem
    assert file_name_problem(name) is None


@pytest.mark.parametrize("name, why", [
    ("", "empty"), (SEGMENT * 4 + "x" * 154, "954 bytes"), ("x" * 10_000, "10000 bytes"),
    ("x" * 201, "segment is 201 bytes"), ("a/" + "é" * 101, "segment is 202 bytes"), ("名" * 67, "201 bytes"),
    ("a\ud800", "surrogate"), ("a\x00b", "U+0000"), ("a\rb", "U+000D"), ("a\nb", "U+000A"), ("\x1f", "U+001F"),
    ("a\x7f", "U+007F"), ("a\x9f", "U+009F"), ("a\\b", "backslash"), ("a/", "empty path segment"),
    ("/a", "empty path segment"), ("a//b", "empty path segment"), ("/", "empty path segment"), (".", "'.'"),
    ("..", "'.'"), ("~/a", "'~/'"), ("./a", "'.'"), ("a/./b", "'.'"), ("a/../b", "'.'"), ("a/..", "'.'"),
    ("a/.b", "dot-file"), ("a./b", "'.'")])
def test_illegal_names_and_why(name, why):
    from dss.bundle_manifest import file_name_problem
    assert why in file_name_problem(name)


def test_check_file_names_names_the_problem_and_shortens_the_name():
    from dss.bundle_manifest import check_file_names
    check_file_names([{"name": "a"}, {"name": "b/c"}])
    with pytest.raises(DSSError) as e:
        check_file_names([{"name": "fine"}, {"name": "y" * 10_000}])
    assert (e.value.status, e.value.code) == (400, "illegal_file_name")
    assert "10000 bytes" in e.value.title and len(e.value.title) < 200
