"""scripts/tombstone_bundles.py: bulk tombstoning is idempotent, resumable and reports what it could not do."""
from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import uuid as uuidlib

from dss.identifiers import new_version

from .helpers import seed_file_metadata

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "scripts" / "tombstone_bundles.py"


def run(path, *args):
    return subprocess.run([sys.executable, str(SCRIPT), str(path), "--reason", "ticket 42", "--no-progress", *args],
                          capture_output=True, text=True, env=dict(os.environ), timeout=300)


def test_bulk_tombstones(api, replicas, tmp_path):
    version = new_version()
    live = {}
    for replica in ("aws", "gcp"):
        f = seed_file_metadata(replicas, replica, 1, version=version)[0]
        live[replica] = f
    uuids = [str(uuidlib.uuid4()) for _ in range(4)]
    for uuid in uuids:
        for replica in ("aws", "gcp"):
            r = api.request("PUT", f"/v1/bundles/{uuid}", params={"replica": replica, "version": version},
                            auth=True, json={"files": [{**live[replica], "name": "x"}], "creator_uid": 1})
            assert r.status_code == 201
    ghost = str(uuidlib.uuid4())
    ids = tmp_path / "ids.txt"
    ids.write_text(f"# from a ticket\n{uuids[0]}\n{uuids[1].upper()}\n\n{uuids[2]}.{version}\n{ghost}\n")

    first = run(ids)
    assert first.returncode == 1, first.stderr  # the ghost is reported, the rest is done
    counts = {outcome: int(n) for n, outcome in re.findall(r"(\d+) (tombstoned|already|missing)", first.stdout)}
    # A tombstone written on aws may be replicated to gcp before the script writes gcp's: then it is "already".
    assert counts.get("tombstoned", 0) + counts.get("already", 0) == 6 and counts["missing"] == 2, first.stdout
    for uuid in uuids[:3]:
        for replica in ("aws", "gcp"):
            assert api.request("GET", f"/v1/bundles/{uuid}", params={"replica": replica}).status_code == 404
    assert api.request("GET", f"/v1/bundles/{uuids[3]}", params={"replica": "aws"}).status_code == 200

    again = run(ids)  # resume: finished ones are skipped, the ghost is tried again
    assert "6 skipped" in again.stdout and "2 missing" in again.stdout

    fresh_journal = run(ids, "--journal", str(tmp_path / "other.done"))  # idempotent even without a journal
    assert "6 already" in fresh_journal.stdout

    conflicting = subprocess.run([sys.executable, str(SCRIPT), str(ids), "--reason", "another reason",
                                  "--journal", str(tmp_path / "third.done"), "--replica", "aws", "--no-progress"],
                                 capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert conflicting.returncode == 1 and "3 conflict" in conflicting.stdout


def test_bad_ids_are_refused_before_any_write(tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("not-a-uuid\n")
    result = run(ids)
    assert result.returncode != 0 and "line 1" in result.stderr
