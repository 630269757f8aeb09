#!/usr/bin/env python
"""Tombstone a list of bundles, as an operator: the bulk form of DELETE /bundles/{uuid}.

    python scripts/tombstone_bundles.py IDS.txt --reason "ticket 1234: withdrawn by submitter"

IDS.txt holds one bundle per line: `uuid` (every version) or `uuid.version` (one version); blank lines and
`#` comments are ignored. Each tombstone is written create-only, so a re-run never changes one already written
(an identical one counts as done; a different one is reported as a conflict). Progress is appended to a
journal (IDS.txt.done by default) as each bundle finishes, so an interrupted run resumes where it stopped.
Settings (buckets, endpoints) come from the environment, as for the API: `source .local/env` locally.
"""
from __future__ import annotations

import argparse
import getpass
import logging
import pathlib
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed

from tqdm import tqdm

from dss.config import Settings
from dss.errors import DSSError
from dss.identifiers import is_uuid, is_version
from dss.storage.bundles import tombstone
from dss.storage.replicas import Replicas

logger = logging.getLogger("tombstone_bundles")

OUTCOMES = ("tombstoned", "already", "missing", "conflict", "error")


def parse_ids(lines) -> list[tuple[str, str | None]]:
    ids, bad = [], []
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        uuid, _, version = text.lower().partition(".")
        version = version or None
        if not is_uuid(uuid) or (version is not None and not is_version(text.partition(".")[2])):
            bad.append(f"line {number}: {line.strip()!r}")
            continue
        ids.append((uuid, text.partition(".")[2] or None))
    if bad:
        raise SystemExit("Not bundle ids (uuid or uuid.version):\n  " + "\n  ".join(bad))
    return list(dict.fromkeys(ids))


class Journal:
    """Lines `replica<TAB>id<TAB>outcome`, appended as work finishes; finished work is skipped on resume."""

    def __init__(self, path: pathlib.Path):
        self.path, self._lock = path, threading.Lock()
        self.finished: set[tuple[str, str]] = set()
        if path.exists():
            for line in path.read_text().splitlines():
                replica, bundle_id, outcome = (line.split("\t") + ["", ""])[:3]
                if outcome in ("tombstoned", "already"):
                    self.finished.add((replica, bundle_id))

    def record(self, replica: str, bundle_id: str, outcome: str, detail: str = "") -> None:
        with self._lock, self.path.open("a") as f:
            f.write(f"{replica}\t{bundle_id}\t{outcome}\t{detail}\n")


def tombstone_one(replicas: Replicas, replica: str, uuid: str, version: str | None, email: str,
                  reason: str) -> tuple[str, str]:
    try:
        written = tombstone(replicas[replica], uuid, version, email=email, reason=reason)
        return ("tombstoned" if written else "already"), ""
    except DSSError as e:
        return {404: "missing", 409: "conflict"}.get(e.status, "error"), e.title
    except Exception as e:  # one bad bundle must not stop the batch; the journal keeps the reason
        logger.exception("failed on %s %s", replica, uuid)
        return "error", f"{type(e).__name__}: {e}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", type=pathlib.Path, help="file of bundle ids, one per line")
    parser.add_argument("--reason", required=True, help="recorded in every tombstone")
    parser.add_argument("--email", default=f"{getpass.getuser()}@operator",
                        help="recorded in every tombstone as the deleting administrator")
    parser.add_argument("--replica", action="append", choices=["aws", "gcp"],
                        help="replica to tombstone in; repeat for both (default: both)")
    parser.add_argument("--journal", type=pathlib.Path, help="progress journal (default: IDS.done)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    ids = parse_ids(args.ids.read_text().splitlines())
    journal = Journal(args.journal or args.ids.with_name(args.ids.name + ".done"))
    replicas = Replicas(Settings.from_env())
    work = [(replica, uuid, version) for replica in (args.replica or ["aws", "gcp"]) for uuid, version in ids
            if (replica, f"{uuid}.{version}" if version else uuid) not in journal.finished]
    counts = dict.fromkeys(OUTCOMES, 0)
    skipped = len(ids) * len(args.replica or ["aws", "gcp"]) - len(work)
    pool = ThreadPoolExecutor(max_workers=args.workers)
    try:
        futures = {pool.submit(tombstone_one, replicas, replica, uuid, version, args.email, args.reason):
                   (replica, f"{uuid}.{version}" if version else uuid) for replica, uuid, version in work}
        with tqdm(total=len(work), unit="bundle", disable=args.no_progress) as bar:
            for future in as_completed(futures):
                replica, bundle_id = futures[future]
                outcome, detail = future.result()
                journal.record(replica, bundle_id, outcome, detail)
                counts[outcome] += 1
                bar.update()
    except KeyboardInterrupt:
        pool.shutdown(wait=True, cancel_futures=True)
        print(f"\nInterrupted. Finished work is in {journal.path}; run the same command again to resume.",
              file=sys.stderr)
        return 130
    pool.shutdown()
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts.items() if n)
    print(f"{summary or 'nothing to do'}; {skipped} skipped as finished in an earlier run (journal {journal.path})")
    return 0 if not (counts["missing"] or counts["conflict"] or counts["error"]) else 1


if __name__ == "__main__":
    sys.exit(main())
