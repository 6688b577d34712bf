"""The point-in-time recovery workflow as a Step Functions state machine.

Every task runs one phase of :mod:`pgrunbook.pitr.workflow` in the ``pitr`` function and
returns the new state; the state machine only orders them, waits, and routes failures::

    Validate ─✗→ Rejected (nothing changed)
      → Prepare → SafetyPoint → Approval (task token; timeout) ─rejected/timeout→ Abort → Aborted
      → StartRecovery → Wait ⇄ CheckProgress (until done; the deadline is checked by the task)
      → Verify → Cutover → Finish → Recovered

Any task after validation that fails (after the retries :data:`~pgrunbook.pitr.workflow.RETRIES`
allows it) is caught into a Pass state that records which phase failed, then the ``fail``
phase sends the CRITICAL notice, leaving maintenance mode on, and the execution fails.
Retries come from the same table the laptop runner uses: only errors that prove nothing
happened, or that hit reads and idempotent writes.  Lambda's own service errors are not
retried on the task that starts a recovery (the request may have been delivered).
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from pgrunbook.pitr.workflow import RETRIES

TITLES = {
    "validate": "Validate",
    "prepare": "Prepare",
    "safety_point": "SafetyPoint",
    "request_approval": "Approval",
    "start": "StartRecovery",
    "poll": "CheckProgress",
    "verify": "Verify",
    "cutover": "Cutover",
    "finish": "Finish",
    "abort": "Abort",
    "fail": "ReportFailure",
}


class PitrWorkflow(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        state_machine_name: str,
        timeout: Duration,
        log_retention: logs.RetentionDays,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = function

        fail_task = self._task("fail")
        failed = sfn.Fail(self, "Failed", error="RecoveryFailed", cause_path="$.failure_message")
        unreported = sfn.Fail(
            self,
            "FailedUnreported",
            error="RecoveryFailed",
            cause="the recovery failed and the CRITICAL notice could not be sent: see this execution's history",
        )
        fail_task.add_catch(unreported, errors=["States.ALL"], result_path="$.report_error")
        fail_task.next(failed)

        def guarded(phase: str, task: sfn.TaskStateBase) -> sfn.TaskStateBase:
            marker = sfn.Pass(
                self,
                f"{TITLES[phase]}Failed",
                result=sfn.Result.from_string(phase),
                result_path="$.failed_phase",
            )
            marker.next(fail_task)
            task.add_catch(marker, errors=["States.ALL"], result_path="$.error")
            return task

        rejected = sfn.Fail(self, "Rejected", error_path="$.error.Error", cause_path="$.error.Cause")
        validate = self._task("validate").add_catch(rejected, errors=["States.ALL"], result_path="$.error")

        aborted = sfn.Fail(self, "Aborted", error="RecoveryAborted", cause_path="$.abort_reason")
        abort = self._task("abort")
        abort.add_catch(unreported, errors=["States.ALL"], result_path="$.report_error")
        abort.next(aborted)

        approval = tasks.LambdaInvoke(
            self,
            TITLES["request_approval"],
            lambda_function=function,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {
                    "phase": "request_approval",
                    "state": sfn.JsonPath.entire_payload,
                    "execution": sfn.JsonPath.execution_id,
                    # in the TaskScheduled event, where `pgrunbook pitr approve` finds it
                    "task_token": sfn.JsonPath.task_token,
                }
            ),
            result_path="$.approval",
            task_timeout=sfn.Timeout.at("$.approval_timeout_seconds"),
            retry_on_service_exceptions=False,
        )
        self._retry(approval, "request_approval")
        approval.add_catch(abort, errors=["States.Timeout", "ApprovalRejected"], result_path="$.error")
        guarded("request_approval", approval)

        poll = guarded("poll", self._task("poll"))
        wait = sfn.Wait(self, "WaitForRecovery", time=sfn.WaitTime.seconds_path("$.poll_seconds"))
        verify = guarded("verify", self._task("verify"))
        done = sfn.Choice(self, "RecoveryDone?")
        done.when(sfn.Condition.boolean_equals("$.recovery_done", True), verify)
        done.otherwise(wait)
        wait.next(poll)
        poll.next(done)

        definition = (
            validate.next(guarded("prepare", self._task("prepare")))
            .next(guarded("safety_point", self._task("safety_point")))
            .next(approval)
            .next(guarded("start", self._task("start")))
            .next(wait)
        )
        verify.next(guarded("cutover", self._task("cutover"))).next(
            guarded("finish", self._task("finish"))
        ).next(sfn.Succeed(self, "Recovered"))

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{state_machine_name}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            comment="pgrunbook point-in-time recovery: validate, prepare, safety point, approval, recover, "
            "verify, cutover, finish",
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        stack = Stack.of(self)
        logical_id = stack.resolve(stack.get_logical_id(function.node.default_child))
        Validations.of(self.state_machine).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Step Functions' log delivery and X-Ray APIs take no resource",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                reason="CDK grants invoking every version and alias of the recovery function",
            ),
        )

    def _retry(self, task: sfn.TaskStateBase, phase: str) -> None:
        policy = RETRIES[phase]
        task.add_retry(
            errors=list(policy.errors),
            max_attempts=policy.attempts,
            interval=Duration.seconds(policy.interval_seconds),
            backoff_rate=policy.backoff,
        )

    def _task(self, phase: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            TITLES[phase],
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(
                {"phase": phase, "state": sfn.JsonPath.entire_payload, "execution": sfn.JsonPath.execution_id}
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        self._retry(task, phase)
        return task
