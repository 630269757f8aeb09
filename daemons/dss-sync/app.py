"""dss-sync: the Chalice app whose Lambda replicates objects between the replicas (dss.replication).

Trigger: the SQS queue `dss-sync-{stage}`, in batches of 1, reporting partial batch failures; the local worker
calls the same handler. Settings (timeout, memory, concurrency) are in scripts/package_lambdas.py.
"""
import logging
import os

from chalice import Chalice
from dss.events.lambda_entry import sqs_daemon

logging.getLogger().setLevel(os.environ.get("DSS_LOG_LEVEL", "INFO"))

app = Chalice(app_name="dss-sync")
sync = sqs_daemon(app, "sync", batch_size=1)
