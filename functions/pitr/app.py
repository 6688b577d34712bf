"""Point-in-time recovery: every phase of the recovery workflow (see pgrunbook.workflows.pitr.phases)."""

from pgrunbook.entrypoints.aws_lambda import make_phase_handler

handler = make_phase_handler("pitr")
