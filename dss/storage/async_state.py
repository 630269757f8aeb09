"""The state of background jobs (the large-file copies of PUT /files): a DynamoDB table, one item per job key.

Items (hash key `key`, e.g. `files/{uuid}.{version}`) carry `status` (RUNNING, SUCCEEDED or FAILED), the job's
`task_id`, what the job needs to run and resume (its inputs and checkpoints), progress counters, a `failure`
{status, code, title} when it failed, ISO `created`/`updated` times, a `deadline` and the TTL attribute `ttl`
(epoch seconds; DynamoDB deletes the item 10 days after its last update).

The key is global across replicas, as in the original DSS: a failed copy is reported by HEAD and GET /files on
either replica, and one file version has at most one copy running, whichever replica it is copied into.

Every write after the first is conditional on the item's `task_id` and on the job still RUNNING, so a job that
was superseded (a new PUT after a failure) or already finished can never overwrite its successor's state.
"""
from __future__ import annotations

import datetime
import decimal
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from .dynamodb_tables import create_table_if_missing, dynamodb

HASH_KEY = "key"
TTL_ATTRIBUTE = "ttl"
TTL_SECONDS = 10 * 24 * 3600
RUNNING, SUCCEEDED, FAILED = "RUNNING", "SUCCEEDED", "FAILED"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def ensure_table(client, name: str) -> bool:
    """Create the table if it is missing (on-demand capacity, TTL on `ttl`). True if it was created now."""
    return create_table_if_missing(client, name, hash_key=HASH_KEY, ttl_attribute=TTL_ATTRIBUTE)


@dataclass(frozen=True)
class Failure:
    """Why a job failed, as the HTTP problem HEAD and GET /files answer with."""
    status: int
    code: str
    title: str

    def as_dict(self) -> dict:
        return {"status": self.status, "code": self.code, "title": self.title}


def _item(attributes: dict) -> dict:
    return _plain({k: _deserializer.deserialize(v) for k, v in attributes.items()})


def _plain(value):
    """DynamoDB numbers come back as Decimal; every number this table holds is an integer."""
    if isinstance(value, decimal.Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def iso_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).isoformat(timespec="seconds")


class AsyncState:
    def __init__(self, table: str, client=None, clock: Callable[[], float] = time.time):
        self.table = table
        self.client = client or dynamodb()
        self.clock = clock

    def get(self, key: str) -> dict | None:
        item = self.client.get_item(TableName=self.table, Key=self._key(key), ConsistentRead=True).get("Item")
        return _item(item) if item else None

    def running(self, page_size: int = 1000) -> Iterator[dict]:
        """Every RUNNING job, scanned a page at a time (the local stack queues them again when it starts)."""
        kwargs = {"TableName": self.table, "ConsistentRead": True, "Limit": page_size,
                  "FilterExpression": "#s = :running", "ExpressionAttributeNames": {"#s": "status"},
                  "ExpressionAttributeValues": self._serialize({":running": RUNNING})}
        while True:
            response = self.client.scan(**kwargs)
            yield from map(_item, response["Items"])
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def create(self, key: str, task_id: str, fields: dict, *, timeout: int, replacing: str | None = None) -> bool:
        """A new RUNNING job; False if the key is taken (or, with `replacing`, no longer holds that task)."""
        now = self.clock()
        item = {**fields, HASH_KEY: key, "task_id": task_id, "status": RUNNING, "created": iso_time(now),
                "updated": iso_time(now), "deadline": int(now + timeout), "attempts": 0,
                TTL_ATTRIBUTE: int(now + TTL_SECONDS)}
        if replacing is None:
            condition = {"ConditionExpression": "attribute_not_exists(#k)",
                         "ExpressionAttributeNames": {"#k": HASH_KEY}}
        else:
            condition = {"ConditionExpression": "task_id = :old",
                         "ExpressionAttributeValues": self._serialize({":old": replacing})}
        try:
            self.client.put_item(TableName=self.table, Item=self._serialize(item), **condition)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def update(self, key: str, task_id: str, *, add: dict[str, int] | None = None,
               if_absent: str | None = None, if_equal: dict | None = None, **fields) -> dict | None:
        """Set `fields` (and add to the counters in `add`) on a RUNNING job of this task.

        `if_absent` names an attribute that must not exist yet; `if_equal` holds attributes that must have these
        values. Returns the updated item, or None when a condition failed.
        """
        now = self.clock()
        fields = {**fields, "updated": iso_time(now), TTL_ATTRIBUTE: int(now + TTL_SECONDS)}
        names: dict[str, str] = {}
        values: dict[str, Any] = {":task": task_id}
        sets: list[str] = []
        adds: list[str] = []
        for i, (name, value) in enumerate(fields.items()):
            names[f"#f{i}"], values[f":f{i}"] = name, value
            sets.append(f"#f{i} = :f{i}")
        for i, (name, value) in enumerate((add or {}).items()):
            names[f"#a{i}"], values[f":a{i}"] = name, value
            adds.append(f"#a{i} :a{i}")
        names["#status"], values[":running"] = "status", RUNNING
        conditions = ["task_id = :task", "#status = :running"]
        if if_absent:
            names["#absent"] = if_absent
            conditions.append("attribute_not_exists(#absent)")
        for i, (name, value) in enumerate((if_equal or {}).items()):
            names[f"#e{i}"], values[f":e{i}"] = name, value
            conditions.append(f"#e{i} = :e{i}")
        expression = "SET " + ", ".join(sets) + (" ADD " + ", ".join(adds) if adds else "")
        try:
            response = self.client.update_item(
                TableName=self.table, Key=self._key(key), UpdateExpression=expression,
                ConditionExpression=" AND ".join(conditions), ExpressionAttributeNames=names,
                ExpressionAttributeValues=self._serialize(values), ReturnValues="ALL_NEW")
        except self.client.exceptions.ConditionalCheckFailedException:
            return None
        return _item(response["Attributes"])

    def finish(self, key: str, task_id: str, status: str, failure: Failure | None = None) -> bool:
        """Mark the job SUCCEEDED or FAILED. False if it was not this task's RUNNING job any more."""
        extra: dict[str, Any] = {"failure": failure.as_dict()} if failure else {}
        return self.update(key, task_id, status=status, **extra) is not None

    def delete(self, key: str, task_id: str) -> None:
        try:
            self.client.delete_item(TableName=self.table, Key=self._key(key), ConditionExpression="task_id = :t",
                                    ExpressionAttributeValues=self._serialize({":t": task_id}))
        except self.client.exceptions.ConditionalCheckFailedException:
            pass

    @staticmethod
    def _serialize(values: dict) -> dict:
        return {k: _serializer.serialize(v) for k, v in values.items()}

    def _key(self, key: str) -> dict:
        return {HASH_KEY: {"S": key}}
