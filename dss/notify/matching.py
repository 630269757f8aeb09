"""Which subscriptions a bundle event matches, and one notify job per match.

The indexer calls `notify_for_event` after it indexed a bundle or a tombstone. JMESPath subscriptions are matched
against the bundle metadata document (§9.3); Elasticsearch subscriptions by running their queries against the
indexed document, in batches (`SearchBackend.matching`). Each job carries a notification id derived from the
subscription, the bundle and the event, so that handling the same event again yields the same id: the delivery
step sends an id once, and subscribers can drop duplicates by `transaction_id`.
"""
from __future__ import annotations

import functools
import json
import logging
import time
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import jmespath
from opensearchpy import NotFoundError, RequestError

from ..config import Settings
from ..identifiers import new_version
from . import QUEUE
from .subscriptions import ELASTICSEARCH, JMESPATH, Subscription, replica_subscriptions

if TYPE_CHECKING:  # the indexer, a layer above, passes its backend in
    from ..index.backend import SearchBackend

logger = logging.getLogger(__name__)

ATTACHMENTS_LIMIT = 128 * 1024
_NAMESPACE = uuidlib.uuid5(uuidlib.NAMESPACE_URL, "https://dss.data.humancellatlas.org/notifications")
_SQS_BATCH = 10
ES_BATCH, ES_PARALLEL = 200, 4  # queries per msearch, msearch requests in flight


def notification_id(subscription_uuid: str, bundle_uuid: str, bundle_version: str, event_type: str) -> str:
    """Stable: the same subscription, bundle version and event always give the same id."""
    return str(uuidlib.uuid5(_NAMESPACE, f"{subscription_uuid}/{bundle_uuid}.{bundle_version}/{event_type}"))


def notify_for_event(deps, replica: str, event_type: str, uuid: str, version: str, metadata_document: dict, *,
                     index_doc_id: str | None, backend: SearchBackend | None = None) -> int:
    """Enqueue a notify job for each subscription of `replica` the event matches; returns how many.

    Elasticsearch subscriptions need the indexed document (`index_doc_id`), queried through `backend`; without it
    only JMESPath ones match.
    """
    if index_doc_id and backend is None:
        raise ValueError("an indexed document is matched through a search backend: pass backend")
    settings: Settings = deps.settings
    subscriptions = replica_subscriptions(settings.subscriptions_table, settings.subscription_cache_seconds)(replica)
    matched = [s for s in subscriptions if s.kind == JMESPATH and jmespath_matches(s.jmespath_query,
                                                                                    metadata_document)]
    queried = [s for s in subscriptions if s.kind == ELASTICSEARCH and s.percolated_query is not None]
    if queried and index_doc_id and backend is not None:
        hits = es_matches(backend, replica, index_doc_id, [s.percolated_query for s in queried])
        matched += [s for s, hit in zip(queried, hits, strict=False) if hit]
    event_timestamp = new_version()
    jobs = [notify_job(s, event_type, uuid, version, metadata_document, event_timestamp, settings.notify_delays)
            for s in matched]
    enqueue(deps.bus, jobs)
    logger.info("%s %s.%s in %s: %d of %d subscriptions matched", event_type, uuid, version, replica, len(jobs),
                len(subscriptions))
    return len(jobs)


def jmespath_matches(query: str | None, document: dict) -> bool:
    if not query:
        return True
    try:
        return bool(_compiled(query).search(document))
    except Exception:  # a query that fails on this document does not match it
        return False


def es_matches(backend: SearchBackend, replica: str, doc_id: str, queries: list[dict]) -> list[bool]:
    """Which queries match the document: batches of `ES_BATCH` queries, `ES_PARALLEL` batches at a time."""
    batches = [queries[i:i + ES_BATCH] for i in range(0, len(queries), ES_BATCH)]
    if len(batches) <= 1:
        return _batch_matches(backend, replica, doc_id, queries)
    with ThreadPoolExecutor(max_workers=min(ES_PARALLEL, len(batches))) as pool:
        results = pool.map(lambda batch: _batch_matches(backend, replica, doc_id, batch), batches)
        return [hit for result in results for hit in result]


def _batch_matches(backend: SearchBackend, replica: str, doc_id: str, queries: list[dict]) -> list[bool]:
    """A query the backend rejects matches nothing and spoils no other: a rejected batch is halved until the
    culprit stands alone (some engines reject a whole msearch for one bad query).
    """
    if not queries:
        return []
    try:
        return backend.matching(replica, doc_id, queries, batch=len(queries))
    except NotFoundError:
        return [False] * len(queries)
    except RequestError as e:
        if len(queries) == 1:
            logger.warning("a subscription's es_query is rejected by the search backend: %s", e)
            return [False]
        half = len(queries) // 2
        return (_batch_matches(backend, replica, doc_id, queries[:half])
                + _batch_matches(backend, replica, doc_id, queries[half:]))


def evaluate_attachments(definitions: dict, document: dict) -> dict:
    """Each attachment's value, `_errors` for those that failed, or one error when the result is too large."""
    values, errors = {}, {}
    for name, definition in definitions.items():
        try:
            values[name] = _compiled(definition["expression"]).search(document)
        except Exception as e:  # an expression may fail on any document; that is the subscriber's to see
            errors[name] = str(e)
    if errors:
        values["_errors"] = errors
    size = len(json.dumps(values).encode())
    if size > ATTACHMENTS_LIMIT:
        return {"_errors": f"Attachments too large ({size} > {ATTACHMENTS_LIMIT})"}
    return values


def notify_job(subscription: Subscription, event_type: str, uuid: str, version: str, metadata_document: dict,
               event_timestamp: str, delays: tuple[int, ...]) -> dict:
    """The job of one notification. The retry schedule travels with it, so a job keeps the schedule it began
    with; attachments are evaluated now, against the document that is at hand only now.
    """
    job = {"notification_id": notification_id(subscription.uuid, uuid, version, event_type),
           "replica": subscription.replica, "owner": subscription.owner, "subscription_uuid": subscription.uuid,
           "event_type": event_type, "bundle_uuid": uuid, "bundle_version": version,
           "event_timestamp": event_timestamp, "attempt": 0, "not_before": time.time() + delays[0],
           "delays": list(delays)}
    # As the original: Elasticsearch subscriptions get attachments for every event, JMESPath ones on CREATE only.
    if subscription.attachments and (subscription.kind == ELASTICSEARCH or event_type == "CREATE"):
        job["attachments"] = evaluate_attachments(subscription.attachments, metadata_document)
    return job


def enqueue(bus, jobs: list[dict]) -> None:
    """Send the jobs, ten to a request, a few requests at a time; raise if any could not be sent."""
    if not jobs:
        return
    url = bus.queue_url(bus.topology.queue(QUEUE))

    def send(batch: list[dict]) -> list:
        entries = [{"Id": str(i), "MessageBody": json.dumps(job), "DelaySeconds": min(900, job["delays"][0])}
                   for i, job in enumerate(batch)]
        return bus.sqs.send_message_batch(QueueUrl=url, Entries=entries).get("Failed", [])

    batches = [jobs[i:i + _SQS_BATCH] for i in range(0, len(jobs), _SQS_BATCH)]
    with ThreadPoolExecutor(max_workers=min(8, len(batches))) as pool:
        failed = [f for failures in pool.map(send, batches) for f in failures]
    if failed:
        # Raising makes the indexer's event come back; the jobs already sent are then sent again with the same
        # notification ids, and delivery sends each id once.
        raise RuntimeError(f"{len(failed)} of {len(jobs)} notify jobs could not be queued: {failed[:3]}")


@functools.lru_cache(maxsize=4096)
def _compiled(expression: str):
    return jmespath.compile(expression)
