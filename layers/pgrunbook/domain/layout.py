"""Where everything lives in a bucket: the S3 key layout, written down once for the library
(which reads and writes the keys) and for the CDK app (whose IAM grants name the same paths).

Under ``<prefix>/<database>/``:

* ``backups/<backup-id>/<file>`` and ``backups/<backup-id>/manifest.json``, written last;
* ``reports/<operation>/<report-id>.json``: every run's report;
* ``leases/<backup-id>/<expires>-<token>.json``: "a restore is reading this backup";
* ``runs/<execution>/<phase>-in.json`` and ``-out.json``: a workflow phase's state handed to a
  Fargate task and back (a container override is capped at 8 KB; deleted once read back);
* ``pages/status-<date>.html``: the weekly status page (:mod:`pgrunbook.operations.status_page`).

Outside the bucket, the application's maintenance-mode switch is the SSM parameter
``/<prefix>/<database>/maintenance`` (:attr:`Layout.maintenance_parameter`).
"""

from __future__ import annotations

from dataclasses import dataclass

BACKUPS = "backups"
REPORTS = "reports"
LEASES = "leases"
RUNS = "runs"
PAGES = "pages"
MANIFEST_NAME = "manifest.json"


def everything_under(folder: str, *parts: str) -> str:
    """A path pattern below the database's root, as an IAM grant names it: ``backups/*``,
    ``reports/backup/*``."""
    return "/".join((folder, *parts, "*"))


@dataclass(frozen=True)
class Layout:
    prefix: str  # PGRUNBOOK_PREFIX, without slashes at either end
    database: str  # the database's name in the catalog

    @property
    def root(self) -> str:
        return f"{self.prefix}/{self.database}"

    @property
    def maintenance_parameter(self) -> str:
        return f"/{self.root}/maintenance"

    # -- backups ---------------------------------------------------------------------------

    @property
    def backups_prefix(self) -> str:
        return f"{self.root}/{BACKUPS}/"

    def backup_prefix(self, backup_id: str) -> str:
        return f"{self.backups_prefix}{backup_id}/"

    def backup_key(self, backup_id: str, name: str) -> str:
        return f"{self.backup_prefix(backup_id)}{name}"

    def manifest_key(self, backup_id: str) -> str:
        return self.backup_key(backup_id, MANIFEST_NAME)

    # -- reports ---------------------------------------------------------------------------

    def reports_prefix(self, operation: str) -> str:
        return f"{self.root}/{REPORTS}/{operation}/"

    def report_key(self, operation: str, report_id: str) -> str:
        return f"{self.reports_prefix(operation)}{report_id}.json"

    # -- leases ----------------------------------------------------------------------------

    @property
    def leases_prefix(self) -> str:
        return f"{self.root}/{LEASES}/"

    def lease_key(self, backup_id: str, expires_stamp: str, token: str) -> str:
        return f"{self.leases_prefix}{backup_id}/{expires_stamp}-{token}.json"

    # -- workflow phases on Fargate ------------------------------------------------------------

    def handoff_key(self, execution: str, phase: str, direction: str) -> str:
        """A phase's state going to its task (``in``) or coming back (``out``)."""
        return f"{self.root}/{RUNS}/{execution}/{phase}-{direction}.json"

    # -- the weekly status page ---------------------------------------------------------------

    def page_key(self, day: str) -> str:
        """The status page written on ``day`` (YYYY-MM-DD)."""
        return f"{self.root}/{PAGES}/status-{day}.html"
