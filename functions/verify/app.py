"""Lambda handler: Daily verification (04:00): ``pgrunbook verify``, the same job the command runs.

The event and the environment it reads are described in pgrunbook.handler.
"""

from pgrunbook.handler import make_handler

handler = make_handler("verify")
