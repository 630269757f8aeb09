# The DSS tables, with the key schemas, index and TTL attributes the code creates locally:
#   async state     dss/storage/async_state.py       hash `key`; TTL `ttl`
#   collections     dss/storage/collection_owners.py hash `owner`, range `uuid_version` (version entries, and
#                                                    one ownership claim per uuid)
#   subscriptions   dss/notify/subscriptions.py      hash `owner`, range `uuid`; GSI `uuid-index` on `uuid` (ALL)
#   notifications   dss/notify/delivery.py           hash `notification_id`; TTL `expires`

resource "aws_dynamodb_table" "async_state" {
  name                        = var.async_state_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "key"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "key"
    type = "S"
  }

  ttl {
    attribute_name = "ttl"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.dss.arn
  }
}

resource "aws_dynamodb_table" "collections" {
  name                        = var.collections_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "owner"
  range_key                   = "uuid_version"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "owner"
    type = "S"
  }

  attribute {
    name = "uuid_version"
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.dss.arn
  }
}

resource "aws_dynamodb_table" "subscriptions" {
  name                        = var.subscriptions_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "owner"
  range_key                   = "uuid"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "owner"
    type = "S"
  }

  attribute {
    name = "uuid"
    type = "S"
  }

  # Whose subscription a uuid is (SubscriptionStore.by_uuid).
  global_secondary_index {
    name            = "uuid-index"
    hash_key        = "uuid"
    projection_type = "ALL"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.dss.arn
  }
}

resource "aws_dynamodb_table" "notifications" {
  name                        = var.notifications_table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "notification_id"
  deletion_protection_enabled = var.deletion_protection

  attribute {
    name = "notification_id"
    type = "S"
  }

  ttl {
    attribute_name = "expires"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.dss.arn
  }
}
