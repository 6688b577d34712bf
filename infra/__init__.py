"""The CDK app that deploys pgrunbook: app.py, the stacks, and one construct per concern."""
