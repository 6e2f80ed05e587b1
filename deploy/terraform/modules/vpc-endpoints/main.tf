# Private access to the AWS APIs the controller calls, in every region it runs in: a gateway
# endpoint for DynamoDB (a route on the given route tables) and interface endpoints for Auto
# Scaling and CloudWatch (network interfaces in the given subnets, with private DNS, so the
# SDK's default endpoints resolve to them). The autoscaler-iam module restricts the
# controller's role to these endpoints (restrict_to_vpc_endpoints).

locals {
  # The interface endpoints: Auto Scaling (SetDesiredCapacity, Describe..., Terminate...) and
  # CloudWatch metrics (PutMetricData), whose endpoint service is called "monitoring".
  interface_services = ["autoscaling", "monitoring"]

  interface_endpoints = {
    for pair in setproduct(keys(var.networks), local.interface_services) :
    "${pair[0]}/${pair[1]}" => { region = pair[0], service = pair[1] }
  }
}

data "aws_vpc" "controllers" {
  for_each = var.networks
  region   = each.key

  id = each.value.vpc_id
}

resource "aws_vpc_endpoint" "dynamodb" {
  for_each = var.networks
  region   = each.key

  vpc_id            = each.value.vpc_id
  service_name      = "com.amazonaws.${each.key}.dynamodb"
  vpc_endpoint_type = "Gateway"
  route_table_ids   = each.value.route_table_ids

  tags = merge(var.tags, { Name = "${var.name_prefix}-dynamodb-${each.key}" })
}

# The interface endpoints admit HTTPS from the VPC, nothing else.
resource "aws_security_group" "endpoints" {
  for_each = var.networks
  region   = each.key

  name        = "${var.name_prefix}-vpc-endpoints"
  description = "HTTPS from the VPC to the ${var.name_prefix} interface endpoints (Auto Scaling, CloudWatch)"
  vpc_id      = each.value.vpc_id

  tags = merge(var.tags, { Name = "${var.name_prefix}-vpc-endpoints-${each.key}" })
}

resource "aws_vpc_security_group_ingress_rule" "https" {
  for_each = var.networks
  region   = each.key

  security_group_id = aws_security_group.endpoints[each.key].id
  description       = "HTTPS from the VPC"
  cidr_ipv4         = data.aws_vpc.controllers[each.key].cidr_block
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443

  tags = var.tags
}

resource "aws_vpc_endpoint" "interface" {
  for_each = local.interface_endpoints
  region   = each.value.region

  vpc_id              = var.networks[each.value.region].vpc_id
  service_name        = "com.amazonaws.${each.value.region}.${each.value.service}"
  vpc_endpoint_type   = "Interface"
  subnet_ids          = var.networks[each.value.region].subnet_ids
  security_group_ids  = [aws_security_group.endpoints[each.value.region].id]
  private_dns_enabled = true

  tags = merge(var.tags, { Name = "${var.name_prefix}-${each.value.service}-${each.value.region}" })
}
