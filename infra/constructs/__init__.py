"""The CDK constructs: one per concern (storage, layers, a function, a workflow, monitoring, access)."""
