data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition
  account   = data.aws_caller_identity.current.account_id

  # The controller's AWS calls are listed in src/schema.rs (IAM_ACTIONS); the statements below
  # grant exactly those, no more (tests/deploy_terraform.rs checks it).

  # The tables the controller writes: decision records (autoscaling-state) and its lease
  # (controller-leases). Every other table it only reads.
  written_tables = ["autoscaling-state", "controller-leases"]

  all_table_arns     = flatten(values(var.table_arns))
  written_table_arns = flatten([for s in local.written_tables : var.table_arns[s]])
  # Drains update the instances table's state attribute (UpdateItem, conditional).
  instance_table_arns = var.table_arns["gpu-instances"]
  index_arns          = [for arn in local.all_table_arns : "${arn}/index/*"]
  # The inventory follows these tables through their DynamoDB streams (read once, then watch).
  streamed_tables = ["gpu-instances", "routing-state", "cleanup-validation"]
  stream_arns     = [for arn in flatten([for s in local.streamed_tables : var.table_arns[s]]) : "${arn}/stream/*"]

  asg_arns = [
    for r in var.regions : "arn:${local.partition}:autoscaling:${r}:${local.account}:autoScalingGroup:*:autoScalingGroupName/*"
  ]

  # The namespace of the controller's CloudWatch gauges (src/adapters/aws/gauges.rs).
  cloudwatch_namespace = "MRGC/Autoscaler"

  # IRSA: the OIDC issuer host is the part of the provider ARN after "oidc-provider/".
  oidc_issuers = { for arn in var.oidc_provider_arns : arn => element(split("oidc-provider/", arn), 1) }
}

data "aws_iam_policy_document" "controller" {
  statement {
    sid = "ReadTables"
    actions = [
      "dynamodb:DescribeTable",
      "dynamodb:DescribeTimeToLive",
      "dynamodb:GetItem",
      "dynamodb:Query",
    ]
    resources = local.all_table_arns
  }

  statement {
    sid       = "QueryIndexes"
    actions   = ["dynamodb:Query"]
    resources = local.index_arns
  }

  # The inventory's informer: the streams of the instances, routing and cleanup tables.
  statement {
    sid = "FollowInventoryStreams"
    actions = [
      "dynamodb:DescribeStream",
      "dynamodb:GetShardIterator",
      "dynamodb:GetRecords",
    ]
    resources = local.stream_arns
  }

  # Decision records are appended in a transaction with a condition check on the lease
  # (TransactWriteItems has no IAM action of its own: each item's action is authorised).
  statement {
    sid = "WriteDecisionsAndLease"
    actions = [
      "dynamodb:PutItem",
      "dynamodb:UpdateItem",
      "dynamodb:ConditionCheckItem",
    ]
    resources = local.written_table_arns
  }

  # A drain marks the instance draining (routers stop sending) and, once it is terminated,
  # terminated: conditional UpdateItem on the instances table only.
  statement {
    sid       = "DrainInstances"
    actions   = ["dynamodb:UpdateItem"]
    resources = local.instance_table_arns
  }

  dynamic "statement" {
    for_each = var.allow_table_management ? [1] : []
    content {
      sid = "CreateTables"
      actions = [
        "dynamodb:CreateTable",
        "dynamodb:UpdateTimeToLive",
      ]
      resources = local.all_table_arns
    }
  }

  # Describe calls support no resource-level permissions: "*" is the only resource they take.
  statement {
    sid       = "DescribeGroups"
    actions   = ["autoscaling:DescribeAutoScalingGroups"]
    resources = ["*"]
  }

  # Scale-in drains: the chosen instances are marked draining, then terminated with the
  # group's desired capacity decremented, so the group never picks victims itself.
  statement {
    sid = "ScaleMrgcGroups"
    actions = [
      "autoscaling:SetDesiredCapacity",
      "autoscaling:TerminateInstanceInAutoScalingGroup",
    ]
    resources = local.asg_arns
    condition {
      test     = "StringEquals"
      variable = "aws:ResourceTag/${var.asg_tag.key}"
      values   = [var.asg_tag.value]
    }
  }

  # PutMetricData takes no resource; the namespace condition keeps it to the controller's own.
  statement {
    sid       = "PutGauges"
    actions   = ["cloudwatch:PutMetricData"]
    resources = ["*"]
    condition {
      test     = "StringEquals"
      variable = "cloudwatch:namespace"
      values   = [local.cloudwatch_namespace]
    }
  }

  # With restrict_to_vpc_endpoints, every call of each service the controller uses is refused
  # unless it comes through one of that service's VPC endpoints (the vpc-endpoints module):
  # aws:SourceVpce is in the request only when it went through an endpoint, and
  # StringNotEquals is true when it is missing, so a call over the internet or a NAT gateway
  # is denied. DynamoDB goes through a gateway endpoint, Auto Scaling and CloudWatch through
  # interface endpoints; each statement lists its own service's endpoints, since a request
  # carries the ID of the endpoint it used. Not covered: sts:AssumeRoleWithWebIdentity and the
  # instance profile (how the role is obtained), KMS (used by DynamoDB on the caller's behalf)
  # and replication between replicas (done by DynamoDB itself).
  dynamic "statement" {
    for_each = var.restrict_to_vpc_endpoints ? [var.vpc_endpoint_ids.dynamodb] : []
    content {
      sid       = "DynamoDBOnlyThroughVpcEndpoints"
      effect    = "Deny"
      actions   = ["dynamodb:*"]
      resources = ["*"]
      condition {
        test     = "StringNotEquals"
        variable = "aws:SourceVpce"
        values   = statement.value
      }
    }
  }

  dynamic "statement" {
    for_each = var.restrict_to_vpc_endpoints ? [var.vpc_endpoint_ids.autoscaling] : []
    content {
      sid       = "AutoScalingOnlyThroughVpcEndpoints"
      effect    = "Deny"
      actions   = ["autoscaling:*"]
      resources = ["*"]
      condition {
        test     = "StringNotEquals"
        variable = "aws:SourceVpce"
        values   = statement.value
      }
    }
  }

  dynamic "statement" {
    for_each = var.restrict_to_vpc_endpoints ? [var.vpc_endpoint_ids.monitoring] : []
    content {
      sid       = "CloudWatchOnlyThroughVpcEndpoints"
      effect    = "Deny"
      actions   = ["cloudwatch:*"]
      resources = ["*"]
      condition {
        test     = "StringNotEquals"
        variable = "aws:SourceVpce"
        values   = statement.value
      }
    }
  }
}

data "aws_iam_policy_document" "trust" {
  dynamic "statement" {
    for_each = local.oidc_issuers
    content {
      sid     = "ServiceAccount${index(var.oidc_provider_arns, statement.key)}"
      effect  = "Allow"
      actions = ["sts:AssumeRoleWithWebIdentity"]
      principals {
        type        = "Federated"
        identifiers = [statement.key]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value}:sub"
        values   = ["system:serviceaccount:${var.service_account.namespace}:${var.service_account.name}"]
      }
      condition {
        test     = "StringEquals"
        variable = "${statement.value}:aud"
        values   = ["sts.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = var.create_instance_profile ? [1] : []
    content {
      sid     = "Ec2Instances"
      effect  = "Allow"
      actions = ["sts:AssumeRole"]
      principals {
        type        = "Service"
        identifiers = ["ec2.amazonaws.com"]
      }
    }
  }
}

resource "aws_iam_role" "controller" {
  name                 = "${var.name_prefix}-autoscaler"
  description          = "mrgc-autoscaler controllers: read the MRGC tables, write decisions and leases, scale MRGC Auto Scaling Groups."
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  permissions_boundary = var.permissions_boundary_arn
  max_session_duration = 3600

  tags = var.tags

  lifecycle {
    precondition {
      condition     = length(var.oidc_provider_arns) > 0 || var.create_instance_profile
      error_message = "Nothing could assume the role: give oidc_provider_arns (EKS) or set create_instance_profile (EC2)."
    }
  }
}

resource "aws_iam_policy" "controller" {
  name        = "${var.name_prefix}-autoscaler"
  description = "Least privilege for mrgc-autoscaler: exactly the AWS calls its code makes."
  policy      = data.aws_iam_policy_document.controller.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "controller" {
  role       = aws_iam_role.controller.name
  policy_arn = aws_iam_policy.controller.arn
}

resource "aws_iam_instance_profile" "controller" {
  count = var.create_instance_profile ? 1 : 0

  name = "${var.name_prefix}-autoscaler"
  role = aws_iam_role.controller.name

  tags = var.tags
}
