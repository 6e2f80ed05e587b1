variable "name_prefix" {
  description = "Prefix of every table name: tables are named `<name_prefix>-<suffix>`, e.g. `mrgc-prod-gpu-instances`. The controller's `--table-prefix` must be the same value."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,40}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-42 characters of lowercase letters, digits and hyphens, start with a letter and not end with a hyphen (e.g. \"mrgc-prod\")."
  }
}

variable "replica_regions" {
  description = "Regions that hold a replica of every global table, besides the provider's region (the primary). Every region listed here, and the primary, also gets its own regional controller-leases table."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.replica_regions : can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", r))])
    error_message = "Every replica region must be an AWS region name such as \"us-east-2\"."
  }

  validation {
    condition     = length(distinct(var.replica_regions)) == length(var.replica_regions)
    error_message = "replica_regions must not list a region twice."
  }
}

variable "enable_point_in_time_recovery" {
  description = "Continuous backups (point-in-time recovery, the last 35 days) on every table and replica."
  type        = bool
  default     = true
}

variable "enable_cloudwatch_alarms" {
  description = "Create the CloudWatch alarms: UserErrors > 10 in 5 minutes (per region), SystemErrors > 0 (per table and region), ReplicationLatency > 2 s (per table, source and receiving region)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags for every resource the module creates (replicas get them through propagate_tags)."
  type        = map(string)
  default     = {}
}

variable "kms_key_arns" {
  description = "Existing customer-managed KMS keys to encrypt the tables with, by region (the key must live in that region). A region without an entry gets a new key with yearly rotation."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for region, arn in var.kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:${region}:[0-9]{12}:key/", arn))])
    error_message = "Each kms_key_arns value must be the ARN of a KMS key in the region it is listed under."
  }
}

variable "deletion_protection" {
  description = "DynamoDB deletion protection on every table and every replica of a global table: `terraform destroy` and DeleteTable fail until it is turned off."
  type        = bool
  default     = true
}

variable "alarm_sns_topic_arns" {
  description = "SNS topic to notify per region (an alarm can only notify a topic in its own region). Regions without one get alarms without actions: visible in the console only."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for region, arn in var.alarm_sns_topic_arns : can(regex("^arn:aws[a-z-]*:sns:${region}:[0-9]{12}:", arn))])
    error_message = "Each alarm_sns_topic_arns value must be the ARN of an SNS topic in the region it is listed under."
  }
}
