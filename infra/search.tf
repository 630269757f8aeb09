# The OpenSearch domain behind DSS_ES_ENDPOINT, in the DSS VPC (network.tf), reachable from the Lambdas' security
# group only. The API and dss-index sign their requests with SigV4 (dss/index/backend.py); the domain's policy admits
# only their Lambda roles (and the optional admin principals, who need a way into the VPC).

locals {
  opensearch_log_types  = ["INDEX_SLOW_LOGS", "SEARCH_SLOW_LOGS", "ES_APPLICATION_LOGS"]
  opensearch_domain_arn = "arn:${local.partition}:es:${var.aws_region}:${local.account_id}:domain/${local.es_domain_name}"
  # Chalice names the roles {app}-{stage} and {app}-{stage}-{function} (scripts/package_lambdas.py).
  opensearch_client_roles = flatten([
    for app in ["dss-api", "dss-index"] : [
      "arn:${local.partition}:iam::${local.account_id}:role/${app}-${var.stage}",
      "arn:${local.partition}:iam::${local.account_id}:role/${app}-${var.stage}-*",
    ]
  ])
  opensearch_http_actions = ["es:ESHttpGet", "es:ESHttpHead", "es:ESHttpPost", "es:ESHttpPut", "es:ESHttpDelete"]
}

resource "aws_cloudwatch_log_group" "opensearch" {
  for_each          = toset(local.opensearch_log_types)
  name              = "/aws/opensearch/${local.es_domain_name}/${lower(each.key)}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.dss.arn
}

data "aws_iam_policy_document" "opensearch_logs" {
  statement {
    sid       = "OpenSearchPublishesDomainLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for group in aws_cloudwatch_log_group.opensearch : "${group.arn}:*"]
    principals {
      type        = "Service"
      identifiers = ["es.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [local.opensearch_domain_arn]
    }
  }
}

resource "aws_cloudwatch_log_resource_policy" "opensearch" {
  policy_name     = "dss-opensearch-logs-${var.stage}"
  policy_document = data.aws_iam_policy_document.opensearch_logs.json
}

data "aws_iam_policy_document" "opensearch_access" {
  statement {
    sid       = "DssLambdaRoles"
    actions   = local.opensearch_http_actions
    resources = ["${local.opensearch_domain_arn}/*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:PrincipalArn"
      values   = local.opensearch_client_roles
    }
  }

  dynamic "statement" {
    for_each = length(var.opensearch_admin_principal_arns) > 0 ? [1] : []
    content {
      sid       = "Administrators"
      actions   = local.opensearch_http_actions
      resources = ["${local.opensearch_domain_arn}/*"]
      principals {
        type        = "AWS"
        identifiers = var.opensearch_admin_principal_arns
      }
    }
  }
}

resource "aws_opensearch_domain" "dss" {
  # checkov:skip=CKV2_AWS_52: access is decided by IAM (the domain policy); fine-grained access control would need each Lambda role mapped inside OpenSearch as well
  # checkov:skip=CKV_AWS_317: OpenSearch audit logs require fine-grained access control (see CKV2_AWS_52); slow and application logs are published
  domain_name    = local.es_domain_name
  engine_version = var.opensearch_engine_version

  cluster_config {
    instance_type            = var.opensearch_instance_type
    instance_count           = var.opensearch_instance_count
    zone_awareness_enabled   = var.opensearch_instance_count > 1
    dedicated_master_enabled = var.opensearch_dedicated_masters
    dedicated_master_type    = var.opensearch_dedicated_masters ? var.opensearch_master_type : null
    dedicated_master_count   = var.opensearch_dedicated_masters ? var.opensearch_master_count : null

    dynamic "zone_awareness_config" {
      for_each = var.opensearch_instance_count > 1 ? [1] : []
      content {
        availability_zone_count = 2
      }
    }
  }

  vpc_options {
    # One subnet per availability zone the data nodes spread over.
    subnet_ids         = var.opensearch_instance_count > 1 ? aws_subnet.private[*].id : [aws_subnet.private[0].id]
    security_group_ids = [aws_security_group.opensearch.id]
  }

  ebs_options {
    ebs_enabled = true
    volume_type = "gp3"
    volume_size = var.opensearch_volume_gb
  }

  encrypt_at_rest {
    enabled    = true
    kms_key_id = aws_kms_key.dss.arn
  }

  node_to_node_encryption {
    enabled = true
  }

  domain_endpoint_options {
    enforce_https       = true
    tls_security_policy = "Policy-Min-TLS-1-2-2019-07"
  }

  access_policies = data.aws_iam_policy_document.opensearch_access.json

  log_publishing_options {
    log_type                 = "INDEX_SLOW_LOGS"
    cloudwatch_log_group_arn = aws_cloudwatch_log_group.opensearch["INDEX_SLOW_LOGS"].arn
  }

  log_publishing_options {
    log_type                 = "SEARCH_SLOW_LOGS"
    cloudwatch_log_group_arn = aws_cloudwatch_log_group.opensearch["SEARCH_SLOW_LOGS"].arn
  }

  log_publishing_options {
    log_type                 = "ES_APPLICATION_LOGS"
    cloudwatch_log_group_arn = aws_cloudwatch_log_group.opensearch["ES_APPLICATION_LOGS"].arn
  }

  depends_on = [aws_cloudwatch_log_resource_policy.opensearch]
}
