"""The documents built from a bundle: the search-index document (§8.2) and the metadata document that
notifications and events carry (§9.3). Pure: the caller reads the manifest and the files' JSON.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

JSON_TYPE = "application/json"
MANIFEST_INDEX_LIMIT = 20000
_NUMBERED = re.compile(r"^(?P<stem>.+)_\d+$")


def normalize_name(name: str) -> str:
    """`donor_organism_0.json` -> `donor_organism_json`, `links.json` -> `links_json`.

    Dots become underscores; a JSON file's numeric suffix is dropped so that numbered files of one kind share a
    key. (The original dropped any last segment, turning `cell_suspension.json` into `cell_json`; only numeric
    suffixes are dropped here.)
    """
    flat = name.replace(".", "_")
    if flat.endswith("_json"):
        stem = flat[:-len("_json")]
        numbered = _NUMBERED.match(stem)
        return (numbered["stem"] if numbered else stem) + "_json"
    return flat


def is_json_file(entry: dict) -> bool:
    return str(entry.get("content-type", "")).startswith(JSON_TYPE)


def group_files(named_json: Iterable[tuple[str, object]]) -> dict[str, list]:
    """{normalized name: [json, ...]}: a list, since several names can normalize alike."""
    files: dict[str, list] = {}
    for name, content in named_json:
        files.setdefault(normalize_name(name), []).append(content)
    return files


@dataclass(frozen=True)
class SchemaInfo:
    type: str
    major: int

    @classmethod
    def of(cls, content: object) -> "SchemaInfo | None":
        """From `describedBy` (…/type/X.Y.Z/name or …/X.Y.Z/type) or the legacy `core` block."""
        if not isinstance(content, dict):
            return None
        described_by = content.get("describedBy")
        if isinstance(described_by, str):
            parts = [p for p in described_by.split("/") if p]
            versions = [p for p in parts if re.fullmatch(r"\d+\.\d+\.\d+", p)]
            if len(versions) == 1 and parts:
                schema_type = parts[-1][:-len(".json")] if parts[-1].endswith(".json") else parts[-1]
                if _usable(schema_type):
                    return cls(schema_type, int(versions[0].split(".")[0]))
        core = content.get("core")
        if isinstance(core, dict) and isinstance(core.get("type"), str) and core.get("schema_version"):
            major = str(core["schema_version"]).split(".")[0]
            if major.isdigit() and _usable(core["type"]):
                return cls(core["type"], int(major))
        return None


def _usable(name: str) -> bool:
    return bool(name) and "." not in name and not name.isdigit()


def shape_descriptor(files: dict[str, list]) -> str | None:
    """A short description of the bundle's schema shape, which picks the index (so shapes never clash)."""
    infos: dict[str, set[SchemaInfo]] = {}
    for key, contents in files.items():
        for content in contents:
            info = SchemaInfo.of(content)
            if info:
                infos.setdefault(key[:-len("_json")] if key.endswith("_json") else key, set()).add(info)
    if not infos:
        return None
    flat = {(name, info) for name, found in infos.items() for info in found}
    majors = {info.major for _, info in flat}
    if len(majors) == 1 and all(name == info.type for name, info in flat):
        return f"v{majors.pop()}"
    parts = sorted(f"{name}.{info.major}" if name == info.type else f"{name}.{info.type}.{info.major}"
                   for name, info in flat)
    return "v." + ".".join(parts)


def index_document(uuid: str, manifest: dict, files: dict[str, list]) -> dict:
    shown_manifest = manifest if len(manifest.get("files", [])) <= MANIFEST_INDEX_LIMIT else {**manifest, "files": []}
    return {"manifest": shown_manifest, "state": "new", "files": files, "uuid": uuid,
            "shape_descriptor": str(shape_descriptor(files))}


def tombstone_index_document(uuid: str, version: str, tombstone: dict) -> dict:
    return {**tombstone, "uuid": uuid, "manifest": {"version": version}}


def metadata_document(event_type: str, uuid: str, version: str, *, manifest: dict | None = None,
                      files: dict[str, list] | None = None, tombstone: dict | None = None) -> dict:
    """The bundle metadata document of notifications and events: CREATE, TOMBSTONE or DELETE."""
    doc: dict[str, Any] = {"event_type": event_type, "bundle_info": {"uuid": uuid, "version": version}}
    if event_type == "CREATE":
        doc.update(manifest=manifest, files=files or {})
    elif event_type == "TOMBSTONE":
        doc.update(tombstone or {})
    return doc
