# Example root: the MRGC tables in us-east-1 (primary), us-east-2 and us-west-2, and the
# controller's role. Copy this folder per environment (envs/prod, envs/staging) and set a
# backend in versions.tf.
#
# One provider covers all three regions: with AWS provider 6 every regional resource takes a
# `region` argument, so the modules create the replicas, the per-region leases tables, keys and
# alarms themselves, and need no provider alias per region. The provider's region is the
# primary: the region whose tables Terraform creates first and then replicates.

provider "aws" {
  region = var.primary_region

  default_tags {
    tags = {
      Project     = "MRGC"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}

module "dynamodb" {
  source = "../../modules/dynamodb"

  name_prefix     = var.name_prefix
  replica_regions = var.replica_regions

  enable_point_in_time_recovery = true
  enable_cloudwatch_alarms      = true
  alarm_sns_topic_arns          = var.alarm_sns_topic_arns

  tags = {
    Component = "mrgc-state"
  }
}

# Optional: private endpoints for DynamoDB, Auto Scaling and CloudWatch in every region, and
# the controller's role restricted to calls through them (deploy/RUNBOOK.md, "Private access
# through VPC endpoints").
module "vpc_endpoints" {
  source = "../../modules/vpc-endpoints"
  count  = var.enable_vpc_endpoints ? 1 : 0

  name_prefix = var.name_prefix
  networks    = var.vpc_endpoint_networks

  tags = {
    Component = "mrgc-autoscaler"
  }
}

module "autoscaler_iam" {
  source = "../../modules/autoscaler-iam"

  name_prefix = var.name_prefix
  table_arns  = module.dynamodb.table_arns
  regions     = module.dynamodb.regions

  oidc_provider_arns      = var.eks_oidc_provider_arns
  create_instance_profile = var.create_instance_profile

  restrict_to_vpc_endpoints = var.enable_vpc_endpoints
  vpc_endpoint_ids          = var.enable_vpc_endpoints ? module.vpc_endpoints[0].endpoint_ids : null

  tags = {
    Component = "mrgc-autoscaler"
  }
}
