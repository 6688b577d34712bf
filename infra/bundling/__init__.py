"""Build tools the CDK app runs during synthesis (not constructs)."""
