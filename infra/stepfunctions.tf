# The large-file copy state machine (PUT /files, 202): daemons/dss-copy/copy-file.asl.json, whose Task resources
# are the dss-copy Lambdas. Chalice deploys those after this, as dss-copy-{stage}-{function}; their ARNs follow from
# the names, so the definition can be written before they exist.

locals {
  # Placeholder in the definition -> dss-copy function (daemons/dss-copy/app.py).
  copy_step_functions = {
    SetupLambdaArn         = "setup"
    CopyPartsLambdaArn     = "copy_parts"
    FinalizeLambdaArn      = "finalize"
    WriteMetadataLambdaArn = "write_metadata"
    RecordFailureLambdaArn = "record_failure"
  }
  copy_step_function_arns = {
    for placeholder, function in local.copy_step_functions :
    placeholder => "arn:${local.partition}:lambda:${var.aws_region}:${local.account_id}:function:dss-copy-${var.stage}-${function}"
  }
}

resource "aws_cloudwatch_log_group" "copy_state_machine" {
  # /aws/vendedlogs/ keeps the log-delivery resource policy from growing with every state machine.
  name              = "/aws/vendedlogs/states/${local.copy_state_machine_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.dss.arn
}

data "aws_iam_policy_document" "states_assume_role" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "copy_state_machine" {
  name               = "${local.copy_state_machine_name}-sfn"
  assume_role_policy = data.aws_iam_policy_document.states_assume_role.json
}

data "aws_iam_policy_document" "copy_state_machine" {
  statement {
    sid       = "InvokeTheCopySteps"
    actions   = ["lambda:InvokeFunction"]
    resources = concat(values(local.copy_step_function_arns), [for arn in values(local.copy_step_function_arns) : "${arn}:*"])
  }

  # CloudWatch Logs log delivery and X-Ray have no resource-level permissions: AWS accepts only "*" for these.
  statement {
    sid = "ExecutionLogDelivery"
    actions = [
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "copy_state_machine" {
  name   = "invoke-copy-steps"
  role   = aws_iam_role.copy_state_machine.id
  policy = data.aws_iam_policy_document.copy_state_machine.json
}

resource "aws_sfn_state_machine" "copy_file" {
  name       = local.copy_state_machine_name
  role_arn   = aws_iam_role.copy_state_machine.arn
  definition = templatefile("${path.module}/../daemons/dss-copy/copy-file.asl.json", local.copy_step_function_arns)

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.copy_state_machine.arn}:*"
    include_execution_data = true
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = true
  }

  depends_on = [aws_iam_role_policy.copy_state_machine]
}
