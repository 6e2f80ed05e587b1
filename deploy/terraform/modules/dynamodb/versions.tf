terraform {
  # 1.9: input validations may refer to other variables.
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # 6.0: the per-resource `region` argument, which lets one module call create the
      # regional leases tables, KMS keys and alarms in every region without provider aliases.
      # 6.9: deletion_protection_enabled on a global table's replica blocks.
      version = ">= 6.9, < 7.0"
    }
  }
}
