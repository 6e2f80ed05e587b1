variable "name_prefix" {
  description = "Prefix of the names and Name tags of the endpoints and their security groups. Use the tables' name_prefix."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-42 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen."
  }
}

variable "networks" {
  description = "By region: the VPC the controllers run in, the route tables of their subnets (the DynamoDB gateway endpoint adds its route to each) and the subnets for the interface endpoints (one per availability zone). The VPC needs DNS support and DNS hostnames for private DNS."
  type = map(object({
    vpc_id          = string
    route_table_ids = list(string)
    subnet_ids      = list(string)
  }))

  validation {
    condition     = length(var.networks) > 0 && alltrue([for r in keys(var.networks) : can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))])
    error_message = "networks must name at least one region, each an AWS region name such as \"us-east-2\"."
  }

  validation {
    condition     = alltrue([for n in values(var.networks) : length(n.route_table_ids) > 0 && length(n.subnet_ids) > 0])
    error_message = "Every region needs at least one route table (for DynamoDB) and one subnet (for Auto Scaling and CloudWatch)."
  }
}

variable "tags" {
  description = "Tags for the endpoints, security groups and rules."
  type        = map(string)
  default     = {}
}
