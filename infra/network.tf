# The VPC the Lambdas (scripts/package_lambdas.py: subnet_ids, security_group_ids) and the OpenSearch domain run in.
# The Lambdas reach S3 and DynamoDB through gateway endpoints, and everything else they call (SQS, SNS, KMS, Secrets
# Manager, Step Functions, SES, GCS, the OpenID issuer, subscribers' callbacks) over HTTPS through a NAT gateway per
# availability zone.

locals {
  azs = data.aws_availability_zones.dss.names
}

# Exactly the two chosen zones (an unfiltered list would grow, and shift, when AWS adds a zone).
data "aws_availability_zones" "dss" {
  state = "available"
  filter {
    name   = "zone-name"
    values = length(var.availability_zones) > 0 ? var.availability_zones : ["${var.aws_region}a", "${var.aws_region}b"]
  }
}

resource "aws_vpc" "dss" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = "dss-${var.stage}" }
}

# Nothing may use the default security group: no rules at all.
resource "aws_default_security_group" "dss" {
  vpc_id = aws_vpc.dss.id
}

resource "aws_subnet" "private" {
  count             = length(local.azs)
  vpc_id            = aws_vpc.dss.id
  availability_zone = local.azs[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 4, count.index)
  tags              = { Name = "dss-${var.stage}-private-${local.azs[count.index]}" }
}

resource "aws_subnet" "public" {
  count                   = length(local.azs)
  vpc_id                  = aws_vpc.dss.id
  availability_zone       = local.azs[count.index]
  cidr_block              = cidrsubnet(var.vpc_cidr, 8, 240 + count.index)
  map_public_ip_on_launch = false
  tags                    = { Name = "dss-${var.stage}-public-${local.azs[count.index]}" }
}

resource "aws_internet_gateway" "dss" {
  vpc_id = aws_vpc.dss.id
}

resource "aws_eip" "nat" {
  count  = length(local.azs)
  domain = "vpc"
  tags   = { Name = "dss-${var.stage}-nat-${local.azs[count.index]}" }
}

resource "aws_nat_gateway" "dss" {
  count         = length(local.azs)
  allocation_id = aws_eip.nat[count.index].id
  subnet_id     = aws_subnet.public[count.index].id
  depends_on    = [aws_internet_gateway.dss]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.dss.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.dss.id
  }
}

resource "aws_route_table_association" "public" {
  count          = length(local.azs)
  subnet_id      = aws_subnet.public[count.index].id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table" "private" {
  count  = length(local.azs)
  vpc_id = aws_vpc.dss.id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.dss[count.index].id
  }
}

resource "aws_route_table_association" "private" {
  count          = length(local.azs)
  subnet_id      = aws_subnet.private[count.index].id
  route_table_id = aws_route_table.private[count.index].id
}

# S3 and DynamoDB traffic stays off the NAT gateways.
resource "aws_vpc_endpoint" "gateway" {
  for_each          = toset(["s3", "dynamodb"])
  vpc_id            = aws_vpc.dss.id
  service_name      = "com.amazonaws.${var.aws_region}.${each.key}"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = aws_route_table.private[*].id
}

# --- Security groups ---------------------------------------------------------------------------------------------

resource "aws_security_group" "lambda" {
  # checkov:skip=CKV2_AWS_5: attached to every DSS Lambda by the Chalice deploy (output lambda_security_group_ids), which Terraform here does not see
  name        = "dss-lambda-${var.stage}"
  description = "DSS Lambdas: no inbound; outbound HTTPS only"
  vpc_id      = aws_vpc.dss.id

  egress {
    description = "HTTPS to AWS APIs, GCS, the OpenID issuer, subscribers and the search domain"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }
}

resource "aws_security_group" "opensearch" {
  name        = "dss-opensearch-${var.stage}"
  description = "DSS OpenSearch domain: HTTPS from the DSS Lambdas only"
  vpc_id      = aws_vpc.dss.id

  ingress {
    description     = "HTTPS from the DSS Lambdas"
    from_port       = 443
    to_port         = 443
    protocol        = "tcp"
    security_groups = [aws_security_group.lambda.id]
  }
}

# --- Flow logs ---------------------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "flow_logs" {
  name              = "/aws/vpc/dss-${var.stage}/flow-logs"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.dss.arn
}

data "aws_iam_policy_document" "flow_logs_assume_role" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["vpc-flow-logs.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "flow_logs" {
  name               = "dss-flow-logs-${var.stage}"
  assume_role_policy = data.aws_iam_policy_document.flow_logs_assume_role.json
}

data "aws_iam_policy_document" "flow_logs" {
  statement {
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups", "logs:DescribeLogStreams"]
    resources = [aws_cloudwatch_log_group.flow_logs.arn, "${aws_cloudwatch_log_group.flow_logs.arn}:*"]
  }
}

resource "aws_iam_role_policy" "flow_logs" {
  name   = "write-flow-logs"
  role   = aws_iam_role.flow_logs.id
  policy = data.aws_iam_policy_document.flow_logs.json
}

resource "aws_flow_log" "dss" {
  vpc_id               = aws_vpc.dss.id
  traffic_type         = "ALL"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn         = aws_iam_role.flow_logs.arn
}
