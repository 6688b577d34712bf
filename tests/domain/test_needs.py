"""What a restore needs from its target, compared with what a target offers; the untested status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from pgrunbook.domain.manifest import Manifest
from pgrunbook.domain.needs import (
    Capabilities,
    Collation,
    Extension,
    Needs,
    needs_from_toc,
    unmet,
    version_key,
)
from pgrunbook.domain.notices import critical_message, report_notice
from pgrunbook.domain.results import Report
from pgrunbook.operations.registry import wording

NOW = datetime(2026, 12, 3, 5, 0, tzinfo=UTC)
REMEDY = "use another target"


def target(**overrides) -> Capabilities:
    values: dict[str, Any] = {
        "server": "the embedded PostgreSQL",
        "major": 18,
        "available": {"vector": ["0.8.0", "0.8.1"], "plpgsql": ["1.0"], "citext": ["1.4", "1.5", "1.6"]},
        "languages": {"plpgsql", "sql", "c", "internal"},
        "collations": {"pg_catalog.C", "pg_catalog.POSIX", "pg_catalog.default", "pg_catalog.und-x-icu"},
        "libc_locales": {"C", "POSIX", "C.UTF-8", "en_US.utf8"},
        "icu": True,
    }
    values.update(overrides)
    return Capabilities(**values)


def test_version_keys():
    assert version_key("1.6") == (1, 6) and version_key("0.8.1") == (0, 8, 1)
    assert version_key("1.0beta") is None and version_key("") is None


def test_a_target_with_everything_meets_the_needs():
    needs = Needs(
        extensions=[Extension("citext", "1.6", "public"), Extension("vector", "0.8.0", "public")],
        languages=["plpgsql", "sql"],
        collations=[
            Collation("pg_catalog", "C"),
            Collation("public", "german", "icu", "de-DE", defined=True),
        ],
    )
    assert unmet(needs, target(), remedy=REMEDY) == []


def test_each_missing_need_is_named_with_its_remedy():
    needs = Needs(
        extensions=[
            Extension("hstore", "1.8", "public"),  # not there at all
            Extension("citext", "1.7", "public"),  # there, but older
            Extension("timescaledb", "2.14.2", "public"),  # there, but not preloaded
        ],
        languages=["plv8"],
        collations=[
            Collation("pg_catalog", "de_DE.utf8", "libc", "de_DE.utf8"),  # the server's own, missing
            Collation("public", "german", "icu", "de-DE", defined=True),  # needs ICU
            Collation("public", "fr", "libc", "fr_FR.utf8", defined=True),  # needs the OS locale
        ],
    )
    offered = target(icu=False, available={**target().available, "timescaledb": ["2.14.2"]})
    gaps = unmet(needs, offered, remedy=REMEDY)
    assert [g.need for g in gaps] == [
        "extension hstore",
        "extension citext",
        "extension timescaledb",
        "language plv8",
        "collation pg_catalog.de_DE.utf8",
        "collation public.german",
        "collation public.fr",
    ]
    assert "citext 1.7" in gaps[1].detail and "1.4, 1.5, 1.6" in gaps[1].detail
    assert "shared_preload_libraries" in gaps[2].detail
    assert gaps[0].remedy == f"install hstore on the target, or {REMEDY}"
    assert all(REMEDY in g.remedy for g in gaps)
    # a language its extension brings is not missing
    assert (
        unmet(Needs(extensions=[], languages=["plv8"]), target(available={"plv8": ["3.2"]}), remedy=REMEDY)
        == []
    )


def test_needs_from_a_dump_table_of_contents():
    listing = """;
; Archive created at 2026-12-03 05:00:00 UTC
;     dbname: app
; Selected TOC Entries:
;
4; 3079 16390 EXTENSION - citext
4421; 0 0 COMMENT - EXTENSION citext
3; 3079 16385 EXTENSION - hstore
;2; 3079 16384 EXTENSION - commented_out
250; 3456 16500 COLLATION public german postgres
216; 1259 16400 TABLE public customers postgres
"""
    needs = needs_from_toc(listing)
    assert [e.name for e in needs.extensions] == ["citext", "hstore"]
    assert [c.qualified for c in needs.collations] == ["public.german"]
    assert needs.recorded is False


def test_needs_travel_in_the_manifest_and_old_manifests_have_none_recorded():
    needs = Needs(
        extensions=[Extension("citext", "1.6", "public")],
        languages=["plpgsql"],
        collations=[Collation("public", "german", "icu", "de-DE", defined=True)],
        encoding="UTF8",
        locale="C.UTF-8",
    )
    manifest = Manifest(
        backup_id="20261203T050000.000Z-abc123",
        database="app",
        tiers=["daily"],
        created_by="pytest",
        started_at=NOW,
        completed_at=NOW,
        retention_until=NOW,
        snapshot={"time": NOW.isoformat()},
        server={"version_num": 180000},
        tools={"pg_dump": "18.0"},
        options={},
        files=[],
        tables=[],
        needs=needs,
    )
    again = Manifest.from_json(manifest.to_json())
    assert again.needs == needs and again.needs.recorded
    data = json.loads(manifest.to_json())
    del data["needs"]
    assert Manifest.from_json(json.dumps(data).encode()).needs.recorded is False


@pytest.mark.parametrize(
    ("severities", "status", "code"),
    [((), "untested", 1), (("warning", "info"), "untested", 1), (("critical",), "critical", 1)],
)
def test_an_untested_report_is_neither_ok_nor_failed(severities, status, code):
    report = Report.start("restore-test", "app", NOW)
    report.untested = "backup X was not tested: the embedded PostgreSQL cannot host it (extension citext)"
    for severity in severities:
        report.add("check", severity, severity)
    assert (report.status, report.exit_code) == (status, code)
    assert Report.from_dict(report.to_dict()).status == status


def test_an_untested_backup_has_its_own_notice():
    report = Report.start("restore-test", "app", NOW)
    report.untested = "backup X was not tested: the embedded PostgreSQL cannot host it (extension citext)"
    report.add("preflight", "warning", "extension citext: not there; remedy: install it")
    report.finished_at = NOW.isoformat()
    notice = report_notice(report, wording("restore-test"))
    assert notice is not None
    assert notice.subject == "UNTESTED - Backup Not Tested - app - 2026-12-03T05:00:00Z"
    assert notice.message.startswith(f"Summary: {report.untested}")
    assert "Nothing is known about whether this backup restores" in notice.message
    assert notice.attributes["severity"] == "untested"
    assert "extension citext" in critical_message(report, wording("restore-test"))
