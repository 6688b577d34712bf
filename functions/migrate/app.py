"""Schema migration: every phase of the migration workflow (see pgrunbook.workflows.migrate.phases)."""

from pgrunbook.entrypoints.aws_lambda import make_phase_handler

handler = make_phase_handler("migrate")
