data "aws_region" "current" {}
data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  primary_region = data.aws_region.current.region
  regions        = concat([local.primary_region], var.replica_regions)

  # The table schemas. They mirror src/schema.rs exactly (tests/deploy_terraform.rs checks
  # every key, type, index and TTL attribute): change both together.
  #   attributes: every attribute used in a key of the table or of an index, with its type
  #   (DynamoDB rejects an attribute definition that no key uses).
  global_tables = {
    "gpu-instances" = {
      hash_key   = "instance_id"
      range_key  = null
      attributes = { instance_id = "S", region = "S", model_pool = "S", state = "S" }
      indexes = {
        "region-index"     = { hash_key = "region", range_key = null }
        "model-pool-index" = { hash_key = "model_pool", range_key = "region" }
        "state-index"      = { hash_key = "state", range_key = null }
      }
      ttl_attribute = "ttl"
    }
    "routing-state" = {
      hash_key   = "instance_id"
      range_key  = null
      attributes = { instance_id = "S", region = "S", routing_score = "N" }
      indexes = {
        "region-score-index" = { hash_key = "region", range_key = "routing_score" }
      }
      ttl_attribute = "ttl"
    }
    "autoscaling-state" = {
      hash_key   = "model_pool"
      range_key  = "timestamp"
      attributes = { model_pool = "S", timestamp = "N", region = "S" }
      indexes = {
        "region-timestamp-index" = { hash_key = "region", range_key = "timestamp" }
      }
      ttl_attribute = "ttl"
    }
    "cleanup-validation" = {
      hash_key   = "instance_id"
      range_key  = "validation_timestamp"
      attributes = { instance_id = "S", validation_timestamp = "N", validation_status = "S" }
      indexes = {
        "status-timestamp-index" = { hash_key = "validation_status", range_key = "validation_timestamp" }
      }
      ttl_attribute = "ttl"
    }
    "metrics" = {
      hash_key   = "metric_name"
      range_key  = "timestamp"
      attributes = { metric_name = "S", timestamp = "N", region = "S" }
      indexes = {
        "region-timestamp-index" = { hash_key = "region", range_key = "timestamp" }
      }
      ttl_attribute = "ttl"
    }
  }

  # Regional on purpose, one per region and never replicated: a conditional write is atomic
  # only inside one replica, and global tables resolve conflicts last-writer-wins, so a
  # replicated lease could not guarantee one leader per region (DESIGN.md §3, §6).
  regional_tables = {
    "controller-leases" = {
      hash_key      = "lease_key"
      range_key     = null
      attributes    = { lease_key = "S" }
      indexes       = {}
      ttl_attribute = "ttl"
    }
  }

  # One instance of each regional table per region, keyed "<suffix>/<region>".
  regional_table_instances = {
    for pair in setproduct(keys(local.regional_tables), local.regions) :
    "${pair[0]}/${pair[1]}" => merge(local.regional_tables[pair[0]], { suffix = pair[0], region = pair[1] })
  }

  kms_key_arns = merge({ for region, key in aws_kms_key.tables : region => key.arn }, var.kms_key_arns)
}

# One customer-managed key per region: a replica must be encrypted with a key of its own region.
resource "aws_kms_key" "tables" {
  for_each = toset([for r in local.regions : r if !contains(keys(var.kms_key_arns), r)])
  region   = each.key

  description             = "${var.name_prefix} DynamoDB tables in ${each.key}"
  enable_key_rotation     = true
  rotation_period_in_days = 365
  deletion_window_in_days = 30

  # Key administration through IAM in this account, plus use through DynamoDB only for the
  # account's principals that DynamoDB authorises (AWS's documented key policy for DynamoDB):
  # who may read or write a table stays decided by DynamoDB permissions alone.
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "KeyAdministrationThroughIAM"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "UseThroughDynamoDBInThisAccount"
        Effect    = "Allow"
        Principal = { AWS = "*" }
        Action = [
          "kms:Encrypt",
          "kms:Decrypt",
          "kms:ReEncrypt*",
          "kms:GenerateDataKey*",
          "kms:CreateGrant",
          "kms:DescribeKey",
        ]
        Resource = "*"
        Condition = {
          StringEquals = {
            "kms:CallerAccount" = data.aws_caller_identity.current.account_id
            "kms:ViaService"    = "dynamodb.${each.key}.amazonaws.com"
          }
        }
      },
    ]
  })

  tags = var.tags
}

resource "aws_kms_alias" "tables" {
  for_each = aws_kms_key.tables
  region   = each.key

  name          = "alias/${var.name_prefix}-dynamodb"
  target_key_id = each.value.key_id
}

# The five global tables: one table in the primary region with a replica in every other.
resource "aws_dynamodb_table" "global" {
  for_each = local.global_tables

  name         = "${var.name_prefix}-${each.key}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = each.value.hash_key
  range_key    = each.value.range_key

  dynamic "attribute" {
    for_each = each.value.attributes
    content {
      name = attribute.key
      type = attribute.value
    }
  }

  dynamic "global_secondary_index" {
    for_each = each.value.indexes
    content {
      name            = global_secondary_index.key
      hash_key        = global_secondary_index.value.hash_key
      range_key       = global_secondary_index.value.range_key
      projection_type = "ALL"
    }
  }

  ttl {
    attribute_name = each.value.ttl_attribute
    enabled        = true
  }

  # Global tables (version 2019.11.21) replicate through the table's stream.
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arns[local.primary_region]
  }

  point_in_time_recovery {
    enabled = var.enable_point_in_time_recovery
  }

  dynamic "replica" {
    for_each = var.replica_regions
    content {
      region_name            = replica.value
      kms_key_arn            = local.kms_key_arns[replica.value]
      point_in_time_recovery = var.enable_point_in_time_recovery
      propagate_tags         = true
      # Each replica is a table of its own that DeleteTable can remove in its region: it
      # needs deletion protection too (the table's own setting does not cover it).
      deletion_protection_enabled = var.deletion_protection
    }
  }

  deletion_protection_enabled = var.deletion_protection

  tags = merge(var.tags, { "mrgc:table" = each.key })

  lifecycle {
    precondition {
      condition     = !contains(var.replica_regions, local.primary_region)
      error_message = "replica_regions must not contain the provider's region (${local.primary_region}): the table itself lives there."
    }
    precondition {
      condition     = alltrue([for r in keys(var.kms_key_arns) : contains(local.regions, r)])
      error_message = "kms_key_arns names a region that holds no table: ${join(", ", keys(var.kms_key_arns))}."
    }
  }
}

# The regional tables: one independent table per region, never replicated.
resource "aws_dynamodb_table" "regional" {
  for_each = local.regional_table_instances
  region   = each.value.region

  name         = "${var.name_prefix}-${each.value.suffix}"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = each.value.hash_key
  range_key    = each.value.range_key

  dynamic "attribute" {
    for_each = each.value.attributes
    content {
      name = attribute.key
      type = attribute.value
    }
  }

  dynamic "global_secondary_index" {
    for_each = each.value.indexes
    content {
      name            = global_secondary_index.key
      hash_key        = global_secondary_index.value.hash_key
      range_key       = global_secondary_index.value.range_key
      projection_type = "ALL"
    }
  }

  ttl {
    attribute_name = each.value.ttl_attribute
    enabled        = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arns[each.value.region]
  }

  point_in_time_recovery {
    enabled = var.enable_point_in_time_recovery
  }

  deletion_protection_enabled = var.deletion_protection

  tags = merge(var.tags, { "mrgc:table" = each.value.suffix })
}
