"""Lambda handler: Retention (daily 03:00): ``pgrunbook retention``, the same job the command runs.

The event and the environment it reads are described in pgrunbook.entrypoints.aws_lambda.
"""

from pgrunbook.entrypoints.aws_lambda import make_handler

handler = make_handler("retention")
