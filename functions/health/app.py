"""Lambda handler: Weekly health report (Mondays 07:00): ``pgrunbook health``, the same job the command runs.

The event and the environment it reads are described in pgrunbook.entrypoints.aws_lambda.
"""

from pgrunbook.entrypoints.aws_lambda import make_handler

handler = make_handler("health")
