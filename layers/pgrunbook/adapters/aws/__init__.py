"""AWS services other than S3: Secrets Manager, SNS, Step Functions."""
