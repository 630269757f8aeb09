"""dss-copy: the Lambdas of the large-file copy state machine (copy-file.asl.json), and its launcher.

In AWS the copy queue's consumer is `launch`: it starts one execution per job, named after the task id, so a
redelivered message cannot start a second one. Each Task state of the machine invokes one handler below, and each
handler calls the same step function of dss.storage.copy_jobs that the local worker runs in one process.

This is the Chalice app `dss-copy`: each step is a pure Lambda `dss-copy-{stage}-<name>`, and Terraform
(infra/stepfunctions.tf) substitutes `${<Name>LambdaArn}` in the definition with the ARN of the function `<name>`
(Setup -> setup, CopyParts -> copy_parts, ...). `launch` is wired to the copy queue and reports partial batch
failures.
"""
from __future__ import annotations

import json
import logging
import os

import boto3

from chalice import Chalice
from dss.events import lambda_entry
from dss.events.lambda_entry import deps
from dss.storage import copy_jobs

logger = logging.getLogger(__name__)
logging.getLogger().setLevel(os.environ.get("DSS_LOG_LEVEL", "INFO"))

app = Chalice(app_name="dss-copy")

# Time kept back from a Lambda's budget, so a batch of part copies stops cleanly and is called again.
SAFETY_SECONDS = 60

def _step(function, event: dict, **kwargs) -> dict:
    """Run one step; a permanent failure is recorded at once (with its HTTP status), then raised for Catch."""
    try:
        return function(event, deps(), **kwargs) or {}
    except copy_jobs.CopyFailed as e:
        copy_jobs.record_failure(event, deps(), e.failure)
        raise


@app.lambda_function(name="setup")
def setup(event: dict, context=None) -> dict:
    return _step(copy_jobs.setup, event)


@app.lambda_function(name="copy_parts")
def copy_parts(event: dict, context=None) -> dict:
    budget = context.get_remaining_time_in_millis() / 1000 - SAFETY_SECONDS if context else None
    return _step(copy_jobs.copy_parts, event, budget_seconds=budget)


@app.lambda_function(name="finalize")
def finalize(event: dict, context=None) -> dict:
    return _step(copy_jobs.finalize, event)


@app.lambda_function(name="write_metadata")
def write_metadata(event: dict, context=None) -> dict:
    return _step(copy_jobs.write_metadata, event)


@app.lambda_function(name="record_failure")
def record_failure(event: dict, context=None) -> dict:
    """The Catch path: record the error unless a step already recorded a more precise failure."""
    error = event.get("error") or {}
    reason = f"{error.get('Error', 'Error')}: {error.get('Cause', '')}"[:1000]
    copy_jobs.record_failure(event, deps(), copy_jobs.copy_failed(reason))
    return {}


def launch(event: dict, context=None) -> dict:
    """The copy queue's consumer (an SQS batch): one state machine execution per job, named after its task id."""
    sfn = boto3.client("stepfunctions")
    failures = []
    for record in event.get("Records", []):
        body = json.loads(record["body"])
        try:
            sfn.start_execution(stateMachineArn=os.environ["DSS_COPY_STATE_MACHINE_ARN"], name=body["task_id"],
                                input=json.dumps({"key": body["key"], "task_id": body["task_id"]}))
        except sfn.exceptions.ExecutionAlreadyExists:
            logger.info("execution %s exists already", body["task_id"])
        except Exception:
            logger.exception("could not start the copy of %s", body.get("key"))
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}


@app.on_sqs_message(queue=lambda_entry.queue_name("copy"), batch_size=10,
                    name="launch")
def launch_batch(event) -> dict:
    return launch(event.to_dict(), event.context)
