terraform {
  required_version = ">= 1.9"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 6.9, < 7.0"
    }
  }

  # Keep state remote and locked in a real environment, e.g.:
  # backend "s3" {
  #   bucket       = "<state bucket>"
  #   key          = "mrgc/prod/terraform.tfstate"
  #   region       = "us-east-1"
  #   use_lockfile = true
  # }
}
