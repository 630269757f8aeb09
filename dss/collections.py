"""Collection documents: building, deduplicating, patching and link checks that need no I/O.

A collection version is `{name, description, details, contents, owner}`; `contents` is a list of links
`{type, uuid, version[, fragment]}`. Links of type file, bundle or collection name a stored object; any other
type names a JSON fragment (the JSON Pointer `fragment`) inside the JSON of file `uuid`/`version`.
"""
from __future__ import annotations

import json
from typing import Any, Iterable

import jsonpointer

from .identifiers import ObjectId, is_uuid, is_version

# Link types that name a stored object; every other type is a fragment of a file's JSON.
OBJECT_LINK_TYPES = frozenset({"file", "bundle", "collection"})
DESCRIPTIVE_FIELDS = ("name", "description", "details")


def normalize_item(item: dict[str, Any]) -> dict[str, Any]:
    """A copy with the uuid lower-cased, as stored keys are, so that spellings of one link compare equal."""
    return {**item, "uuid": item["uuid"].lower()}


def _identity(item: dict[str, Any]) -> str:
    # Items are JSON objects: equal items have equal canonical JSON, whatever their key order.
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


def dedupe(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each distinct item once, in order of first appearance."""
    seen: dict[str, dict[str, Any]] = {}
    for item in items:
        seen.setdefault(_identity(item), item)
    return list(seen.values())


def collection_document(body: dict[str, Any], owner: str) -> dict[str, Any]:
    """The stored document of a PUT body: contents normalized and deduplicated, owned by `owner`."""
    return {
        "name": body["name"],
        "description": body["description"],
        "details": body["details"],
        "contents": dedupe(map(normalize_item, body["contents"])),
        "owner": owner,
    }


def apply_patch(document: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The next version: replace the descriptive fields given, drop exact matches of remove_contents, then append
    add_contents, keeping each item once. Items to remove that are absent are ignored."""
    updated = {**document, **{k: patch[k] for k in DESCRIPTIVE_FIELDS if patch.get(k) is not None}}
    removed = {_identity(normalize_item(item)) for item in patch.get("remove_contents") or ()}
    kept = (item for item in document["contents"] if _identity(item) not in removed)
    added = map(normalize_item, patch.get("add_contents") or ())
    updated["contents"] = dedupe([*kept, *added])
    return updated


def new_items(before: Iterable[dict[str, Any]], after: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items of `after` that `before` lacks: the only ones a PATCH must verify."""
    known = {_identity(item) for item in before}
    return [item for item in after if _identity(item) not in known]


def is_object_link(item: dict[str, Any]) -> bool:
    return item["type"] in OBJECT_LINK_TYPES


def linked_key(item: dict[str, Any]) -> str:
    """The key of the object a link names: `{type}s/{uuid}.{version}`, or the file holding a fragment."""
    kind = f"{item['type']}s" if is_object_link(item) else "files"
    return ObjectId(kind, item["uuid"], item["version"]).to_key()


def link_problem(item: dict[str, Any]) -> str | None:
    """What is wrong with a link on its face (before looking anything up), or None."""
    if not is_uuid(item["uuid"]) or not is_version(item["version"]):
        return f"{item['uuid']!r} / {item['version']!r} is not a uuid and a DSS_VERSION"
    if is_object_link(item):
        return None
    fragment = item.get("fragment")
    if fragment is None:
        return f"a link of type {item['type']!r} names a JSON fragment and needs a `fragment` (a JSON Pointer)"
    try:
        jsonpointer.JsonPointer(fragment)
    except jsonpointer.JsonPointerException as e:
        return f"fragment {fragment!r} is not a JSON Pointer: {e}"
    return None


def resolve_fragment(document: Any, fragment: str) -> Any:
    """The value the JSON Pointer `fragment` designates in `document`; LookupError if there is none."""
    try:
        return jsonpointer.resolve_pointer(document, fragment)
    except jsonpointer.JsonPointerException as e:
        # The library's message can quote the whole document; keep only its start.
        raise LookupError(f"fragment {fragment!r} does not resolve: {_shorten(str(e))}") from e


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def describe(item: dict[str, Any]) -> str:
    return f"{item['type']} {item['uuid']}.{item['version']}" + (
        f"#{item['fragment']}" if "fragment" in item and not is_object_link(item) else "")
