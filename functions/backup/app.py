"""Lambda handler: Backup (daily 02:00; weekly and monthly tiers on Sundays): ``pgrunbook backup``, the same job the command runs.

The event and the environment it reads are described in pgrunbook.entrypoints.aws_lambda.
"""

from pgrunbook.entrypoints.aws_lambda import make_handler

handler = make_handler("backup")
