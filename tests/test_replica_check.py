"""scripts/check_replicas.py against the local stack: divergences are made on purpose, straight in the buckets.

The divergences are written through a Replicas that does not announce writes, so the stack's worker does not
replicate them away. Each test works under a fresh random uuid prefix (and its own blobs), so it sees only its own
objects.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import secrets
import subprocess
import sys
import uuid as uuidlib

import pytest

from dss.checksums import compute_checksums_of_bytes
from dss.file_metadata import file_metadata_document
from dss.identifiers import file_key, new_version
from dss.storage.replicas import Replicas

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "check_replicas.py"
BOTH = ("aws", "gcp")


@pytest.fixture(scope="module")
def quiet(settings) -> Replicas:
    """Writes that are not announced: the worker does not see them, so the divergences stay."""
    return Replicas(dataclasses.replace(settings, publish_write_events=False))


class World:
    """Objects of one test: uuids under a fresh prefix, blobs of bytes unique to it."""

    def __init__(self, replicas: Replicas):
        self.replicas = replicas
        self.prefix = secrets.token_hex(4)
        self.version = new_version()
        self.blobs: list[str] = []

    def uuid(self) -> str:
        return f"{self.prefix}{str(uuidlib.uuid4())[8:]}"

    def put(self, replica: str, key: str, data: bytes, content_type="application/json") -> None:
        rs = self.replicas[replica]
        rs.store.put(rs.bucket, key, data, content_type=content_type)

    def delete(self, replica: str, key: str) -> None:
        rs = self.replicas[replica]
        rs.store.delete(rs.bucket, key)

    def get(self, replica: str, key: str) -> bytes:
        rs = self.replicas[replica]
        return rs.store.get(rs.bucket, key)

    def blob(self, data: bytes, on=BOTH) -> str:
        key = compute_checksums_of_bytes(data).blob_key()
        self.blobs.append(key)
        for replica in on:
            self.put(replica, key, data, "application/octet-stream")
        return key

    def file(self, name: str, *, on=BOTH, blob_on=BOTH, uuid: str | None = None, **overrides) -> str:
        """A file (metadata and blob); returns its metadata key."""
        data = f"{self.prefix} {name}".encode()
        self.blob(data, on=blob_on)
        document = {**file_metadata_document(compute_checksums_of_bytes(data), size=len(data),
                                             content_type="text/plain", creator_uid=1, version=self.version),
                    **overrides}
        key = file_key(uuid or self.uuid(), self.version)
        for replica in on:
            self.put(replica, key, json.dumps(document).encode())
        return key

    def bundle(self, file_keys: list[str], on=BOTH) -> str:
        files = [{"name": k, "uuid": k[6:42], "version": self.version, "indexed": False} for k in file_keys]
        key = f"bundles/{self.uuid()}.{self.version}"
        for replica in on:
            self.put(replica, key, json.dumps({"format": "0.0.1", "version": self.version, "files": files,
                                               "creator_uid": 1}).encode())
        return key

    def prefixes(self, *kinds: str) -> list[str]:
        args = []
        for kind in kinds:
            for prefix in self.blobs if kind == "blobs" else [f"{kind}/{self.prefix}"]:
                args += ["--prefix", prefix]
        return args

    def snapshot(self, kinds=("blobs", "files", "bundles")) -> dict:
        """Every object of this world in both replicas, by content hash."""
        state = {}
        for replica in BOTH:
            rs = self.replicas[replica]
            for prefix in self.prefixes(*kinds)[1::2]:
                for key in rs.store.list(rs.bucket, prefix):
                    state[replica, key] = hashlib.sha256(rs.store.get(rs.bucket, key)).hexdigest()
        return state


def run(*args, timeout=300):
    result = subprocess.run([sys.executable, str(SCRIPT), "--no-progress", *args], capture_output=True, text=True,
                            env=dict(os.environ), timeout=timeout)
    return result, [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def brief(findings) -> set[tuple]:
    return {(f["class"], f["key"], f.get("replica"), f.get("source"), f.get("dependency")) for f in findings}


def diverge(world: World) -> tuple[dict, set]:
    """Every kind of divergence the checker must find; returns the keys and the expected findings."""
    k = {"consistent": world.file("consistent")}
    k["only_aws"] = world.file("only on aws", on=["aws"], blob_on=["aws"])
    k["only_gcp"] = world.file("only on gcp", on=["gcp"], blob_on=["gcp"])
    k["bad_blob"] = world.file("bad blob on gcp")
    k["orphan"] = world.file("blob only on aws", blob_on=["aws"])
    k["meta"] = world.file("metadata differs")
    world.put("gcp", k["meta"], json.dumps({**json.loads(world.get("aws", k["meta"])), "creator_uid": 2}).encode())
    k["bundle"] = world.bundle([k["consistent"], k["only_aws"]])
    blob = {name: compute_checksums_of_bytes(f"{world.prefix} {text}".encode()).blob_key() for name, text in [
        ("only_aws", "only on aws"), ("only_gcp", "only on gcp"), ("bad_blob", "bad blob on gcp"),
        ("orphan", "blob only on aws")]}
    world.put("gcp", blob["bad_blob"], b"not the bytes the key names", "application/octet-stream")
    expected = {
        ("missing", blob["only_aws"], "gcp", "aws", None),
        ("missing", blob["only_gcp"], "aws", "gcp", None),
        ("differs", blob["bad_blob"], "gcp", "aws", None),
        ("missing", blob["orphan"], "gcp", "aws", None),
        ("missing", k["only_aws"], "gcp", "aws", None),
        ("missing", k["only_gcp"], "aws", "gcp", None),
        ("orphaned", k["orphan"], "gcp", "aws", blob["orphan"]),
        ("differs", k["meta"], None, None, None),
        ("orphaned", k["bundle"], "gcp", "aws", k["only_aws"]),
    }
    return k, expected


def test_dry_run_finds_every_kind_of_divergence_and_writes_nothing(quiet, tmp_path):
    world = World(quiet)
    keys, expected = diverge(world)
    before = world.snapshot()

    result, findings = run(*world.prefixes("blobs", "files", "bundles"), "--journal", str(tmp_path / "j"))
    assert result.returncode == 1, result.stderr
    assert brief(findings) == expected
    directions = {f["key"]: f["direction"] for f in findings if f["class"] == "missing"}
    assert directions[keys["only_aws"]] == "present on aws, missing on gcp"
    assert directions[keys["only_gcp"]] == "present on gcp, missing on aws"
    assert all("repair" not in f for f in findings)
    assert "13 keys walked: 4 consistent" in result.stderr  # 6 blobs, 6 files, 1 bundle
    assert "0 repaired, 9 divergences remain" in result.stderr
    assert world.snapshot() == before


def test_repair_fixes_everything_in_dependency_order(quiet, tmp_path):
    world = World(quiet)
    keys, expected = diverge(world)
    prefixes = world.prefixes("blobs", "files", "bundles")

    result, findings = run(*prefixes, "--repair", "--journal", str(tmp_path / "j"))
    assert result.returncode == 1, result.stderr  # the metadata difference is a human's call
    by_key = {(f["class"], f["key"]): f for f in findings}
    assert by_key["differs", keys["meta"]]["repair"].startswith("failed: report only")
    assert all(f["repair"] == "repaired" for f in findings if f["key"] != keys["meta"]), findings
    # Blobs were walked first, so the orphan's blob was already back when its file metadata was checked.
    assert ("orphaned", keys["orphan"]) not in by_key and ("orphaned", keys["bundle"]) not in by_key
    assert brief(f for f in findings if f["class"] != "orphaned") == {e for e in expected if e[0] != "orphaned"}

    result, findings = run(*prefixes, "--repair", "--repair-metadata-from", "aws", "--journal", str(tmp_path / "j"))
    assert result.returncode == 0, result.stderr
    assert brief(findings) == {("differs", keys["meta"], None, None, None)}
    assert findings[0]["repair"] == "repaired"

    result, findings = run(*prefixes, "--journal", str(tmp_path / "j"))
    assert (result.returncode, findings) == (0, []), result.stderr
    assert world.get("gcp", keys["meta"]) == world.get("aws", keys["meta"])
    bad_blob = next(e[1] for e in expected if e[0] == "differs" and e[1].startswith("blobs/"))
    assert world.get("gcp", bad_blob) == f"{world.prefix} bad blob on gcp".encode()


def test_repair_brings_dependencies_along_and_reports_what_it_cannot_fix(quiet, tmp_path):
    world = World(quiet)
    lone = world.file("file and blob only on aws", on=["aws"], blob_on=["aws"])  # its blob is outside the walk
    ghost = file_key(world.uuid(), world.version)  # in neither replica
    dangling = world.bundle([ghost])
    corrupt = world.blob(b"the only copy is bad " + world.prefix.encode(), on=[])
    world.put("aws", corrupt, b"something else entirely", "application/octet-stream")

    prefixes = ["--prefix", f"files/{world.prefix}", "--prefix", f"bundles/{world.prefix}", "--prefix", corrupt]
    result, findings = run(*prefixes, "--repair", "--journal", str(tmp_path / "j"))
    assert result.returncode == 1, result.stderr
    assert brief(findings) == {("missing", lone, "gcp", "aws", None),
                               ("orphaned", dangling, "aws", None, ghost),
                               ("orphaned", dangling, "gcp", None, ghost),
                               ("missing", corrupt, "gcp", None, None)}
    outcome = {(f["key"], f.get("replica")): f["repair"] for f in findings}
    assert outcome[lone, "gcp"] == "repaired"
    assert outcome[dangling, "aws"] == outcome[corrupt, "gcp"] == "failed: no good copy to repair from"
    assert world.get("gcp", lone) == world.get("aws", lone)
    assert not quiet["gcp"].store.exists(quiet["gcp"].bucket, corrupt)  # a bad copy is never spread


def test_min_age_skips_what_may_still_be_replicating(quiet, tmp_path):
    world = World(quiet)
    on_aws, on_gcp = world.file("fresh", on=["aws"]), world.file("fresh too", on=["gcp"])
    young, findings = run("--prefix", f"files/{world.prefix}", "--min-age", "3600", "--journal", str(tmp_path / "j"))
    assert (young.returncode, findings) == (0, []), young.stderr
    assert "2 skipped as younger than --min-age" in young.stderr
    old, findings = run("--prefix", f"files/{world.prefix}", "--min-age", "0", "--journal", str(tmp_path / "j"))
    assert old.returncode == 1 and brief(findings) == {("missing", on_aws, "gcp", "aws", None),
                                                       ("missing", on_gcp, "aws", "gcp", None)}


def paged_world(quiet, count: int = 25) -> tuple[World, set]:
    """`count` files sharing one blob; every third only on aws, every fifth (but not third) only on gcp."""
    world = World(quiet)
    world.blob(f"{world.prefix} shared".encode())
    expected = set()
    for i in range(count):
        on = ["aws"] if i % 3 == 0 else ["gcp"] if i % 5 == 0 else BOTH
        key = world.file("shared", on=on, uuid=f"{world.prefix}-{i:04d}-0000-0000-000000000000")
        if len(on) == 1:
            expected.add(("missing", key, "gcp" if on == ["aws"] else "aws", on[0], None))
    return world, expected


def test_paging_across_many_keys(quiet, tmp_path):
    world, expected = paged_world(quiet)
    result, findings = run("--prefix", f"files/{world.prefix}", "--page-size", "10", "--journal",
                           str(tmp_path / "j"))
    assert result.returncode == 1, result.stderr
    assert brief(findings) == expected and len(findings) == len(expected)
    assert "25 keys walked: 13 consistent" in result.stderr


def test_resume_continues_after_the_checkpoint(quiet, tmp_path):
    world, expected = paged_world(quiet)
    bundle = world.bundle([f"files/{world.prefix}-0001-0000-0000-000000000000.{world.version}"], on=["gcp"])
    expected.add(("missing", bundle, "aws", "gcp", None))
    journal, report = tmp_path / "journal.json", tmp_path / "report.jsonl"
    common = ["--prefix", f"bundles/{world.prefix}", "--prefix", f"files/{world.prefix}", "--page-size", "3",
              "--checkpoint-every", "1", "--journal", str(journal), "--report", str(report)]

    first, _ = run(*common, "--max-keys", "10")
    assert first.returncode == 3, first.stderr
    state = json.loads(journal.read_text())
    assert state["summary"]["walked"] == 10 and not state["finished"]
    assert state["last_key"].startswith(f"files/{world.prefix}-0009-")
    early = [json.loads(line) for line in report.read_text().splitlines()]
    assert brief(early) == {e for e in expected if e[1].startswith("files/") and int(e[1][15:19]) < 10}

    second, _ = run(*common, "--resume")
    assert second.returncode == 1, second.stderr
    findings = [json.loads(line) for line in report.read_text().splitlines()]
    assert len(findings) == len(expected) and brief(findings) == expected  # the union, each once
    assert "26 keys walked" in second.stderr  # the files first, then the bundle
    assert json.loads(journal.read_text())["finished"]

    again, _ = run(*common, "--resume")  # a finished walk is not walked again
    assert again.returncode == 1 and "finished earlier" in again.stderr

    other_walk, _ = run("--prefix", "files/", "--journal", str(journal), "--resume")
    assert other_walk.returncode == 2 and "is of a walk of" in other_walk.stderr
