"""Point-in-time recovery: the runbook's SEV-1 procedure as phases a workflow runs.

Preparation (validate the target, maintenance mode on, connections counted, a safety point),
a person's approval, recovery execution (start, then poll with a deadline), verification of
the recovered database and service restoration (cutover, maintenance mode off, the RESOLVED
notice).  The phases are plain functions over a JSON state (:mod:`pgrunbook.workflows.pitr.phases`),
run by the Step Functions state machine the CDK app deploys, or one after the other on a
laptop (``pgrunbook pitr start --local``).  The provider (:mod:`pgrunbook.workflows.pitr.providers`)
knows how its platform recovers: Supabase's Management API, RDS/Aurora point-in-time
restore, or pgrunbook's own (logical) backups.
"""
