"""The DynamoDB tables of the DSS: one client per process, and creating a missing table (the local stack does;
Terraform does in AWS)."""
from __future__ import annotations

import functools

import boto3


@functools.cache
def dynamodb():
    """One client per process (clients are thread-safe); AWS_ENDPOINT_URL_DYNAMODB points it at a local server."""
    return boto3.client("dynamodb")


def create_table_if_missing(client, name: str, *, hash_key: str, sort_key: str | None = None,
                            ttl_attribute: str | None = None) -> bool:
    """An on-demand table with string keys (and a TTL attribute). True if it was created now."""
    try:
        client.describe_table(TableName=name)
        return False
    except client.exceptions.ResourceNotFoundException:
        pass
    keys = [(hash_key, "HASH")] + ([(sort_key, "RANGE")] if sort_key else [])
    try:
        client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in keys],
                            KeySchema=[{"AttributeName": k, "KeyType": kind} for k, kind in keys])
    except client.exceptions.ResourceInUseException:
        return False  # created by a racing caller
    client.get_waiter("table_exists").wait(TableName=name)
    if ttl_attribute:
        client.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": ttl_attribute})
    return True
