"""Lambda handler: Backup (daily 02:00; weekly and monthly tiers on Sundays).

Thin by design: the job itself is ``pgrunbook.jobs.run_job("backup", ...)``, the same code the
``pgrunbook backup`` command runs.  See pgrunbook.handler for the event it accepts.
"""

from pgrunbook.handler import handle, observability

logger, tracer, metrics = observability()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event, context):
    return handle("backup", event, context, logger=logger, metrics=metrics)
