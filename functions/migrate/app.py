"""Schema migration: every phase of the migration workflow (see pgrunbook.migrate.workflow)."""

from pgrunbook.handler import make_phase_handler

handler = make_phase_handler("migrate")
