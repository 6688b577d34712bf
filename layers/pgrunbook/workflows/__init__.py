"""Workflows: multi-phase operations with a person's approval (point-in-time recovery, schema migration), the engine they share, and the operator's side."""
