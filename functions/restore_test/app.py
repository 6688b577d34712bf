"""Lambda handler: Weekly restore test (Sundays 05:00): ``pgrunbook restore-test``, the same job the command runs.

The event and the environment it reads are described in pgrunbook.entrypoints.aws_lambda.
"""

from pgrunbook.entrypoints.aws_lambda import make_handler

handler = make_handler("restore-test")
