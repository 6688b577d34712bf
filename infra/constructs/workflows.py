"""pgrunbook's workflows as Step Functions state machines: point-in-time recovery, schema
migration, table recovery, and (where throwaway RDS targets are configured) the restore test
and DR drill.

Every task runs one phase of the workflow's module (:mod:`pgrunbook.workflows.pitr.phases`,
:mod:`pgrunbook.workflows.migrate.phases`) in the workflow's function and returns the new state;
the state machine only orders them, waits, and routes failures.  The recovery::

    Validate ─✗→ Rejected (nothing changed)
      → Prepare → SafetyPoint → Approval (task token; timeout) ─rejected/timeout→ Abort → Aborted
      → StartRecovery → Wait ⇄ CheckProgress (until done; the deadline is checked by the task)
      → Verify → Cutover → Finish → Recovered

Any task after validation that fails (after the retries :data:`~pgrunbook.workflows.pitr.phases.RETRIES`
allows it) is caught into a Pass state that records which phase failed, then the ``fail``
phase sends the CRITICAL notice, leaving maintenance mode on, and the execution fails.
Retries come from the same table the laptop runner uses: only errors that prove nothing
happened, or that hit reads and idempotent writes.  Lambda's own service errors are not
retried on the task that starts a recovery (the request may have been delivered).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from pgrunbook.workflows.engine import Retry
from pgrunbook.workflows.migrate.phases import RETRIES as MIGRATE_RETRIES
from pgrunbook.workflows.pitr.phases import RETRIES
from pgrunbook.workflows.recover.phases import RETRIES as RECOVER_RETRIES

if TYPE_CHECKING:
    from infra.constructs.runners import PhaseRunner

Step = sfn.TaskStateBase | sfn.StateMachineFragment  # what a phase is in the state machine

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


def add_retry(task: sfn.TaskStateBase, policy: Retry) -> None:
    """The phase's retry policy (pgrunbook.workflows.engine.Retry) on its task."""
    task.add_retry(
        errors=policy.names(),
        max_attempts=policy.attempts,
        interval=Duration.seconds(policy.interval_seconds),
        backoff_rate=policy.backoff,
    )


def logged_state_machine(
    scope: Construct,
    function: lambda_.IFunction,
    *,
    state_machine_name: str,
    comment: str,
    body: sfn.IChainable,
    timeout: Duration,
    log_retention: logs.RetentionDays,
) -> tuple[logs.LogGroup, sfn.StateMachine]:
    """A state machine with X-Ray tracing and its own log group (no execution data: states
    carry database names and run facts), and cdk-nag's two acknowledged wildcards."""
    log_group = logs.LogGroup(
        scope,
        "Logs",
        log_group_name=f"/aws/vendedlogs/states/{state_machine_name}",
        retention=log_retention,
        removal_policy=RemovalPolicy.DESTROY,
    )
    state_machine = sfn.StateMachine(
        scope,
        "StateMachine",
        state_machine_name=state_machine_name,
        comment=comment,
        definition_body=sfn.DefinitionBody.from_chainable(body),
        timeout=timeout,
        tracing_enabled=True,
        logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
    )
    stack = Stack.of(scope)
    logical_id = stack.resolve(stack.get_logical_id(function.node.default_child))  # type: ignore[arg-type]
    Validations.of(state_machine).acknowledge(
        Acknowledgment(
            id="AwsSolutions-IAM5[Resource::*]",
            reason="Step Functions' log delivery and X-Ray APIs take no resource, nor do ecs:DescribeTasks and "
            "ecs:StopTask of a Fargate phase's .sync (tasks are named at run time)",
        ),
        Acknowledgment(
            id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>:*]",
            reason="CDK grants invoking every version and alias of the workflow's function",
        ),
    )
    return log_group, state_machine


class PhaseWorkflow(Construct):
    """What every pgrunbook workflow shares, around the part each subclass orders in
    :meth:`body`:

    * one function runs every phase; each task passes the whole state and gets it back;
    * retries come from the workflow module's ``RETRIES``;
    * the ``validate`` task's failure ends in ``Rejected`` (nothing changed);
    * the ``Approval`` task waits for a task token; rejected or timed out, ``abort`` reports
      and the execution ends ``Aborted``;
    * any other task that fails is caught into a Pass state naming its phase, then the
      ``fail`` phase sends the CRITICAL notice and the execution ends ``Failed``.
    """

    titles: ClassVar[dict[str, str]]
    retries: ClassVar[dict[str, Retry]]
    failed_error: ClassVar[str]
    aborted_error: ClassVar[str]
    comment: ClassVar[str]

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        state_machine_name: str,
        timeout: Duration,
        log_retention: logs.RetentionDays,
        runner: PhaseRunner | None = None,
        long_phases: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = function
        self.runner, self.long_phases = runner, long_phases

        self.fail_task = self._task("fail")
        unreported = sfn.Fail(
            self,
            "FailedUnreported",
            error=self.failed_error,
            cause="the run failed and the CRITICAL notice could not be sent: see this execution's history",
        )
        self.fail_task.add_catch(unreported, errors=["States.ALL"], result_path="$.report_error")
        self.fail_task.next(sfn.Fail(self, "Failed", error=self.failed_error, cause_path="$.failure_message"))

        rejected = sfn.Fail(self, "Rejected", error_path="$.error.Error", cause_path="$.error.Cause")
        validate = self._task("validate").add_catch(rejected, errors=["States.ALL"], result_path="$.error")

        abort = self._task("abort")
        abort.add_catch(unreported, errors=["States.ALL"], result_path="$.report_error")
        abort.next(sfn.Fail(self, "Aborted", error=self.aborted_error, cause_path="$.abort_reason"))
        approval = tasks.LambdaInvoke(
            self,
            self.titles["request_approval"],
            lambda_function=function,
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
        self.guarded("request_approval", approval)

        self.log_group, self.state_machine = logged_state_machine(
            self,
            function,
            state_machine_name=state_machine_name,
            comment=self.comment,
            body=self.body(validate, approval),
            timeout=timeout,
            log_retention=log_retention,
        )
        if runner is not None:
            from infra.constructs.runners import acknowledge_run_task

            acknowledge_run_task(self.state_machine, runner.job)

    def body(self, validate: sfn.TaskStateBase, approval: sfn.TaskStateBase) -> sfn.IChainable:
        """The workflow from its validate task on, with the approval task placed somewhere."""
        raise NotImplementedError

    def guarded(self, phase: str, task: sfn.TaskStateBase) -> sfn.TaskStateBase:
        task.add_catch(self._marker(phase), errors=["States.ALL"], result_path="$.error")
        return task

    def _marker(self, phase: str) -> sfn.Pass:
        """The Pass state that records which phase failed, then the failure path."""
        marker = sfn.Pass(
            self,
            f"{self.titles[phase]}Failed",
            result=sfn.Result.from_string(phase),
            result_path="$.failed_phase",
        )
        marker.next(self.fail_task)
        return marker

    def step(self, phase: str) -> Step:
        """A guarded task for a phase after validation; a long phase on the runner chosen for
        the run (infra/constructs/runners.DispatchedPhase) when the workflow has Fargate."""
        if self.runner is None or phase not in self.long_phases:
            return self.guarded(phase, self._task(phase))
        from infra.constructs.runners import DispatchedPhase

        marker = self._marker(phase)
        on_lambda = self._task(phase)
        on_lambda.add_catch(marker, errors=["States.ALL"], result_path="$.error")
        return DispatchedPhase(
            self,
            f"{self.titles[phase]}Dispatch",
            phase=phase,
            title=self.titles[phase],
            function=self.function,
            runner=self.runner,
            on_lambda=on_lambda,
            failed=marker,
        )

    def _retry(self, task: sfn.TaskStateBase, phase: str) -> None:
        add_retry(task, self.retries[phase])

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
    retries = RETRIES
    failed_error = "RecoveryFailed"
    aborted_error = "RecoveryAborted"
    comment = (
        "pgrunbook point-in-time recovery: validate, prepare, safety point, approval, recover, verify, "
        "cutover, finish"
    )

    def body(self, validate: sfn.TaskStateBase, approval: sfn.TaskStateBase) -> sfn.IChainable:
        poll = self.step("poll")
        wait = sfn.Wait(self, "WaitForRecovery", time=sfn.WaitTime.seconds_path("$.poll_seconds"))
        verify = self.step("verify")
        done = sfn.Choice(self, "RecoveryDone?")
        done.when(sfn.Condition.boolean_equals("$.recovery_done", True), verify)
        done.otherwise(wait)
        wait.next(poll)
        poll.next(done)
        verify.next(self.step("cutover")).next(self.step("finish")).next(sfn.Succeed(self, "Recovered"))
        return (
            validate.next(self.step("prepare"))
            .next(self.step("safety_point"))
            .next(approval)
            .next(self.step("start"))
            .next(wait)
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
    retries = MIGRATE_RETRIES
    failed_error = "MigrationFailed"
    aborted_error = "MigrationAborted"
    comment = (
        "pgrunbook schema migration: lint, backup, dry run, approval, apply, verify; rollback on failure"
    )

    def body(self, validate: sfn.TaskStateBase, approval: sfn.TaskStateBase) -> sfn.IChainable:
        rollback = self.step("rollback")
        rollback.next(self.fail_task)
        finish = self.step("finish")
        finish.next(sfn.Succeed(self, "Applied"))
        verify = self.step("verify")
        verify.next(
            sfn.Choice(self, "Verified?")
            .when(sfn.Condition.boolean_equals("$.verify_ok", True), finish)
            .otherwise(rollback)
        )
        apply = self.step("apply")
        apply.next(
            sfn.Choice(self, "AllApplied?")
            .when(sfn.Condition.boolean_equals("$.apply_ok", True), verify)
            .otherwise(rollback)
        )
        approval.next(apply)
        backup = self.step("backup")
        backup.next(self.step("dry_run")).next(
            sfn.Choice(self, "ApprovalRequired?")
            .when(sfn.Condition.boolean_equals("$.approval_required", True), approval)
            .otherwise(apply)
        )
        return validate.next(
            sfn.Choice(self, "AnythingPending?")
            .when(sfn.Condition.number_equals("$.pending_count", 0), sfn.Succeed(self, "NothingPending"))
            .otherwise(backup)
        )


class TableRecoveryWorkflow(PhaseWorkflow):
    """The runbook's data corruption response for chosen tables
    (:mod:`pgrunbook.workflows.recover.phases`)::

        Validate ─✗→ Rejected (nothing changed)
          → Restore (the backup's copy into a side schema) → Diff
          ─(nothing to repair)→ Finish → NothingToRepair
          → Approval (task token; timeout) ─rejected/timeout→ Abort (copy dropped) → Aborted
          → Apply (compare again; the approved repair, one transaction) → Verify → Finish → Repaired

    Any task after validation that fails is caught into ReportFailure (the CRITICAL notice
    naming the phase; the copy is kept for investigation).  Restore and Apply are long phases:
    with a Fargate runner they run where the dispatch chooses; neither is ever retried."""

    titles: ClassVar[dict[str, str]] = {
        "validate": "Validate",
        "restore": "Restore",
        "diff": "Diff",
        "request_approval": "Approval",
        "apply": "Apply",
        "verify": "Verify",
        "finish": "Finish",
        "abort": "Abort",
        "fail": "ReportFailure",
    }
    retries = RECOVER_RETRIES
    failed_error = "TableRecoveryFailed"
    aborted_error = "TableRecoveryAborted"
    comment = (
        "pgrunbook table recovery: validate, restore a copy beside the tables, diff, approval, repair, verify"
    )

    def body(self, validate: sfn.TaskStateBase, approval: sfn.TaskStateBase) -> sfn.IChainable:
        finish = self.step("finish")
        finish.next(
            sfn.Choice(self, "Repaired?")
            .when(sfn.Condition.boolean_equals("$.repair_needed", True), sfn.Succeed(self, "Repaired"))
            .otherwise(sfn.Succeed(self, "NothingToRepair"))
        )
        approval.next(self.step("apply")).next(self.step("verify")).next(finish)
        return (
            validate.next(self.step("restore"))
            .next(self.step("diff"))
            .next(
                sfn.Choice(self, "AnythingToRepair?")
                .when(sfn.Condition.boolean_equals("$.repair_needed", True), approval)
                .otherwise(finish)
            )
        )


class RestoreWorkflow(Construct):
    """A scheduled restore test or DR drill that may restore into a throwaway RDS instance
    (:mod:`pgrunbook.workflows.restore.phases`)::

        Plan ─(not rds)→ Run → Tested
             ─(rds)→ Provision → WaitForTarget ⇄ CheckTarget → Run → Teardown → Tested
        a failure from Provision on → Teardown (always) → ReportFailure → Failed

    The operation's own function runs every phase (its handler takes a task event as well as
    a job's).  The schedules of the operation start this state machine instead of the
    function."""

    TITLES: ClassVar[dict[str, str]] = {
        "plan": "Plan",
        "provision": "Provision",
        "check_target": "CheckTarget",
        "run": "Run",
        "teardown": "Teardown",
        "fail": "ReportFailure",
    }

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        operation: str,
        function: lambda_.IFunction,
        state_machine_name: str,
        log_retention: logs.RetentionDays,
        runner: PhaseRunner | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        from pgrunbook.workflows.restore.phases import RETRIES as RESTORE_RETRIES

        self.function, self.retries, self.runner = function, RESTORE_RETRIES, runner
        fail = self._task("fail", "ReportFailure")
        fail.add_catch(
            sfn.Fail(
                self,
                "FailedUnreported",
                error="RestoreWorkflowFailed",
                cause="the run failed and its CRITICAL notice could not be sent: see this execution's history",
            ),
            errors=["States.ALL"],
            result_path="$.report_error",
        )
        fail.next(sfn.Fail(self, "Failed", error="RestoreWorkflowFailed", cause_path="$.failure_message"))

        def marked(phase: str, then: sfn.IChainable, title: str = "") -> sfn.Pass:
            """A Pass state that records which phase failed, then ``then``."""
            marker = sfn.Pass(
                self,
                f"{title or self.TITLES[phase]}Failed",
                result=sfn.Result.from_string(phase),
                result_path="$.failed_phase",
            )
            marker.next(then)
            return marker

        cleanup = self._task("teardown", "TeardownAfterFailure")
        cleanup.add_catch(fail, errors=["States.ALL"], result_path="$.teardown_error")
        cleanup.next(fail)

        plan = self._task("plan", "Plan")
        plan.add_catch(marked("plan", fail), errors=["States.ALL"], result_path="$.error")
        provision = self._task("provision", "Provision")
        check = self._task("check_target", "CheckTarget")
        run_lambda = self._task("run", "Run")
        for phase, task in (("provision", provision), ("check_target", check), ("run", run_lambda)):
            task.add_catch(marked(phase, cleanup), errors=["States.ALL"], result_path="$.error")
        run = self._dispatched("RunDispatch", "Run", run_lambda, self.node.find_child("RunFailed"))
        teardown = self._task("teardown", "Teardown")
        teardown.add_catch(marked("teardown", fail), errors=["States.ALL"], result_path="$.error")
        tested = sfn.Succeed(self, "Tested")
        teardown.next(tested)

        here = self._task("run", "RunHere")  # the embedded server or a configured one
        here.add_catch(marked("run", fail, "RunHere"), errors=["States.ALL"], result_path="$.error")
        run_here = self._dispatched("RunHereDispatch", "RunHere", here, self.node.find_child("RunHereFailed"))
        run_here.next(sfn.Succeed(self, "TestedHere"))

        wait = sfn.Wait(self, "WaitForTarget", time=sfn.WaitTime.seconds_path("$.poll_seconds"))
        ready = sfn.Choice(self, "TargetReady?")
        ready.when(sfn.Condition.boolean_equals("$.target_ready", True), run.next(teardown))
        ready.otherwise(wait)
        wait.next(check)
        check.next(ready)
        provision.next(wait)
        where = sfn.Choice(self, "ThrowawayTarget?")
        where.when(sfn.Condition.string_equals("$.target_kind", "rds"), provision)
        where.otherwise(run_here)

        self.log_group, self.state_machine = logged_state_machine(
            self,
            function,
            state_machine_name=state_machine_name,
            comment=f"pgrunbook {operation}: plan, a throwaway RDS target when needed, restore, always delete it",
            body=plan.next(where),
            timeout=Duration.hours(6),
            log_retention=log_retention,
        )
        if runner is not None:
            from infra.constructs.runners import acknowledge_run_task

            acknowledge_run_task(self.state_machine, runner.job)

    def _dispatched(
        self, construct_id: str, title: str, on_lambda: tasks.LambdaInvoke, failed: object
    ) -> Step:
        """The restore itself on the runner chosen for the run, when the deployment has Fargate."""
        if self.runner is None:
            return on_lambda
        from infra.constructs.runners import DispatchedPhase

        return DispatchedPhase(
            self,
            construct_id,
            phase="run",
            title=title,
            function=self.function,
            runner=self.runner,
            on_lambda=on_lambda,
            failed=failed,  # type: ignore[arg-type]  # the Pass that marks the run as failed
        )

    def _task(self, phase: str, title: str) -> tasks.LambdaInvoke:
        task = tasks.LambdaInvoke(
            self,
            title,
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(
                {"phase": phase, "state": sfn.JsonPath.entire_payload, "execution": sfn.JsonPath.execution_id}
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
        )
        add_retry(task, self.retries[phase])
        return task
