output "table_names" {
  description = "Table names by suffix."
  value       = module.dynamodb.table_names
}

output "controller_role_arn" {
  description = "Put this in deploy/k8s/base/serviceaccount.yaml (eks.amazonaws.com/role-arn)."
  value       = module.autoscaler_iam.role_arn
}

output "controller_instance_profile" {
  description = "Instance profile for systemd-run controllers on EC2, when created."
  value       = module.autoscaler_iam.instance_profile_name
}
