"""The CDK app (``cdk.json``: ``.venv/bin/python infra/app.py``).

Two stacks from one configuration (``cdk.json``'s ``pgrunbook`` context, see infra/config.py):
``<stem>-dr`` in the DR region, then ``<stem>-primary`` in the primary region, where the stem
is ``<prefix>-<database>`` for one database and ``<prefix>`` for a ``databases`` list.  Every synthesis runs the cdk-nag AwsSolutions checks: a finding that is
not acknowledged, with its reason, in the construct it concerns fails the synthesis.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
# Run as a script (cdk.json: `.venv/bin/python infra/app.py`), Python puts infra/ first on the
# path, where infra/constructs/ would shadow the `constructs` library that aws_cdk imports:
# the checkout's root goes there instead, so that `infra` is importable as a package.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE.parent))

import aws_cdk as cdk  # noqa: E402 - after the path is set
from cdk_nag import AwsSolutionsChecks  # noqa: E402

from infra.config import ConfigurationError, Deployment  # noqa: E402
from infra.stacks import DrStack, PrimaryStack  # noqa: E402


def build(app: cdk.App) -> tuple[PrimaryStack, DrStack]:
    deployment = Deployment.from_context(app.node.try_get_context("pgrunbook"))
    config = deployment.shared
    account = config.account or os.environ.get("CDK_DEFAULT_ACCOUNT")
    what = (
        ", ".join(d.database_name for d in deployment.databases)
        if deployment.listed
        else config.database_name
    )
    dr = DrStack(
        app,
        f"{deployment.stem}-dr",
        deployment=deployment,
        env=cdk.Environment(account=account, region=config.dr_region),
        description=f"pgrunbook {what}: DR bucket and monthly DR drill ({config.dr_region})",
    )
    primary = PrimaryStack(
        app,
        f"{deployment.stem}-primary",
        deployment=deployment,
        env=cdk.Environment(account=account, region=config.primary_region),
        description=f"pgrunbook {what}: backups, scheduled runbook jobs, alarms",
    )
    primary.add_stack_dependency(dr)  # the backup job copies into the DR bucket
    cdk.Tags.of(app).add("application", "pgrunbook")
    if not deployment.listed:  # the list form tags each database's nested stack
        cdk.Tags.of(app).add("database", config.database_name)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    return primary, dr


def main() -> None:
    app = cdk.App()
    try:
        build(app)
    except ConfigurationError as exc:  # cdk.json says something wrong: one line, not a traceback
        print(f"pgrunbook: cdk.json: {exc}", file=sys.stderr)
        sys.exit(2)
    app.synth()


if __name__ == "__main__":
    main()
