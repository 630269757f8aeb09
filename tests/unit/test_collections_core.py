import pytest

from dss.collections import (apply_patch, collection_document, dedupe, describe, link_problem, linked_key,
                             new_items, normalize_item, resolve_fragment)

UUID = "ce55fd51-7833-469b-be0b-5da88ebebfcd"
OTHER = "0ddba11a-0000-4000-8000-000000000000"
VERSION = "2017-06-16T193604.240704Z"


def item(type_="file", uuid=UUID, version=VERSION, **extra):
    return {"type": type_, "uuid": uuid, "version": version, **extra}


def body(contents, **fields):
    return {"name": "n", "description": "d", "details": {}, "contents": contents, **fields}


def test_document_dedupes_in_order_and_records_the_owner():
    a, b = item(), item("bundle", OTHER)
    document = collection_document(body([a, b, dict(reversed(list(a.items()))), b, a]), "me@example.org")
    assert document == {"name": "n", "description": "d", "details": {}, "contents": [a, b],
                        "owner": "me@example.org"}


def test_eight_copies_become_one():
    assert dedupe([item()] * 8) == [item()]


def test_uuids_are_lower_cased_so_spellings_of_one_link_dedupe():
    upper = item(uuid=UUID.upper())
    assert normalize_item(upper) == item()
    assert collection_document(body([upper, item()]), "o")["contents"] == [item()]
    assert upper["uuid"] == UUID.upper()  # the input is not modified


def test_items_differing_in_any_field_are_distinct():
    items = [item(), item(version="2018-01-01T000000.000000Z"), item("bundle"), item("x", fragment="/a"),
             item("x", fragment="/b")]
    assert dedupe(items) == items


def test_patch_replaces_given_fields_only():
    document = collection_document(body([item()], details={"a": 1}), "o")
    patched = apply_patch(document, {"name": "new", "details": {"b": 2}})
    assert patched == {**document, "name": "new", "details": {"b": 2}}
    assert document["name"] == "n"  # a new document; the base version is untouched
    assert apply_patch(document, {}) == document


def test_patch_removes_exact_matches_then_adds_and_dedupes():
    a, b, c = item(), item("bundle", OTHER), item("collection", OTHER)
    document = collection_document(body([a, b]), "o")
    patched = apply_patch(document, {"remove_contents": [a, item("file", OTHER), {**b, "fragment": "/x"}],
                                     "add_contents": [c, c, b]})
    assert patched["contents"] == [b, c]


def test_patch_can_remove_and_re_add_an_item_which_then_moves_to_the_end():
    a, b = item(), item("bundle", OTHER)
    document = collection_document(body([a, b]), "o")
    assert apply_patch(document, {"remove_contents": [a], "add_contents": [a]})["contents"] == [b, a]


def test_patch_matches_removals_whatever_the_uuid_case():
    document = collection_document(body([item()]), "o")
    assert apply_patch(document, {"remove_contents": [item(uuid=UUID.upper())]})["contents"] == []


def test_new_items_are_those_not_already_present():
    a, b = item(), item("bundle", OTHER)
    assert new_items([a], [a, b]) == [b]
    assert new_items([a, b], [b]) == []


@pytest.mark.parametrize("link,key", [
    (item("file"), f"files/{UUID}.{VERSION}"),
    (item("bundle"), f"bundles/{UUID}.{VERSION}"),
    (item("collection"), f"collections/{UUID}.{VERSION}"),
    (item("biomaterial", fragment="/a"), f"files/{UUID}.{VERSION}"),
])
def test_linked_key(link, key):
    assert linked_key(link) == key


@pytest.mark.parametrize("link", [item("file"), item("bundle", fragment="ignored"), item("x", fragment=""),
                                  item("x", fragment="/a/0/~1b")])
def test_links_without_problems(link):
    assert link_problem(link) is None


@pytest.mark.parametrize("link,words", [
    (item("x"), "needs a `fragment`"),
    (item("x", fragment="no-leading-slash"), "not a JSON Pointer"),
    (item(uuid="not-a-uuid"), "not a uuid"),
    (item(version="2017-06-16T19:36:04Z"), "DSS_VERSION"),
])
def test_link_problems(link, words):
    assert words in link_problem(link)


def test_resolve_fragment():
    document = {"a": [{"b/c": 1}], "": 2}
    assert resolve_fragment(document, "/a/0/b~1c") == 1
    assert resolve_fragment(document, "") == document
    assert resolve_fragment(document, "/") == 2
    for missing in ("/a/1", "/z", "/a/0/b~1c/d"):
        with pytest.raises(LookupError, match="does not resolve"):
            resolve_fragment(document, missing)


def test_describe():
    assert describe(item()) == f"file {UUID}.{VERSION}"
    assert describe(item("x", fragment="/a")) == f"x {UUID}.{VERSION}#/a"


def test_an_unresolved_fragment_is_reported_briefly():
    with pytest.raises(LookupError) as error:
        resolve_fragment({"padding": "x" * 10000}, "/missing")
    assert len(str(error.value)) < 200
