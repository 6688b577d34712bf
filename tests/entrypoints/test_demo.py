"""`make demo` runs the whole story; a small sample keeps this test quick."""

from __future__ import annotations

import io
import json

from pgrunbook.entrypoints.demo import run_demo


def test_demo_end_to_end(tmp_path):
    out = io.StringIO()
    page = tmp_path / "status.html"
    assert run_demo(tasks=3000, out=out, json_out=True, html=str(page)) == 0
    report = json.loads(out.getvalue())
    assert report["operation"] == "demo" and report["status"] == "ok"
    steps = report["payload"]
    assert steps["backup"]["status"] == "ok"
    assert steps["backup"]["payload"]["dr"]["status"] == "copied"
    restore = steps["restore-test"]["payload"]
    assert restore["source"] == "dr" and restore["integrity_pct"] == 100.0
    assert {t["table"] for t in restore["tables"]} >= {"public.clients", "public.projects"}
    [line] = steps["status"]["payload"]["backups"]
    assert line["restorable"] and line["dr_copy"] is True
    # make demo's status page: the run's one backup and restore test on their charts
    text = page.read_text()
    assert steps["status"]["figures"]["html"] == str(page) and line["backup_id"] in text
    assert 'id="backup-size"' in text and text.count('data-points="1"') >= 3


def test_demo_dataset_is_deterministic(pg18):
    from pgrunbook.adapters.postgres.connection import Database
    from pgrunbook.entrypoints.demo import load_demo_dataset

    sums = []
    with Database.connect(pg18.conninfo) as admin:
        for name in ("demo_a", "demo_b"):
            load_demo_dataset(admin, name, projects=40, avg_tasks=10)
            with Database.connect(pg18.conninfo.with_dbname(name)) as db:
                sums.append(db.run("SELECT md5(string_agg(p::text, '' ORDER BY id)) FROM projects p")[0][0])
                tasks = db.scalar("SELECT sum(jsonb_array_length(tasks)) FROM projects")
            admin.run(f"DROP DATABASE {name} WITH (FORCE)")
    assert sums[0] == sums[1]
    assert 300 <= tasks <= 500  # about projects * avg_tasks
