output "regions" {
  description = "Every region that holds the tables: the primary (the provider's region) first, then the replica regions."
  value       = local.regions
}

output "table_names" {
  description = "Table name by table suffix (the suffixes of src/schema.rs), e.g. { \"gpu-instances\" = \"mrgc-prod-gpu-instances\", ... }. The name is the same in every region."
  value = merge(
    { for suffix, t in aws_dynamodb_table.global : suffix => t.name },
    { for suffix in keys(local.regional_tables) : suffix => "${var.name_prefix}-${suffix}" },
  )
}

output "table_arns" {
  description = "ARNs of every table in every region, by table suffix: a list with the primary table and its replicas for a global table, one table per region for a regional one. The autoscaler-iam module takes this as it is."
  value = merge(
    { for suffix, t in aws_dynamodb_table.global : suffix => concat([t.arn], [for r in t.replica : r.arn]) },
    {
      for suffix in keys(local.regional_tables) : suffix => [
        for key, t in aws_dynamodb_table.regional : t.arn if local.regional_table_instances[key].suffix == suffix
      ]
    },
  )
}

output "stream_arns" {
  description = "Stream ARN of each global table in the primary region, by table suffix."
  value       = { for suffix, t in aws_dynamodb_table.global : suffix => t.stream_arn }
}

output "kms_key_arns" {
  description = "The KMS key encrypting the tables, by region (created here or passed in kms_key_arns)."
  value       = local.kms_key_arns
}
