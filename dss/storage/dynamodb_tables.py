"""The DynamoDB tables of the DSS: one client per process, and creating a missing table (the local stack does;
Terraform does in AWS)."""
from __future__ import annotations

import functools
import logging

import boto3

logger = logging.getLogger(__name__)


@functools.cache
def dynamodb():
    """One client per process (clients are thread-safe); AWS_ENDPOINT_URL_DYNAMODB points it at a local server."""
    return boto3.client("dynamodb")


def create_table_if_missing(client, name: str, *, hash_key: str, sort_key: str | None = None,
                            ttl_attribute: str | None = None, indexes: dict[str, str] | None = None) -> bool:
    """An on-demand table with string keys (global secondary `indexes`, name -> string hash key, projecting
    everything; and a TTL attribute). True if it was created now."""
    try:
        client.describe_table(TableName=name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    keys = [(hash_key, "HASH")] + ([(sort_key, "RANGE")] if sort_key else [])
    attributes = dict.fromkeys([k for k, _ in keys] + list((indexes or {}).values()))
    gsi = [{"IndexName": index, "KeySchema": [{"AttributeName": key, "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"}} for index, key in (indexes or {}).items()]
    try:
        client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in attributes],
                            KeySchema=[{"AttributeName": k, "KeyType": kind} for k, kind in keys],
                            **({"GlobalSecondaryIndexes": gsi} if gsi else {}))
    except client.exceptions.ResourceInUseException:
        return False  # created by a racing caller
    client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    if ttl_attribute:
        enable_ttl(client, name, ttl_attribute)
    return True


def enable_ttl(client, name: str, attribute: str) -> None:
    """Let DynamoDB delete expired items. TTL is only clean-up of old records (finished copy jobs, delivered
    notifications): a server without it (dynalite, the local stack's) keeps them, which is logged, not an error."""
    try:
        client.update_time_to_live(TableName=name,
                                   TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute})
    except client.exceptions.ClientError as e:
        if e.response.get("Error", {}).get("Code") != "UnknownOperationException":
            raise
        logger.info("%s: this DynamoDB server has no TTL; expired items stay until deleted", name)
