# The seed's three CloudWatch alarms, in every region that holds the tables.

locals {
  alarm_regions = toset([for r in local.regions : r if var.enable_cloudwatch_alarms])

  # Every table in every region it lives in, keyed "<suffix>/<region>".
  table_instances = merge(
    {
      for pair in setproduct(keys(local.global_tables), local.regions) :
      "${pair[0]}/${pair[1]}" => { suffix = pair[0], region = pair[1] }
    },
    { for key, t in local.regional_table_instances : key => { suffix = t.suffix, region = t.region } },
  )

  # Replication routes of each global table: the source region publishes ReplicationLatency
  # with the receiving region as a dimension, so each ordered pair of regions is one alarm.
  replication_routes = {
    for triple in setproduct(keys(local.global_tables), local.regions, local.regions) :
    "${triple[0]}/${triple[1]}->${triple[2]}" => { suffix = triple[0], source = triple[1], receiving = triple[2] }
    if triple[1] != triple[2]
  }

  alarm_actions = { for r in local.regions : r => compact([lookup(var.alarm_sns_topic_arns, r, "")]) }
}

# UserErrors (HTTP 400s) is published per account and region, with no table dimension: this
# alarm counts every DynamoDB client of the account in the region, not only these tables.
resource "aws_cloudwatch_metric_alarm" "user_errors" {
  for_each = local.alarm_regions
  region   = each.key

  alarm_name        = "${var.name_prefix}-dynamodb-user-errors-${each.key}"
  alarm_description = "More than 10 DynamoDB requests answered HTTP 400 in 5 minutes in ${each.key} (account-wide). See deploy/RUNBOOK.md#dynamodb-alarms."

  namespace           = "AWS/DynamoDB"
  metric_name         = "UserErrors"
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 10
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"

  actions_enabled = true
  alarm_actions   = local.alarm_actions[each.key]
  ok_actions      = local.alarm_actions[each.key]

  tags = var.tags
}

# SystemErrors (HTTP 500s) is published per table *and operation*; a Metrics Insights query
# sums the operations of one table, so a new operation needs no new alarm.
resource "aws_cloudwatch_metric_alarm" "system_errors" {
  for_each = { for key, t in local.table_instances : key => t if var.enable_cloudwatch_alarms }
  region   = each.value.region

  alarm_name        = "${var.name_prefix}-${each.value.suffix}-system-errors-${each.value.region}"
  alarm_description = "DynamoDB answered HTTP 500 for ${var.name_prefix}-${each.value.suffix} in ${each.value.region}. See deploy/RUNBOOK.md#dynamodb-alarms."

  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"

  metric_query {
    id          = "errors"
    label       = "SystemErrors, all operations"
    expression  = "SELECT SUM(SystemErrors) FROM SCHEMA(\"AWS/DynamoDB\", Operation, TableName) WHERE TableName = '${var.name_prefix}-${each.value.suffix}'"
    period      = 60
    return_data = true
  }

  actions_enabled = true
  alarm_actions   = local.alarm_actions[each.value.region]
  ok_actions      = local.alarm_actions[each.value.region]

  tags = var.tags
}

# ReplicationLatency is in milliseconds; the seed's threshold is 2 seconds. Three of five
# one-minute averages above it alarm, so a single slow minute does not page.
resource "aws_cloudwatch_metric_alarm" "replication_latency" {
  for_each = { for key, r in local.replication_routes : key => r if var.enable_cloudwatch_alarms }
  region   = each.value.source

  alarm_name        = "${var.name_prefix}-${each.value.suffix}-replication-latency-${each.value.source}-to-${each.value.receiving}"
  alarm_description = "Replication of ${var.name_prefix}-${each.value.suffix} from ${each.value.source} to ${each.value.receiving} is slower than 2 s. See deploy/RUNBOOK.md#dynamodb-alarms."

  namespace   = "AWS/DynamoDB"
  metric_name = "ReplicationLatency"
  dimensions = {
    TableName       = "${var.name_prefix}-${each.value.suffix}"
    ReceivingRegion = each.value.receiving
  }
  statistic           = "Average"
  period              = 60
  evaluation_periods  = 5
  datapoints_to_alarm = 3
  threshold           = 2000
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"

  actions_enabled = true
  alarm_actions   = local.alarm_actions[each.value.source]
  ok_actions      = local.alarm_actions[each.value.source]

  tags = var.tags

  depends_on = [aws_dynamodb_table.global]
}
