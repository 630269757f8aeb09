#!/usr/bin/env python
"""Rebuild the search index from the buckets alone: the index is derived data.

    python scripts/reindex.py [--replica aws] [--prefix 0a] [--workers 8] [--resume] [--if-empty]

It walks `bundles/` in each replica's primary bucket page by page, one uuid at a time, and indexes every version
(a tombstoned one as its tombstone document), in parallel. Progress is checkpointed to a state file (the last
uuid below which everything is done), so `--resume` continues an interrupted run. No notifications are sent and
no events are journaled unless asked (`--notify`, `--journal`). Settings come from the environment
(`source .local/env` locally).
"""
from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import pathlib
import sys
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from tqdm import tqdm

from dss.bundle_manifest import VersionListing
from dss.events.runtime import Deps
from dss.identifiers import ObjectId, ObjectIdentifierError
from dss.index.backend import SearchBackend
from dss.index.indexer import index_version

logger = logging.getLogger("reindex")


def uuid_groups(rs, prefix: str, start_after: str | None):
    """(uuid, keys) for each bundle uuid, from a streamed listing; memory is one uuid's keys."""
    keys = rs.store.list(rs.bucket, f"bundles/{prefix}", start_after=start_after)
    for uuid, group in itertools.groupby(keys, key=_uuid_of):
        if uuid:
            yield uuid, list(group)


def _uuid_of(key: str) -> str | None:
    try:
        return ObjectId.from_key(key).uuid
    except ObjectIdentifierError:
        return None


def reindex_uuid(deps, rs, uuid: str, keys: list[str], *, notify: bool, journal: bool) -> int:
    listing = VersionListing.of(uuid, keys)
    return sum(index_version(deps, rs, uuid, version, listing, notify=notify, journal=journal)
               for version in sorted(listing.versions))


class Checkpoint:
    """The uuid below which every group is done, even though groups finish out of order."""

    def __init__(self, path: pathlib.Path, replica: str):
        self.path, self.replica = path, replica
        self._pending: list[str] = []
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def load(self) -> str | None:
        if self.path.exists():
            return json.loads(self.path.read_text()).get(self.replica)
        return None

    def started(self, uuid: str) -> None:
        with self._lock:
            self._pending.append(uuid)

    def finished(self, uuid: str) -> None:
        with self._lock:
            self._done.add(uuid)
            low = None
            while self._pending and self._pending[0] in self._done:
                low = self._pending.pop(0)
                self._done.discard(low)
            if low:
                state = json.loads(self.path.read_text()) if self.path.exists() else {}
                state[self.replica] = f"bundles/{low}.~"  # sorts after every key of that uuid
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(state))
                tmp.replace(self.path)


def reindex_replica(deps, replica: str, args) -> tuple[int, int]:
    rs = deps.replicas[replica]
    checkpoint = Checkpoint(args.state, replica)
    start_after = checkpoint.load() if args.resume else None
    bundles = changed = 0
    with ThreadPoolExecutor(max_workers=args.workers) as pool, \
            tqdm(desc=f"reindex {replica}", unit="bundle", disable=args.no_progress) as bar:
        running = set()
        for uuid, keys in uuid_groups(rs, args.prefix, start_after):
            checkpoint.started(uuid)
            future = pool.submit(reindex_uuid, deps, rs, uuid, keys, notify=args.notify, journal=args.journal)
            future.uuid = uuid
            running.add(future)
            if len(running) >= args.workers * 4:  # bounded: the listing is not read far ahead of the work
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    changed += f.result()
                    bundles += 1
                    checkpoint.finished(f.uuid)
                    bar.update()
        for f in running:
            changed += f.result()
            bundles += 1
            checkpoint.finished(f.uuid)
            bar.update()
    return bundles, changed


def default_state_path() -> pathlib.Path:
    """In the local stack's directory (never the working directory, which may be a repository's root)."""
    return pathlib.Path(os.environ.get("DSS_LOCAL_DIR") or ".local") / "reindex-state.json"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replica", action="append", choices=["aws", "gcp"], help="default: both")
    parser.add_argument("--prefix", default="", help="only bundle uuids starting with this")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--state", type=pathlib.Path, default=default_state_path(),
                        help="checkpoint file (default: reindex-state.json in $DSS_LOCAL_DIR, else in .local)")
    parser.add_argument("--resume", action="store_true", help="continue after the last checkpoint")
    parser.add_argument("--if-empty", action="store_true",
                        help="only rebuild a replica whose index is empty while its bucket holds bundles")
    parser.add_argument("--notify", action="store_true", help="also notify subscribers")
    parser.add_argument("--journal", action="store_true", help="also journal events")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    deps = Deps.from_env()
    backend = SearchBackend(deps.settings)
    for replica in args.replica or ["aws", "gcp"]:
        if args.if_empty:
            rs = deps.replicas[replica]
            has_bundles = next(iter(rs.store.list(rs.bucket, "bundles/", page_size=1)), None) is not None
            if backend.count(replica) or not has_bundles:
                print(f"{replica}: index in place or no bundles; nothing to rebuild")
                continue
            print(f"{replica}: the search index is empty but the bucket holds bundles: rebuilding it from the bucket")
        bundles, changed = reindex_replica(deps, replica, args)
        print(f"{replica}: {bundles} bundle uuid(s) walked, {changed} document(s) written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
