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

from typing import ClassVar

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from pgrunbook.migrate.workflow import RETRIES as MIGRATE_RETRIES
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


class PhaseWorkflow(Construct):
    """What every pgrunbook workflow shares: one function runs every phase, tasks carry the
    whole state, retries come from the workflow module's RETRIES, failures after validation
    are caught into a Pass state naming the phase, then the ``fail`` phase reports."""

    titles: ClassVar[dict[str, str]] = {}

    def __init__(
        self, scope: Construct, construct_id: str, *, function: lambda_.IFunction, retries: dict
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = function
        self.retries = retries

    def failure_chain(self) -> tuple[sfn.TaskStateBase, sfn.Fail]:
        fail_task = self._task("fail")
        failed = sfn.Fail(self, "Failed", error=self.failed_error, cause_path="$.failure_message")
        self.unreported = sfn.Fail(
            self,
            "FailedUnreported",
            error=self.failed_error,
            cause="the run failed and the CRITICAL notice could not be sent: see this execution's history",
        )
        fail_task.add_catch(self.unreported, errors=["States.ALL"], result_path="$.report_error")
        fail_task.next(failed)
        self.fail_task = fail_task
        return fail_task, failed

    failed_error = "Failed"

    def guarded(self, phase: str, task: sfn.TaskStateBase) -> sfn.TaskStateBase:
        marker = sfn.Pass(
            self,
            f"{self.titles[phase]}Failed",
            result=sfn.Result.from_string(phase),
            result_path="$.failed_phase",
        )
        marker.next(self.fail_task)
        task.add_catch(marker, errors=["States.ALL"], result_path="$.error")
        return task

    def approval_task(self, abort: sfn.IChainable) -> tasks.LambdaInvoke:
        approval = tasks.LambdaInvoke(
            self,
            "Approval",
            lambda_function=self.function,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {
                    "phase": "request_approval",
                    "state": sfn.JsonPath.entire_payload,
                    "execution": sfn.JsonPath.execution_id,
                    # in the TaskScheduled event, where `pgrunbook ... approve` finds it
                    "task_token": sfn.JsonPath.task_token,
                }
            ),
            result_path="$.approval",
            task_timeout=sfn.Timeout.at("$.approval_timeout_seconds"),
            retry_on_service_exceptions=False,
        )
        self._retry(approval, "request_approval")
        approval.add_catch(abort, errors=["States.Timeout", "ApprovalRejected"], result_path="$.error")
        return self.guarded("request_approval", approval)

    def make_state_machine(
        self,
        definition: sfn.IChainable,
        *,
        state_machine_name: str,
        comment: str,
        timeout: Duration,
        log_retention: logs.RetentionDays,
    ) -> sfn.StateMachine:
        self.log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{state_machine_name}",
            retention=log_retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=state_machine_name,
            comment=comment,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=timeout,
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        stack = Stack.of(self)
        logical_id = stack.resolve(stack.get_logical_id(self.function.node.default_child))
        Validations.of(machine).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="Step Functions' log delivery and X-Ray APIs take no resource",
            ),
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
                reason="CDK grants invoking every version and alias of the workflow's function",
            ),
        )
        return machine

    def _retry(self, task: sfn.TaskStateBase, phase: str) -> None:
        policy = self.retries[phase]
        task.add_retry(
            errors=list(policy.errors),
            max_attempts=policy.attempts,
            interval=Duration.seconds(policy.interval_seconds),
            backoff_rate=policy.backoff,
        )

    def _task(self, phase: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            self.titles[phase],
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(
                {"phase": phase, "state": sfn.JsonPath.entire_payload, "execution": sfn.JsonPath.execution_id}
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        self._retry(task, phase)
        return task


class PitrWorkflow(PhaseWorkflow):
    titles: ClassVar[dict[str, str]] = TITLES
    failed_error = "RecoveryFailed"

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
        super().__init__(scope, construct_id, function=function, retries=RETRIES)
        self.failure_chain()
        guarded = self.guarded

        rejected = sfn.Fail(self, "Rejected", error_path="$.error.Error", cause_path="$.error.Cause")
        validate = self._task("validate").add_catch(rejected, errors=["States.ALL"], result_path="$.error")

        aborted = sfn.Fail(self, "Aborted", error="RecoveryAborted", cause_path="$.abort_reason")
        abort = self._task("abort")
        abort.add_catch(self.unreported, errors=["States.ALL"], result_path="$.report_error")
        abort.next(aborted)

        approval = self.approval_task(abort)

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
        self.state_machine = self.make_state_machine(
            definition,
            state_machine_name=state_machine_name,
            comment="pgrunbook point-in-time recovery: validate, prepare, safety point, approval, recover, "
            "verify, cutover, finish",
            timeout=timeout,
            log_retention=log_retention,
        )


class MigrationWorkflow(PhaseWorkflow):
    """Lint → pre-migration backup → dry run on a restored copy → approval (optional) →
    apply → verify → finish; a failed apply or verification rolls back what this run applied,
    then reports which backup restores the rest."""

    titles: ClassVar[dict[str, str]] = {
        "validate": "Lint",
        "backup": "Backup",
        "dry_run": "DryRun",
        "request_approval": "Approval",
        "apply": "Apply",
        "verify": "Verify",
        "rollback": "Rollback",
        "finish": "Finish",
        "abort": "Abort",
        "fail": "ReportFailure",
    }
    failed_error = "MigrationFailed"

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
        super().__init__(scope, construct_id, function=function, retries=MIGRATE_RETRIES)
        self.failure_chain()
        guarded = self.guarded

        rejected = sfn.Fail(self, "Rejected", error_path="$.error.Error", cause_path="$.error.Cause")
        lint = self._task("validate").add_catch(rejected, errors=["States.ALL"], result_path="$.error")
        aborted = sfn.Fail(self, "Aborted", error="MigrationAborted", cause_path="$.abort_reason")
        abort = self._task("abort")
        abort.add_catch(self.unreported, errors=["States.ALL"], result_path="$.report_error")
        abort.next(aborted)

        rollback = guarded("rollback", self._task("rollback"))
        rollback.next(self.fail_task)
        finish = guarded("finish", self._task("finish"))
        finish.next(sfn.Succeed(self, "Applied"))
        verify = guarded("verify", self._task("verify"))
        verify.next(
            sfn.Choice(self, "Verified?")
            .when(sfn.Condition.boolean_equals("$.verify_ok", True), finish)
            .otherwise(rollback)
        )
        apply = guarded("apply", self._task("apply"))
        apply.next(
            sfn.Choice(self, "AllApplied?")
            .when(sfn.Condition.boolean_equals("$.apply_ok", True), verify)
            .otherwise(rollback)
        )
        approval = self.approval_task(abort)
        approval.next(apply)
        dry_run = guarded("dry_run", self._task("dry_run"))
        dry_run.next(
            sfn.Choice(self, "ApprovalRequired?")
            .when(sfn.Condition.boolean_equals("$.approval_required", True), approval)
            .otherwise(apply)
        )
        backup = guarded("backup", self._task("backup"))
        backup.next(dry_run)
        lint.next(
            sfn.Choice(self, "AnythingPending?")
            .when(sfn.Condition.number_equals("$.pending_count", 0), sfn.Succeed(self, "NothingPending"))
            .otherwise(backup)
        )
        self.state_machine = self.make_state_machine(
            lint,
            state_machine_name=state_machine_name,
            comment="pgrunbook schema migration: lint, backup, dry run, approval, apply, verify; rollback on failure",
            timeout=timeout,
            log_retention=log_retention,
        )
