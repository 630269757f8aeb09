"""The local worker's pure parts: handler threads per queue, receive batches, delete batches, and the event filter
of the indexer's subscriptions."""
from __future__ import annotations

import argparse
import json
from queue import SimpleQueue

import pytest

from dss.events.bus import event_filter
from dss.events.worker import QUEUE_CONCURRENCY, _queue_threads, concurrency_of, next_batch, receive_batch


def test_each_queue_has_threads_of_its_own():
    counts = concurrency_of(["sync", "index", "copy"], default=8)
    assert counts == {"sync": QUEUE_CONCURRENCY["sync"], "index": 8, "copy": 8}
    assert concurrency_of(["sync", "index"], default=3, overrides={"sync": 5, "index": 2}) == {"sync": 5, "index": 2}
    assert concurrency_of(["notify"], default=4) == {"notify": 4}  # only the queues polled


def test_a_queue_without_threads_is_refused():
    with pytest.raises(ValueError, match="sync"):
        concurrency_of(["sync"], overrides={"sync": 0})


def test_queue_threads_argument():
    assert _queue_threads("sync=24") == ("sync", 24)
    for text in ("sync", "sync=", "sync=-1", "nope=3", "=3"):
        with pytest.raises(argparse.ArgumentTypeError):
            _queue_threads(text)


def test_receive_batches_stay_within_sqs_and_the_threads():
    assert [receive_batch(n) for n in (1, 2, 3, 8, 24, 30, 100)] == [1, 1, 1, 2, 8, 10, 10]


def test_next_batch_takes_what_is_there_up_to_the_most():
    items: SimpleQueue = SimpleQueue()
    for i in range(13):
        items.put(i)
    assert next_batch(items, 10) == list(range(10))
    assert next_batch(items, 10) == [10, 11, 12]  # does not wait for more once one is there
    items.put(None)
    assert next_batch(items, 10) == [None]


def test_the_indexer_is_sent_bundle_events_only():
    aws, gcp = event_filter("aws", "index"), event_filter("gcp", "index")
    assert aws["FilterPolicyScope"] == gcp["FilterPolicyScope"] == "MessageBody"
    assert json.loads(aws["FilterPolicy"]) == {"Records": {"s3": {"object": {"key": [{"prefix": "bundles/"}]}}}}
    assert json.loads(gcp["FilterPolicy"]) == {"name": [{"prefix": "bundles/"}]}
    assert event_filter("aws", "sync") == event_filter("gcp", "sync") == {}  # replication hears of everything
