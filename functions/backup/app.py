"""Lambda handler: Backup (daily 02:00; weekly and monthly tiers on Sundays): ``pgrunbook backup``, the same job the command runs.

The event and the environment it reads are described in pgrunbook.handler.
"""

from pgrunbook.handler import make_handler

handler = make_handler("backup")
