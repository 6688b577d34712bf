"""The Lambda handler of every pgrunbook function: the operation it runs is the function's
``PGRUNBOOK_OPERATION`` (set by the CDK app from pgrunbook.operations.registry); see
pgrunbook.entrypoints.aws_lambda for the events it takes."""

from pgrunbook.entrypoints.aws_lambda import make_handler

handler = make_handler()
