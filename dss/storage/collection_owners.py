"""Who owns each collection uuid, and which collection versions each owner has: a DynamoDB table, so that
ownership is decided atomically and listing never scans the buckets.

Two kinds of item share the table's keys, hash `owner` and sort `uuid_version`:
- a version entry per collection version: `owner` = the email, `uuid_version` = `"{uuid}.{version}"`; created
  (conditionally, never overwritten) with the version, deleted when the collection is deleted;
- a claim per uuid: `owner` = `"collection:{uuid}"`, `uuid_version` = `"owner"`, `email` = its owner. Created
  once, create-only, before the first version is written, so that of users racing for a new uuid exactly one owns
  it; kept after a delete, as the uuid cannot be used again. The hash key is never an email (no `@`, and `:` is
  not allowed unquoted in an address), so claims never show up in an owner's listing.
Collections written before claims existed have none: their documents stay the authority, and their owner's next
PUT writes the claim.
"""
from __future__ import annotations

import itertools
import logging
import time
from typing import Any

from .dynamodb_tables import create_table_if_missing, dynamodb  # noqa: F401 (dynamodb: imported from here too)

logger = logging.getLogger(__name__)

HASH_KEY = "owner"
SORT_KEY = "uuid_version"
CLAIM_PREFIX = "collection:"
CLAIM_SORT_VALUE = "owner"
BATCH_WRITE_LIMIT = 25  # DynamoDB's maximum per BatchWriteItem
UNPROCESSED_RETRIES = 8


def ensure_table(client, name: str) -> bool:
    """Create the table if it is missing (on-demand capacity). True if it was created now."""
    return create_table_if_missing(client, name, hash_key=HASH_KEY, sort_key=SORT_KEY)


class CollectionOwners:
    def __init__(self, table: str, client=None):
        self.table = table
        self.client = client or dynamodb()

    def add(self, owner: str, uuid: str, version: str) -> None:
        """Register a version; registering it again is a no-op (the condition keeps the first item)."""
        try:
            self.client.put_item(TableName=self.table, Item=self._key(owner, f"{uuid}.{version}"),
                                 ConditionExpression="attribute_not_exists(#s)",
                                 ExpressionAttributeNames={"#s": SORT_KEY})
        except self.client.exceptions.ConditionalCheckFailedException:
            pass

    def claim(self, uuid: str, email: str) -> str:
        """Make `email` the owner of `uuid` unless it has one already; the owner either way. Create-only: of
        callers racing for a new uuid, exactly one write succeeds, and everyone reads that one's email."""
        key = self._key(CLAIM_PREFIX + uuid, CLAIM_SORT_VALUE)
        try:
            self.client.put_item(TableName=self.table, Item={**key, "email": {"S": email}},
                                 ConditionExpression="attribute_not_exists(#s)",
                                 ExpressionAttributeNames={"#s": SORT_KEY})
            logger.info("collection %s claimed by its first writer", uuid)
            return email
        except self.client.exceptions.ConditionalCheckFailedException:
            pass
        return self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True)["Item"]["email"]["S"]

    def page(self, owner: str, start_at: int, per_page: int) -> tuple[list[tuple[str, str]], bool]:
        """Entries start_at .. start_at+per_page-1 of the owner's (uuid, version) pairs in key order, and whether
        more follow. Skipped entries are only counted (Select=COUNT), never returned, so memory stays O(per_page).
        """
        start_key, exhausted = self._skip(owner, start_at)
        if exhausted:
            return [], False
        # One entry more than asked for tells whether another page follows, so no page is ever empty.
        items = list(itertools.islice(self._all(owner, start_key, Limit=per_page + 1), per_page + 1))
        entries = [tuple(item[SORT_KEY]["S"].split(".", 1)) for item in items[:per_page]]
        return entries, len(items) > per_page

    def remove_uuid(self, owner: str, uuid: str) -> int:
        """Delete every version of `uuid` registered to `owner`; returns how many there were."""
        keys = [self._key(owner, item[SORT_KEY]["S"])
                for item in self._all(owner, None, prefix=f"{uuid}.", ProjectionExpression="#s")]
        for start in range(0, len(keys), BATCH_WRITE_LIMIT):
            self._delete_batch(keys[start:start + BATCH_WRITE_LIMIT])
        logger.info("removed %d owner entries of collection %s", len(keys), uuid)
        return len(keys)

    # --- helpers -----------------------------------------------------------------------------------

    @staticmethod
    def _key(owner: str, uuid_version: str) -> dict:
        return {HASH_KEY: {"S": owner}, SORT_KEY: {"S": uuid_version}}

    def _query(self, owner: str, *, prefix: str | None = None, **kwargs) -> dict:
        """One page of the owner's items, optionally only those whose sort key starts with `prefix`."""
        condition, values = "#h = :h", {":h": {"S": owner}}
        if prefix is not None:
            condition, values[":prefix"] = condition + " AND begins_with(#s, :prefix)", {"S": prefix}
        # DynamoDB refuses attribute names that no expression uses.
        names = {"#h": HASH_KEY, **({"#s": SORT_KEY} if "#s" in condition + kwargs.get("ProjectionExpression", "")
                                   else {})}
        return self.client.query(TableName=self.table, KeyConditionExpression=condition, ConsistentRead=True,
                                 ExpressionAttributeNames=names, ExpressionAttributeValues=values, **kwargs)

    def _all(self, owner: str, start_key: dict | None, **kwargs):
        """The owner's items after start_key (from the first when None), fetched page by page as consumed."""
        while True:
            after: dict[str, Any] = {"ExclusiveStartKey": start_key} if start_key else {}
            response = self._query(owner, **kwargs, **after)
            yield from response["Items"]
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return

    def _skip(self, owner: str, count: int) -> tuple[dict | None, bool]:
        """The key to continue after the first `count` entries, and whether the entries ran out first."""
        start_key = None
        while count > 0:
            kwargs: dict[str, Any] = {"ExclusiveStartKey": start_key} if start_key else {}
            # A page of a query stops at 1 MB read, so several may be needed even with Limit=count.
            response = self._query(owner, Select="COUNT", Limit=count, **kwargs)
            count -= response["Count"]
            start_key = response.get("LastEvaluatedKey")
            if not start_key:
                return None, True
        return start_key, False

    def _delete_batch(self, keys: list[dict]) -> None:
        requests = [{"DeleteRequest": {"Key": key}} for key in keys]
        for attempt in range(UNPROCESSED_RETRIES):
            response = self.client.batch_write_item(RequestItems={self.table: requests})
            requests = response.get("UnprocessedItems", {}).get(self.table, [])
            if not requests:
                return
            time.sleep(0.05 * 2 ** attempt)  # throttled: back off before retrying the rest
        raise RuntimeError(f"DynamoDB left {len(requests)} deletions from {self.table} unprocessed")
