"""Lambda handler: Monthly DR drill (first Sunday 06:00).

Thin by design: the job itself is ``pgrunbook.jobs.run_job("dr-drill", ...)``, the same code the
``pgrunbook dr-drill`` command runs.  See pgrunbook.handler for the event it accepts.
"""

from pgrunbook.handler import handle, observability

logger, tracer, metrics = observability()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event, context):
    return handle("dr-drill", event, context, logger=logger, metrics=metrics)
