# Read by the deploy with `terraform output -json` (scripts/package_lambdas.py: es_endpoint -> DSS_ES_ENDPOINT,
# copy_state_machine_arn -> DSS_COPY_STATE_MACHINE_ARN, gcp_credentials_secret -> DSS_GCP_CREDENTIALS_SECRET).

output "es_endpoint" {
  description = "OpenSearch endpoint (DSS_ES_ENDPOINT)."
  value       = "https://${aws_opensearch_domain.dss.endpoint}"
}

output "es_domain" {
  description = "OpenSearch domain name (the iam/ placeholder es_domain)."
  value       = aws_opensearch_domain.dss.domain_name
}

output "copy_state_machine_arn" {
  description = "The large-file copy state machine (DSS_COPY_STATE_MACHINE_ARN)."
  value       = aws_sfn_state_machine.copy_file.arn
}

output "gcp_credentials_secret" {
  description = "Secrets Manager secret holding the DSS GCP service-account key (DSS_GCP_CREDENTIALS_SECRET)."
  value       = aws_secretsmanager_secret.gcp_credentials.name
}

output "gcp_service_account" {
  description = "Email of the GCP service account the DSS Lambdas use."
  value       = google_service_account.dss.email
}

output "api_domain_name" {
  description = "The API's custom domain; the API's deploy maps its REST API stage onto it."
  value       = aws_api_gateway_domain_name.api.domain_name
}

output "api_regional_domain_name" {
  description = "The API Gateway host name the custom domain's alias record points at."
  value       = aws_api_gateway_domain_name.api.regional_domain_name
}

output "queue_arns" {
  description = "Queue name (sync, index, copy, checkout, notify) -> ARN."
  value       = { for name, queue in aws_sqs_queue.queue : name => queue.arn }
}

output "queue_urls" {
  description = "Queue name -> URL."
  value       = { for name, queue in aws_sqs_queue.queue : name => queue.id }
}

output "dead_letter_queue_arns" {
  description = "Queue name -> ARN of its dead-letter queue."
  value       = { for name, queue in aws_sqs_queue.dead_letter : name => queue.arn }
}

output "topic_arns" {
  description = "Replica -> ARN of its object-event topic."
  value = {
    aws = aws_sns_topic.s3_events.arn
    gcp = aws_sns_topic.gs_events.arn
  }
}

output "table_arns" {
  description = "DynamoDB tables: async_state, collections, subscriptions, notifications -> ARN."
  value = {
    async_state   = aws_dynamodb_table.async_state.arn
    collections   = aws_dynamodb_table.collections.arn
    subscriptions = aws_dynamodb_table.subscriptions.arn
    notifications = aws_dynamodb_table.notifications.arn
  }
}

output "kms_key_arn" {
  description = "The deployment's customer-managed key (queues, topics, tables, logs, secret, search)."
  value       = aws_kms_key.dss.arn
}

output "kms_key_alias" {
  description = "Alias of that key; the iam/ policies select the key by it."
  value       = aws_kms_alias.dss.name
}

output "gcs_event_relay" {
  description = "Name of the GCS event relay Cloud Function."
  value       = google_cloudfunctions2_function.gcs_relay.name
}

output "gcs_event_relay_role_arn" {
  description = "AWS role the GCS event relay assumes with its Google ID token."
  value       = aws_iam_role.gcs_relay.arn
}

# --- What the Lambdas are placed and hardened with (scripts/package_lambdas.py DEPLOYMENT_OUTPUTS) -----------------

output "vpc_id" {
  description = "The DSS VPC."
  value       = aws_vpc.dss.id
}

output "lambda_subnet_ids" {
  description = "Private subnets the Lambdas run in (one per availability zone)."
  value       = aws_subnet.private[*].id
}

output "lambda_security_group_ids" {
  description = "Security group of the Lambdas: no inbound, HTTPS outbound."
  value       = [aws_security_group.lambda.id]
}

output "lambda_kms_key_arn" {
  description = "Key that encrypts the Lambdas' environment (the deployment's key)."
  value       = aws_kms_key.dss.arn
}

output "lambda_dead_letter_queue_arn" {
  description = "Dead-letter queue of failed asynchronous Lambda invocations."
  value       = aws_sqs_queue.lambda_dead_letter.arn
}

output "code_signing_config_arn" {
  description = "Code signing configuration every DSS Lambda is deployed with."
  value       = aws_lambda_code_signing_config.dss.arn
}

output "signing_profile_name" {
  description = "Signer profile that signs the Lambda zips."
  value       = aws_signer_signing_profile.lambda.name
}

output "artifacts_bucket" {
  description = "Bucket the deploy uploads the Lambda zips to (versioned, for Signer)."
  value       = aws_s3_bucket.lambda_artifacts.id
}
