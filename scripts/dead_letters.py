#!/usr/bin/env python
"""List and re-drive dead-lettered messages of the DSS daemons.

    python scripts/dead_letters.py list    [--queue sync] [--max 100]
    python scripts/dead_letters.py redrive [--queue sync] [--max 100] [--dry-run]

`list` shows messages without consuming them (they become visible again after a short timeout). `redrive` moves
them back to the queue they came from: each is sent there first, then deleted from the dead-letter queue, so an
interruption can duplicate a message but never loses one (the handlers are idempotent).
Settings come from the environment, as for the API: `source .local/env` locally.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from tqdm import tqdm

from dss.config import Settings
from dss.events.bus import Bus, Topology

logger = logging.getLogger("dead_letters")


def receive(bus: Bus, queue_url: str, limit: int, visibility: int):
    """Up to `limit` messages, each kept invisible for `visibility` seconds while we look at it."""
    seen = 0
    while seen < limit:
        batch = bus.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=min(10, limit - seen),
                                        WaitTimeSeconds=1, VisibilityTimeout=visibility,
                                        AttributeNames=["All"]).get("Messages", [])
        if not batch:
            return
        for message in batch:
            seen += 1
            yield message


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "redrive"])
    parser.add_argument("--queue", action="append", help="daemon queue (sync, copy, checkout); default: all")
    parser.add_argument("--max", type=int, default=1000, help="most messages to handle per queue")
    parser.add_argument("--dry-run", action="store_true", help="redrive: show what would move")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    topology = Topology(Settings.from_env().stage)
    bus = Bus(topology)
    total = 0
    for queue in args.queue or list(topology.queues):
        dlq_url = bus.queue_url(topology.dead_letter_queue(queue))
        if args.command == "list" or args.dry_run:
            for message in receive(bus, dlq_url, args.max, visibility=5):
                total += 1
                attrs = message.get("Attributes", {})
                print(json.dumps({"queue": queue, "message_id": message["MessageId"],
                                  "receives": attrs.get("ApproximateReceiveCount"), "body": message["Body"][:500]}))
            continue
        target = bus.queue_url(topology.queue(queue))
        moved = 0
        with tqdm(desc=f"redrive {queue}", unit="msg") as bar:
            for message in receive(bus, dlq_url, args.max, visibility=60):
                bus.sqs.send_message(QueueUrl=target, MessageBody=message["Body"])
                bus.sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
                moved += 1
                bar.update()
        print(f"{queue}: re-drove {moved} message(s)")
        total += moved
    if args.command == "list" or args.dry_run:
        print(f"{total} dead-lettered message(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
