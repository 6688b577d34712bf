"""Point-in-time recovery: every phase of the recovery workflow (see pgrunbook.pitr.workflow)."""

from pgrunbook.handler import make_phase_handler

handler = make_phase_handler("pitr")
