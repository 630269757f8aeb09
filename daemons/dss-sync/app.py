"""dss-sync: the Lambda that replicates objects between the replicas, from the SQS queue `dss-sync-{stage}`
(see dss.replication)."""
from dss.events.lambda_entry import sqs_batch_handler

handler = sqs_batch_handler("sync")
