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
