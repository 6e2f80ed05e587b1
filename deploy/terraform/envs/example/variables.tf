variable "environment" {
  description = "Environment name, used in tags."
  type        = string
  default     = "production"
}

variable "name_prefix" {
  description = "Table and role name prefix; the controllers' --table-prefix."
  type        = string
  default     = "mrgc-prod"
}

variable "primary_region" {
  description = "The provider's region: where the global tables are created first."
  type        = string
  default     = "us-east-1"
}

variable "replica_regions" {
  description = "The other regions of the cluster."
  type        = list(string)
  default     = ["us-east-2", "us-west-2"]
}

variable "eks_oidc_provider_arns" {
  description = "IAM OIDC provider ARN of each region's EKS cluster (IRSA). `aws eks describe-cluster --name <cluster> --query cluster.identity.oidc.issuer` gives the issuer; the provider ARN is arn:aws:iam::<account>:oidc-provider/<issuer without https://>."
  type        = list(string)
  default     = []
}

variable "create_instance_profile" {
  description = "Also create an instance profile, for controllers run by systemd on EC2."
  type        = bool
  default     = false
}

variable "alarm_sns_topic_arns" {
  description = "SNS topic per region for the DynamoDB alarms."
  type        = map(string)
  default     = {}
}

variable "enable_vpc_endpoints" {
  description = "Create VPC endpoints for DynamoDB (gateway), Auto Scaling and CloudWatch (interface) in every region of vpc_endpoint_networks, and deny the controller's calls that do not come through them."
  type        = bool
  default     = false
}

variable "vpc_endpoint_networks" {
  description = "With enable_vpc_endpoints, by region (every region of the tables): the controllers' VPC, the route tables of their subnets, and the subnets for the interface endpoints."
  type = map(object({
    vpc_id          = string
    route_table_ids = list(string)
    subnet_ids      = list(string)
  }))
  default = {}

  # The role is denied every call outside the endpoints: a region without them would have a
  # controller that can call nothing.
  validation {
    condition     = !var.enable_vpc_endpoints || toset(keys(var.vpc_endpoint_networks)) == toset(concat([var.primary_region], var.replica_regions))
    error_message = "With enable_vpc_endpoints, vpc_endpoint_networks must name exactly the primary and replica regions: the controllers of a region without endpoints could call nothing."
  }
}
