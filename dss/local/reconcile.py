"""Reconciliation at the start of the local stack: queue again the work whose messages a restart lost.

    python -m dss.local.reconcile        (the stack runs it once its worker polls; settings from the environment)

moto keeps the queues in memory, so stopping the stack drops every message still waiting. What each message
stood for is recorded somewhere that persists, and is queued again from there:

- copy jobs (the 202 path of PUT /files): every RUNNING job of the async-state table (DynamoDB, on disk) goes back
  on the copy queue. The job resumes from its checkpoints; one past its deadline is recorded FAILED.
- replication: every key that one primary bucket holds and the other lacks goes on the sync queue as an operator
  message {source_replica, dest_replica, key}. The two sorted listings are merged page by page, as the replica
  checker walks them, in dependency order (blobs, files, bundles, collections); only listings are read.
- indexing: each replica's indexer journals every bundle version it handled (events/by-id/ markers, see
  dss.events.journal), after indexing it and before notifying subscribers. A bundle version without the marker its
  state calls for (TOMBSTONE when tombstoned, else CREATE) goes on the index queue as its object event: it is
  indexed, journaled and notified. The two sorted listings are walked one uuid at a time.
- the search index (osmem-server, in memory) is rebuilt by `make run` when empty: scripts/reindex.py --if-empty.

Everything is streamed (one page of a listing or a scan in memory at a time) and sent in batches of ten, so memory
stays constant whatever the store holds. A message queued twice is harmless: every handler is idempotent.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import time
from typing import Iterable, Iterator, Mapping

from ..bundle_manifest import VersionListing
from ..events.journal import BY_ID_PREFIX
from ..events.records import gcs_object, s3_record
from ..events.runtime import Deps
from ..identifiers import ObjectId, ObjectIdentifierError
from ..replica_check import KINDS_IN_DEPENDENCY_ORDER, REPLICAS, key_kind, merge_sorted, other
from ..storage.async_state import AsyncState

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
SQS_BATCH = 10  # SendMessageBatch's limit
PROGRESS_EVERY = 10000


class Batcher:
    """Sends message bodies to one queue, ten to a request."""

    def __init__(self, deps: Deps, queue: str):
        self.sqs, self.url = deps.bus.sqs, deps.bus.queue_url(deps.bus.topology.queue(queue))
        self.pending: list[dict] = []
        self.sent = 0

    def add(self, body: dict) -> None:
        self.pending.append(body)
        if len(self.pending) == SQS_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        entries = [{"Id": str(i), "MessageBody": json.dumps(body)} for i, body in enumerate(self.pending)]
        failed = self.sqs.send_message_batch(QueueUrl=self.url, Entries=entries).get("Failed", [])
        if failed:
            raise RuntimeError(f"{len(failed)} messages were refused: {failed[0]}")
        self.sent += len(self.pending)
        self.pending = []


def requeue_copy_jobs(deps: Deps, state: AsyncState) -> int:
    """Queue every RUNNING copy job again (one past its deadline too: its handler then records it FAILED)."""
    batcher = Batcher(deps, "copy")
    for item in state.running(PAGE_SIZE):
        batcher.add({"key": item["key"], "task_id": item["task_id"]})
        logger.info("copy job %s (task %s) queued again", item["key"], item["task_id"])
    batcher.flush()
    return batcher.sent


def one_sided(listings: Mapping[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    """(replica that has it, key) for each DSS key in exactly one of two ascending listings."""
    for key, in_aws, in_gcp in merge_sorted(listings["aws"], listings["gcp"]):
        if in_aws != in_gcp and key_kind(key) is not None:
            yield ("aws" if in_aws else "gcp"), key


def requeue_missing(deps: Deps) -> int:
    batcher = Batcher(deps, "sync")
    walked = 0
    for prefix in KINDS_IN_DEPENDENCY_ORDER:
        listings = {r: deps.replicas[r].store.list(deps.replicas[r].bucket, prefix, page_size=PAGE_SIZE)
                    for r in REPLICAS}
        for source, key in one_sided(listings):
            batcher.add({"source_replica": source, "dest_replica": other(source), "key": key})
            walked += 1
            if walked % PROGRESS_EVERY == 0:
                logger.info("%d keys missing on one replica queued so far (at %s)", walked, key)
    batcher.flush()
    return batcher.sent


def _uuid_of_bundle(key: str) -> str | None:
    try:
        return ObjectId.from_key(key).uuid
    except ObjectIdentifierError:
        return None


def _uuid_of_marker(key: str) -> str:
    return key[len(BY_ID_PREFIX):].split(".", 1)[0]


def unjournaled(bundle_keys: Iterable[str], marker_keys: Iterable[str]) -> Iterator[str]:
    """The bundle version keys whose journal marker is missing, from sorted listings of bundles/ and of
    events/by-id/: a version needs a TOMBSTONE marker when it is tombstoned, else a CREATE one. Memory: one uuid."""
    bundles = itertools.groupby(filter(_uuid_of_bundle, bundle_keys), key=_uuid_of_bundle)
    markers = itertools.groupby(marker_keys, key=_uuid_of_marker)
    marker_uuid, marker_group = next(markers, (None, iter(())))
    for uuid, keys in bundles:
        if uuid is None:  # filtered out above
            continue
        while marker_uuid is not None and marker_uuid < uuid:
            marker_uuid, marker_group = next(markers, (None, iter(())))
        journaled = set(k[len(BY_ID_PREFIX):] for k in marker_group) if marker_uuid == uuid else set()
        listing = VersionListing.of(uuid, keys)
        for version in sorted(listing.versions):
            dead = listing.all_dead or version in listing.dead_versions
            if f"{uuid}.{version}.{'TOMBSTONE' if dead else 'CREATE'}" not in journaled:
                yield ObjectId("bundles", uuid, version).to_key()


def requeue_unindexed(deps: Deps) -> int:
    batcher = Batcher(deps, "index")
    for replica in REPLICAS:
        rs = deps.replicas[replica]
        keys = rs.store.list(rs.bucket, "bundles/", page_size=PAGE_SIZE)
        markers = rs.store.list(rs.bucket, BY_ID_PREFIX, page_size=PAGE_SIZE)
        for key in unjournaled(keys, markers):
            # The index handler reads the bundle itself: the event only names it.
            batcher.add(s3_record(rs.bucket, key, 0, "") if replica == "aws" else gcs_object(rs.bucket, key, 0))
            logger.info("%s of %s queued for indexing: it was never journaled", key, replica)
    batcher.flush()
    return batcher.sent


def main() -> int:
    logging.basicConfig(level=os.environ.get("DSS_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.monotonic()
    deps = Deps.from_env()
    jobs = requeue_copy_jobs(deps, AsyncState(deps.settings.async_state_table))
    logger.info("%d unfinished copy job(s) queued again", jobs)
    missing = requeue_missing(deps)
    logger.info("%d key(s) present on one replica only queued for replication", missing)
    unindexed = requeue_unindexed(deps)
    logger.info("%d bundle version(s) never journaled queued for indexing", unindexed)
    logger.info("reconciliation done in %.1f s", time.monotonic() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
