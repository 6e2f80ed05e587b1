output "endpoint_ids" {
  description = "The endpoints' IDs by service, every region's together: the autoscaler-iam module's vpc_endpoint_ids as it is."
  value = {
    dynamodb    = [for e in aws_vpc_endpoint.dynamodb : e.id]
    autoscaling = [for key, e in aws_vpc_endpoint.interface : e.id if local.interface_endpoints[key].service == "autoscaling"]
    monitoring  = [for key, e in aws_vpc_endpoint.interface : e.id if local.interface_endpoints[key].service == "monitoring"]
  }
}

output "security_group_ids" {
  description = "The interface endpoints' security group in each region."
  value       = { for region, sg in aws_security_group.endpoints : region => sg.id }
}
