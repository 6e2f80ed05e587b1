output "role_arn" {
  description = "ARN of the controller's role: the value of the service account's `eks.amazonaws.com/role-arn` annotation (deploy/k8s/base/serviceaccount.yaml)."
  value       = aws_iam_role.controller.arn
}

output "role_name" {
  description = "Name of the controller's role."
  value       = aws_iam_role.controller.name
}

output "policy_arn" {
  description = "ARN of the least-privilege policy attached to the role."
  value       = aws_iam_policy.controller.arn
}

output "policy_json" {
  description = "The policy document, for review."
  value       = data.aws_iam_policy_document.controller.json
}

output "instance_profile_name" {
  description = "Instance profile for EC2-hosted controllers (null unless create_instance_profile)."
  value       = one(aws_iam_instance_profile.controller[*].name)
}
