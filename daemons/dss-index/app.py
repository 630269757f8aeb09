"""dss-index: the Chalice app whose Lambda indexes bundles and tombstones for search, then queues their notifications (dss.index.indexer).

Trigger: the SQS queue `dss-index-{stage}`, in batches of 10, reporting partial batch failures; the local worker
calls the same handler. Settings (timeout, memory, concurrency) are in scripts/package_lambdas.py.
"""
import logging
import os

from chalice import Chalice

from dss.events.lambda_entry import queue_name, sqs_batch_handler

logging.getLogger().setLevel(os.environ.get("DSS_LOG_LEVEL", "INFO"))

app = Chalice(app_name="dss-index")
handle_batch = sqs_batch_handler("index")


@app.on_sqs_message(queue=queue_name("index"), batch_size=10, name="index")
def index(event) -> dict:
    return handle_batch(event.to_dict(), event.context)
