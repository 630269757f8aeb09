"""Subscriptions of both kinds in one DynamoDB table, and the checks a new one must pass.

Table `dss-subscriptions-{stage}`: hash key `owner` (the email), sort key `uuid`; attributes `replica`, `kind`
("elasticsearch" or "jmespath"), `created` and `document` (the request body as JSON, secret included). A global
secondary index on `uuid` tells whose a subscription is (403 for someone else's Elasticsearch subscription).

Matching needs every subscription of a replica for each event. That list is read with one consistent scan and
kept in memory; a generation counter in the table (bumped by every create and delete) tells, with one read per
event, whether the list is still current, so a new subscription is matched from its very first event.
"""
from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid as uuidlib
from dataclasses import dataclass

import jmespath
from jmespath.exceptions import JMESPathError

from ..errors import DSSError
from ..identifiers import new_version
from ..storage.dynamodb_tables import create_table_if_missing, dynamodb

logger = logging.getLogger(__name__)

ELASTICSEARCH, JMESPATH = "elasticsearch", "jmespath"
KINDS = (ELASTICSEARCH, JMESPATH)
LIMIT = 100  # per owner, replica and kind, as the original's per-backend, per-replica count
UUID_INDEX = "uuid-index"
# The generation counter: an item no subscription can collide with (owners are emails, uuids are uuids).
_GENERATION_KEY = {"owner": {"S": "#meta"}, "uuid": {"S": "generation"}}


@dataclass(frozen=True)
class Subscription:
    owner: str
    uuid: str
    replica: str
    kind: str
    document: dict  # the request body as stored, hmac_secret_key included

    @classmethod
    def new(cls, owner: str, replica: str, body: dict) -> "Subscription":
        return cls(owner, str(uuidlib.uuid4()), replica, kind_of(body), dict(body))

    def public(self) -> dict:
        """What the owner is shown: never the secret (not even in the answer to the PUT that set it)."""
        shown = {k: v for k, v in self.document.items() if k != "hmac_secret_key"}
        return {**shown, "owner": self.owner, "uuid": self.uuid, "replica": self.replica}

    @property
    def es_query(self) -> dict | None:
        return self.document.get("es_query")

    @property
    def percolated_query(self):
        """The query an Elasticsearch subscription matches with: `es_query.query`, as the original's percolator
        indexed. Any object is accepted as `es_query` (as by the original), and one without `query` (None here)
        matches nothing."""
        es_query = self.es_query
        return es_query.get("query") if isinstance(es_query, dict) else None

    @property
    def jmespath_query(self) -> str | None:
        return self.document.get("jmespath_query")

    @property
    def attachments(self) -> dict | None:
        return self.document.get("attachments")


def kind_of(body: dict) -> str:
    """A truthy `es_query` makes an Elasticsearch subscription; anything else is a JMESPath one."""
    return ELASTICSEARCH if body.get("es_query") else JMESPATH


def validate(body: dict) -> None:
    """The checks the schema cannot express: attachment names and expressions, the JMESPath query."""
    for name, definition in (body.get("attachments") or {}).items():
        if name.startswith("_"):
            raise DSSError(400, "invalid_attachment_name",
                           f"Attachment names must not start with an underscore ({name}).")
        try:
            jmespath.compile(definition["expression"])
        except _UNCOMPILABLE as e:
            raise DSSError(400, "invalid_attachment_expression",
                           f"The JMESPath expression of attachment {name} does not compile: {_why(e)}") from e
    if kind_of(body) == JMESPATH and body.get("jmespath_query"):  # empty or absent matches every bundle
        try:
            jmespath.compile(body["jmespath_query"])
        except _UNCOMPILABLE as e:
            raise DSSError(400, "invalid_jmespath", f"The JMESPath query does not compile: {_why(e)}") from e


# jmespath's parser recurses once per nesting level: a deep enough expression exhausts Python's stack.
_UNCOMPILABLE = (JMESPathError, RecursionError)


def _why(error: Exception) -> str:
    return "it nests too deep" if isinstance(error, RecursionError) else str(error)


class SubscriptionStore:
    def __init__(self, table: str, client=None):
        self.table = table
        self.client = client or dynamodb()

    def put(self, subscription: Subscription) -> None:
        self.client.put_item(TableName=self.table, Item=_item(subscription),
                             ConditionExpression="attribute_not_exists(#u)", ExpressionAttributeNames={"#u": "uuid"})
        self._bump_generation()

    def get(self, owner: str, uuid: str) -> Subscription | None:
        item = self.client.get_item(TableName=self.table, Key=_key(owner, uuid), ConsistentRead=True).get("Item")
        return _subscription(item) if item else None

    def by_uuid(self, uuid: str) -> Subscription | None:
        """Subscription `uuid`, whoever owns it (through the index, so eventually consistent)."""
        items = self.client.query(TableName=self.table, IndexName=UUID_INDEX, KeyConditionExpression="#u = :u",
                                  ExpressionAttributeNames={"#u": "uuid"},
                                  ExpressionAttributeValues={":u": {"S": uuid}})["Items"]
        return _subscription(items[0]) if items else None

    def delete(self, owner: str, uuid: str) -> bool:
        old = self.client.delete_item(TableName=self.table, Key=_key(owner, uuid), ReturnValues="ALL_OLD")
        self._bump_generation()
        return "Attributes" in old

    def of_owner(self, owner: str, replica: str, kind: str) -> list[Subscription]:
        return [_subscription(item) for item in self._pages("query", **_owned_by(owner, replica, kind))]

    def count(self, owner: str, replica: str, kind: str) -> int:
        return sum(int(page["Count"]) for page in self._responses("query", Select="COUNT",
                                                                   **_owned_by(owner, replica, kind)))

    def of_replica(self, replica: str) -> list[Subscription]:
        return [_subscription(item) for item in self._pages(
            "scan", FilterExpression="#r = :r", ExpressionAttributeNames={"#r": "replica"},
            ExpressionAttributeValues={":r": {"S": replica}})]

    def generation(self) -> int:
        item = self.client.get_item(TableName=self.table, Key=_GENERATION_KEY, ConsistentRead=True).get("Item")
        return int(item["generation"]["N"]) if item else 0

    def _bump_generation(self) -> None:
        self.client.update_item(TableName=self.table, Key=_GENERATION_KEY, UpdateExpression="ADD generation :one",
                                ExpressionAttributeValues={":one": {"N": "1"}})

    def _pages(self, operation: str, **kwargs):
        for response in self._responses(operation, **kwargs):
            yield from response["Items"]

    def _responses(self, operation: str, **kwargs):
        call = getattr(self.client, operation)
        while True:
            response = call(TableName=self.table, ConsistentRead=True, **kwargs)
            yield response
            if "LastEvaluatedKey" not in response:
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]


class ReplicaSubscriptions:
    """Every subscription of a replica, re-read only when the generation moved or `max_age` seconds passed."""

    def __init__(self, store: SubscriptionStore, max_age: float, clock=time.monotonic):
        self.store, self.max_age, self.clock = store, max_age, clock
        self._lock = threading.Lock()
        self._cached: dict[str, tuple[int, float, list[Subscription]]] = {}

    def __call__(self, replica: str) -> list[Subscription]:
        generation = self.store.generation()  # read before the scan: a change during it forces the next reload
        with self._lock:
            cached = self._cached.get(replica)
        if cached and cached[0] == generation and self.clock() - cached[1] < self.max_age:
            return cached[2]
        subscriptions = self.store.of_replica(replica)
        with self._lock:
            self._cached[replica] = (generation, self.clock(), subscriptions)
        return subscriptions


@functools.lru_cache(maxsize=8)
def replica_subscriptions(table: str, max_age: float) -> ReplicaSubscriptions:
    """One cache per process and table."""
    return ReplicaSubscriptions(SubscriptionStore(table), max_age)


def ensure_subscriptions_table(client, name: str) -> bool:
    """Create the subscriptions table, and its index on `uuid`, if missing. True if the table was created now."""
    created = create_table_if_missing(client, name, hash_key="owner", sort_key="uuid", indexes={UUID_INDEX: "uuid"})
    # A table made before the index existed gets it added.
    indices = client.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])
    if not any(index["IndexName"] == UUID_INDEX for index in indices):
        client.update_table(TableName=name, AttributeDefinitions=[{"AttributeName": "uuid", "AttributeType": "S"}],
                            GlobalSecondaryIndexUpdates=[{"Create": {
                                "IndexName": UUID_INDEX, "KeySchema": [{"AttributeName": "uuid", "KeyType": "HASH"}],
                                "Projection": {"ProjectionType": "ALL"}}}])
    return created


def _owned_by(owner: str, replica: str, kind: str) -> dict:
    return {"KeyConditionExpression": "#o = :o", "FilterExpression": "#r = :r AND #k = :k",
            "ExpressionAttributeNames": {"#o": "owner", "#r": "replica", "#k": "kind"},
            "ExpressionAttributeValues": {":o": {"S": owner}, ":r": {"S": replica}, ":k": {"S": kind}}}


def _key(owner: str, uuid: str) -> dict:
    return {"owner": {"S": owner}, "uuid": {"S": uuid}}


def _item(s: Subscription) -> dict:
    return {**_key(s.owner, s.uuid), "replica": {"S": s.replica}, "kind": {"S": s.kind},
            "created": {"S": new_version()}, "document": {"S": json.dumps(s.document)}}


def _subscription(item: dict) -> Subscription:
    return Subscription(item["owner"]["S"], item["uuid"]["S"], item["replica"]["S"], item["kind"]["S"],
                        json.loads(item["document"]["S"]))
