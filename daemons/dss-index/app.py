"""dss-index: the Chalice app whose Lambda indexes bundles and tombstones for search, then queues their
notifications (dss.index.indexer).

Trigger: the SQS queue `dss-index-{stage}`, in batches of 10, reporting partial batch failures; the local worker
calls the same handler. Settings (timeout, memory, concurrency) are in scripts/package_lambdas.py.
"""
import logging
import os

from chalice import Chalice
from dss.events.lambda_entry import sqs_daemon

logging.getLogger().setLevel(os.environ.get("DSS_LOG_LEVEL", "INFO"))

app = Chalice(app_name="dss-index")
index = sqs_daemon(app, "index", batch_size=10)
