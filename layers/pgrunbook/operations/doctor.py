"""``pgrunbook doctor``: before the first deployment, what the jobs will need from the
database and the account, and exactly what to fix (issue 17, item 4).

Every check is a finding: ``ok`` when it passes, ``critical`` when a job would fail (the
exit status is then 1, with the list of fixes), ``warning`` when a job would work but less
well, ``info`` for what deployment itself will do.  Nothing is changed anywhere: the checks
only read.

- **database**: reachable; TLS for any host that is not this machine (``pg_stat_ssl``).
- **host**: a Supabase transaction pooler (port 6543) cannot run pg_dump (its snapshot and
  session settings need a session); the direct host ``db.<ref>.supabase.co`` is IPv6-only
  unless the project has the IPv4 add-on, which a Lambda function outside an IPv6 VPC
  cannot reach.
- **pg_dump_reads**: every table and sequence the profile dumps is readable (``SELECT``),
  and no table has row-level security that applies to the user (pg_dump stops at the first:
  the table owner, unless the table forces it, a superuser or a role with ``BYPASSRLS`` is
  needed).
- **pg_stat_statements**: present in the database (the health report's slowest statements).
- **buckets**: each bucket's region, versioning and Object Lock; one that does not exist yet
  is created by ``cdk deploy``.
- **restore_target**: the extensions, languages and collations the backups will need against
  what the restore target offers (the configured server, or the embedded builds).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pgrunbook.adapters.postgres.builds import ExtensionsNotHosted
from pgrunbook.adapters.postgres.connection import Database
from pgrunbook.adapters.postgres.dburl import ConnInfo
from pgrunbook.adapters.postgres.embedded import pick_version
from pgrunbook.adapters.postgres.fingerprints import excluded_schema_regex
from pgrunbook.adapters.postgres.introspect import capabilities, prerequisites, restore_needs
from pgrunbook.adapters.s3.store import ObjectStore
from pgrunbook.checks.performance import PG_STAT_STATEMENTS_HOWTO
from pgrunbook.domain.errors import PgRunbookError
from pgrunbook.domain.needs import Needs, unmet
from pgrunbook.domain.profiles import get_profile
from pgrunbook.domain.redact import one_line
from pgrunbook.domain.results import Report
from pgrunbook.operations.context import OperationContext

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")


def run(ctx: OperationContext, report: Report) -> None:
    settings = ctx.settings
    info = settings.conninfo()
    _host(report, info)
    try:
        db = Database.connect(info, application_name="pgrunbook-doctor")
    except PgRunbookError as exc:
        report.add(
            "database",
            "critical",
            f"{one_line(exc)}: check the URL (or the secret's host, port, user and password), the "
            "network path from where the jobs run (security groups, the Supabase network restrictions) "
            "and that the server accepts this user",
        )
        _buckets(report, ctx)
        return
    with db:
        _tls(report, db, info)
        profile = get_profile(settings.profile)
        _reads(report, db, profile.exclude_schemas)
        _statements(report, db)
        prereqs = prerequisites(db, profile.exclude_schemas, profile.exclude_extensions)
        needs = restore_needs(db, profile.exclude_schemas, profile.exclude_extensions, prereqs)
        major = db.server_version_num // 10000
        report.figures.update(server_version=db.server_version, extensions=len(needs.extensions))
    _buckets(report, ctx)
    _restore_target(report, ctx, needs, major)


# -- the database -------------------------------------------------------------------------------


def _host(report: Report, info: ConnInfo) -> None:
    host = (info.host or "").lower()
    if host.endswith(".pooler.supabase.com") and info.port == 6543:
        report.add(
            "host",
            "critical",
            f"{host}:6543 is Supabase's transaction pooler: pg_dump needs a session of its own (its "
            "snapshot and settings). Use the session pooler, port 5432 on the same host, or the direct host",
        )
    elif host.startswith("db.") and host.endswith(".supabase.co"):
        report.add(
            "host",
            "warning",
            f"{host} is Supabase's direct host, reachable over IPv6 only unless the project has the IPv4 "
            "add-on: Lambda functions outside a VPC with IPv6 cannot reach it. Use the session pooler "
            "(aws-0-<region>.pooler.supabase.com:5432, user postgres.<project ref>) unless you have either",
        )
    elif host.endswith(".pooler.supabase.com"):
        report.add("host", "ok", f"{host}:{info.port} is Supabase's session pooler: pg_dump works through it")


def _tls(report: Report, db: Database, info: ConnInfo) -> None:
    local = info.is_socket or (info.host or "localhost") in LOCAL_HOSTS
    encrypted = bool(
        db.scalar("SELECT ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()")
    )
    where = info.display()
    if encrypted:
        report.add("database", "ok", f"connected to {where} ({db.server_version}) with TLS")
    elif local:
        report.add("database", "ok", f"connected to {where} ({db.server_version}) on this machine")
    else:
        report.add(
            "database",
            "critical",
            f"connected to {where} without TLS: the jobs would send the password and every row in "
            "clear text. Enable TLS on the server and remove sslmode=disable from the URL",
        )


_UNREADABLE = """
SELECT n.nspname::text AS schema, c.relname::text AS name, c.relkind::text AS kind,
       NOT pg_catalog.has_table_privilege(c.oid, 'SELECT') AS denied,
       c.relrowsecurity AND NOT (r.rolsuper OR r.rolbypassrls
         OR (pg_catalog.pg_has_role(c.relowner, 'USAGE') AND NOT c.relforcerowsecurity)) AS rls
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_roles r ON r.rolname = current_user
WHERE c.relkind IN ('r', 'p', 'S', 'm') AND n.nspname !~ :excluded
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""


def _reads(report: Report, db: Database, exclude_schemas: Sequence[str]) -> None:
    rows = db.rows(_UNREADABLE, excluded=excluded_schema_regex(exclude_schemas))
    denied = [f"{r['schema']}.{r['name']}" for r in rows if r["denied"]]
    policed = [f"{r['schema']}.{r['name']}" for r in rows if r["rls"] and not r["denied"]]
    user = db.scalar("SELECT current_user")
    if denied:
        report.add(
            "pg_dump_reads",
            "critical",
            f"{user} cannot read {len(denied)} of {len(rows)} tables and sequences, and pg_dump stops at "
            f"the first: {', '.join(denied[:10])}{' ...' if len(denied) > 10 else ''}. GRANT SELECT on "
            "them (or use their owner)",
            tables=denied[:50],
        )
    if policed:
        report.add(
            "pg_dump_reads",
            "critical",
            f"{len(policed)} tables have row-level security that applies to {user}, and pg_dump refuses "
            f"to dump them: {', '.join(policed[:10])}{' ...' if len(policed) > 10 else ''}. Use their "
            f"owner, or ALTER ROLE {user} BYPASSRLS (Supabase: the postgres role has it)",
            tables=policed[:50],
        )
    if not denied and not policed:
        report.add(
            "pg_dump_reads", "ok", f"{user} can read all {len(rows)} tables and sequences pg_dump dumps"
        )


def _statements(report: Report, db: Database) -> None:
    if db.scalar("SELECT count(*) FROM pg_catalog.pg_extension WHERE extname = 'pg_stat_statements'"):
        report.add(
            "pg_stat_statements",
            "ok",
            "pg_stat_statements is installed: the health report lists the slowest statements",
        )
    else:
        report.add(
            "pg_stat_statements",
            "warning",
            f"pg_stat_statements is not installed, so the health report cannot list the slowest statements: "
            f"{PG_STAT_STATEMENTS_HOWTO}",
        )


# -- the account --------------------------------------------------------------------------------


def _buckets(report: Report, ctx: OperationContext) -> None:
    settings = ctx.settings
    stores = [("primary", settings.primary_store())]
    if settings.dr_bucket:
        stores.append(("DR", settings.dr_store()))
    else:
        report.add("buckets", "warning", "no DR bucket (PGRUNBOOK_DR_BUCKET): backups stay in one region")
    for label, store in stores:
        _bucket(report, label, store)


def _bucket(report: Report, label: str, store: ObjectStore) -> None:
    client, name = store.client, store.bucket
    try:
        location = client.get_bucket_location(Bucket=name).get("LocationConstraint") or "us-east-1"
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in ("NoSuchBucket", "404"):
            report.add(
                "buckets", "info", f"the {label} bucket {name} does not exist yet: cdk deploy creates it"
            )
        else:
            report.add(
                "buckets",
                "critical",
                f"the {label} bucket {name} cannot be read ({code or one_line(exc)}): it belongs to another "
                "account, or these credentials lack s3:GetBucketLocation",
            )
        return
    except BotoCoreError as exc:
        report.add(
            "buckets", "critical", f"S3 is not reachable for the {label} bucket {name}: {one_line(exc)}"
        )
        return
    if location != store.region:
        report.add(
            "buckets",
            "critical",
            f"the {label} bucket {name} is in {location}, not {store.region} as configured: set the region "
            "to the bucket's, or name a bucket in that region",
        )
        return
    facts: dict[str, Any] = {}
    versioning = client.get_bucket_versioning(Bucket=name).get("Status", "Disabled")
    try:
        lock = client.get_object_lock_configuration(Bucket=name)["ObjectLockConfiguration"]
        facts["object_lock"] = lock.get("ObjectLockEnabled") == "Enabled"
    except ClientError:
        facts["object_lock"] = False
    if versioning != "Enabled":
        report.add(
            "buckets",
            "warning",
            f"the {label} bucket {name} ({location}) has versioning {versioning.lower()}: an overwrite or a "
            "delete (an attacker's, a mistake) cannot be undone. Enable versioning",
        )
    else:
        lock = "with Object Lock" if facts["object_lock"] else "without Object Lock (backups can be deleted)"
        report.add("buckets", "ok", f"the {label} bucket {name} ({location}): versioned, {lock}")


# -- the restore target -------------------------------------------------------------------------


def _restore_target(report: Report, ctx: OperationContext, needs: Needs, major: int) -> None:
    settings = ctx.settings
    try:
        target = settings.restore_target()
    except PgRunbookError as exc:
        report.add("restore_target", "critical", f"the restore target cannot be read: {one_line(exc)}")
        return
    if target is None:
        wanted = [e.name for e in needs.extensions]
        try:
            version = pick_version(major, wanted, builds_dir=settings.embedded_path)
        except ExtensionsNotHosted as exc:
            report.add(
                "restore_target",
                "critical",
                f"no embedded PostgreSQL build hosts {', '.join(exc.extensions) or 'these extensions'} on "
                f"PostgreSQL {major} or newer, so restore tests would be untested: set "
                "PGRUNBOOK_RESTORE_TARGET_URL to a server that has them, or PGRUNBOOK_RESTORE_RDS_SUBNET_GROUP "
                "for a throwaway RDS instance",
            )
            return
        report.add(
            "restore_target",
            "ok",
            f"the embedded PostgreSQL {version} hosts the {len(wanted)} extensions the backups need",
        )
        return
    try:
        with Database.connect(target, application_name="pgrunbook-doctor") as db:
            offered = capabilities(db, target.display())
            target_major = db.server_version_num // 10000
    except PgRunbookError as exc:
        report.add("restore_target", "critical", f"the restore target: {one_line(exc)}")
        return
    if target_major < major:
        report.add(
            "restore_target",
            "critical",
            f"the restore target runs PostgreSQL {target_major}, older than the database's {major}: "
            "pg_restore cannot load a newer server's dump reliably. Use PostgreSQL "
            f"{major} or newer",
        )
    gaps = unmet(needs, offered, remedy="point the restore target at a server that has it")
    if gaps:
        report.add(
            "restore_target",
            "critical",
            f"the restore target {target.display()} lacks what the backups need: "
            + "; ".join(f"{g.need} ({g.detail})" for g in gaps),
            gaps=[g.to_dict() for g in gaps],
        )
    elif target_major >= major:
        report.add(
            "restore_target", "ok", f"the restore target {target.display()} hosts everything the backups need"
        )
