variable "name_prefix" {
  description = "Prefix of the IAM names: the role is `<name_prefix>-autoscaler`. Use the tables' name_prefix."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-42 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "table_arns" {
  description = "ARNs of the tables in every region, by table suffix: the dynamodb module's `table_arns` output as it is. Without Terraform-made tables, build the same map from the table names (`arn:aws:dynamodb:<region>:<account>:table/<prefix>-<suffix>`)."
  type        = map(list(string))

  validation {
    condition     = alltrue([for s in ["gpu-instances", "routing-state", "autoscaling-state", "cleanup-validation", "metrics", "controller-leases"] : contains(keys(var.table_arns), s)])
    error_message = "table_arns must have an entry for each of the six tables: gpu-instances, routing-state, autoscaling-state, cleanup-validation, metrics, controller-leases."
  }

  validation {
    condition     = alltrue([for arn in flatten(values(var.table_arns)) : can(regex("^arn:aws[a-z-]*:dynamodb:[a-z0-9-]+:[0-9]{12}:table/[A-Za-z0-9_.-]+$", arn))])
    error_message = "Every table_arns entry must be a DynamoDB table ARN (arn:aws:dynamodb:<region>:<account>:table/<name>)."
  }
}

variable "regions" {
  description = "Regions the controllers run in: the Auto Scaling permissions are limited to groups in these regions."
  type        = list(string)

  validation {
    condition     = length(var.regions) > 0 && alltrue([for r in var.regions : can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))])
    error_message = "regions must list at least one AWS region name such as \"us-east-1\"."
  }
}

variable "asg_tag" {
  description = "The tag that marks an Auto Scaling Group as one the controller may scale: SetDesiredCapacity is allowed only on groups that carry it with this value."
  type        = object({ key = string, value = string })
  default     = { key = "mrgc:managed", value = "true" }

  validation {
    condition     = length(var.asg_tag.key) > 0 && length(var.asg_tag.value) > 0
    error_message = "asg_tag needs a non-empty key and value."
  }
}

variable "oidc_provider_arns" {
  description = "IRSA: the IAM OIDC providers of the EKS clusters that run the controller (one per region's cluster). The role trusts the service account `service_account` in each."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.oidc_provider_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", arn))])
    error_message = "Every oidc_provider_arns entry must be an IAM OIDC provider ARN (arn:aws:iam::<account>:oidc-provider/oidc.eks.<region>.amazonaws.com/id/<id>)."
  }
}

variable "service_account" {
  description = "The Kubernetes service account the controller runs as (deploy/k8s)."
  type        = object({ namespace = string, name = string })
  default     = { namespace = "mrgc-autoscaler", name = "mrgc-autoscaler" }
}

variable "create_instance_profile" {
  description = "Also let EC2 assume the role and create an instance profile, for controllers run by systemd on EC2 instances (deploy/systemd)."
  type        = bool
  default     = false
}

variable "allow_table_management" {
  description = "Grant dynamodb:CreateTable and dynamodb:UpdateTimeToLive, which only `mrgc-autoscaler tables create` needs. Leave false when Terraform made the tables: the running controller never creates one."
  type        = bool
  default     = false
}

variable "restrict_to_vpc_endpoints" {
  description = "Deny the controller's DynamoDB, Auto Scaling and CloudWatch calls unless they come through the VPC endpoints in vpc_endpoint_ids (condition aws:SourceVpce). Needs every controller's subnets routed through those endpoints (the vpc-endpoints module)."
  type        = bool
  default     = false
}

variable "vpc_endpoint_ids" {
  description = "With restrict_to_vpc_endpoints: the IDs of the endpoints the controllers' calls must come through, by service, every region's together (the vpc-endpoints module's endpoint_ids output)."
  type = object({
    dynamodb    = list(string)
    autoscaling = list(string)
    monitoring  = list(string)
  })
  default  = { dynamodb = [], autoscaling = [], monitoring = [] }
  nullable = false

  validation {
    condition     = alltrue([for id in concat(var.vpc_endpoint_ids.dynamodb, var.vpc_endpoint_ids.autoscaling, var.vpc_endpoint_ids.monitoring) : can(regex("^vpce-[0-9a-f]+$", id))])
    error_message = "Every vpc_endpoint_ids entry must be a VPC endpoint ID (vpce-...)."
  }

  validation {
    condition     = !var.restrict_to_vpc_endpoints || alltrue([for ids in [var.vpc_endpoint_ids.dynamodb, var.vpc_endpoint_ids.autoscaling, var.vpc_endpoint_ids.monitoring] : length(ids) > 0])
    error_message = "restrict_to_vpc_endpoints needs endpoints for every service: dynamodb, autoscaling and monitoring (otherwise the controller could not call it at all)."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary to attach to the role, if the account requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for the role, policy and instance profile."
  type        = map(string)
  default     = {}
}
