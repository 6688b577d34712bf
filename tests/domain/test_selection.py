"""Which table-of-contents entries a partial restore takes (pure; the listing is a real
``pg_restore --list --verbose`` of tests/fixtures/music_store.sql plus a schema with a space,
a view, a trigger function and a foreign key into public)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgrunbook.domain.errors import ConfigError
from pgrunbook.domain.selection import TableName, parse_tables, parse_toc, ready_after, select

LISTING = (Path(__file__).parents[1] / "fixtures" / "music_store.toc").read_text()
ENTRIES = parse_toc(LISTING)
KNOWN = [
    TableName("public", n)
    for n in ("album", "artist", "audit", "events_2025", "events_2026", "play_log", "playlist_track", "track")
] + [TableName("Odd Schema", "Weird Name")]


def lines(selection) -> set[str]:
    """The chosen entries as 'KIND rest' without owners, for readable assertions."""
    by_id = {e.id: e for e in ENTRIES}
    return {f"{by_id[i].kind} {by_id[i].rest.rsplit(' ', 1)[0]}".strip() for i in selection.ids}


def test_parse_reads_kinds_and_dependencies():
    by_kind = {(e.kind, e.rest) for e in ENTRIES}
    assert ("TABLE DATA", "public track music_owner") in by_kind
    assert ("FK CONSTRAINT", "public track track_album_id_fkey music_owner") in by_kind
    fk = next(e for e in ENTRIES if e.rest.startswith("public track track_album_id_fkey"))
    assert len(fk.deps) == 3


def test_a_table_comes_with_what_belongs_to_it_and_what_it_needs():
    chosen = lines(select(ENTRIES, [TableName("public", "track")], known=KNOWN))
    for wanted in (
        "TABLE public track",
        "TABLE DATA public track",
        "CONSTRAINT public track track_pkey",
        "INDEX public track_album",
        "ACL public TABLE track",
        "TRIGGER public track touch_track",
        "FUNCTION public touch()",  # the trigger's function, a prerequisite
        "ENCODING -",
    ):
        assert wanted in chosen, wanted
    for unwanted in (
        "TABLE public album",
        "TABLE DATA public album",
        "VIEW public track_names",
        "DATABASE - ms",
    ):
        assert unwanted not in chosen, unwanted
    assert not any(line.startswith("FK CONSTRAINT") for line in chosen)


def test_foreign_keys_that_point_outside_are_skipped_and_listed():
    selection = select(
        ENTRIES, [TableName("public", "track"), TableName("public", "playlist_track")], known=KNOWN
    )
    assert selection.skipped == [
        "foreign key track_album_id_fkey on public.track references public.album, which is not restored: skipped"
    ]
    assert "FK CONSTRAINT public playlist_track playlist_track_track_id_fkey" in lines(selection)


def test_serial_and_identity_sequences_come_with_their_tables():
    album = lines(select(ENTRIES, [TableName("public", "album")], known=KNOWN))
    assert {"SEQUENCE public album_album_id_seq", "SEQUENCE OWNED BY public album_album_id_seq"} <= album
    assert {"SEQUENCE SET public album_album_id_seq", "DEFAULT public album album_id"} <= album
    artist = lines(select(ENTRIES, [TableName("public", "artist")], known=KNOWN))
    assert {"SEQUENCE public artist_artist_id_seq", "SEQUENCE SET public artist_artist_id_seq"} <= artist
    assert "TYPE public mood" in artist  # the enum its column uses
    assert "SEQUENCE public album_album_id_seq" not in artist


def test_a_partitioned_table_brings_its_partitions_and_a_partition_stands_alone():
    events = select(ENTRIES, [TableName("public", "events")], known=KNOWN)
    assert {t.qualified for t in events.tables} == {
        "public.events",
        "public.events_2025",
        "public.events_2026",
    }
    assert {"TABLE ATTACH public events_2025", "INDEX ATTACH public events_2025_pkey"} <= lines(events)
    leaf = select(ENTRIES, [TableName("public", "events_2025")], known=KNOWN)
    assert {t.qualified for t in leaf.tables} == {"public.events_2025"}
    chosen = lines(leaf)
    assert "CONSTRAINT public events_2025 events_2025_pkey" in chosen  # its own key stays
    assert "TABLE ATTACH public events_2025" not in chosen
    assert "TABLE public events" not in chosen


def test_a_schema_with_a_space_and_its_foreign_key_out():
    selection = select(ENTRIES, schemas=["Odd Schema"], known=KNOWN)
    assert [t.qualified for t in selection.tables] == ["Odd Schema.Weird Name"]
    assert "SCHEMA - Odd Schema" in lines(selection)
    assert selection.skipped == [
        "foreign key Weird Name_album_id_fkey on Odd Schema.Weird Name references public.album, which is not "
        "restored: skipped"
    ]


def test_use_list_comments_out_what_is_not_chosen():
    selection = select(ENTRIES, [TableName("public", "audit")], known=KNOWN)
    text = selection.use_list(LISTING)
    active = [line for line in text.splitlines() if line and not line.startswith(";")]
    assert any("TABLE DATA public audit" in line for line in active)
    assert not any("TABLE DATA public track" in line for line in active)
    assert len(active) == len(selection.ids)


def test_bad_selections_are_refused():
    with pytest.raises(ConfigError, match="not in the backup"):
        select(ENTRIES, [TableName("public", "nope")], known=KNOWN)
    with pytest.raises(ConfigError, match="schema nope is not in the backup"):
        select(ENTRIES, schemas=["nope"], known=KNOWN)
    with pytest.raises(ConfigError, match=r"not schema\.table"):
        parse_tables("track")
    assert parse_tables("Odd Schema.Weird Name, public.track", [("Odd Schema", "Weird Name")]) == [
        TableName("Odd Schema", "Weird Name"),
        TableName("public", "track"),
    ]


def test_an_extension_does_not_pull_in_another_tables_index():
    """Extensions are always restored; an unchosen table's index that uses one is neither
    restored nor reported (it is not the chosen tables' concern)."""
    listing = "\n".join(
        [
            "10; 3079 16384 EXTENSION - pg_trgm ",
            "11; 0 0 COMMENT - EXTENSION pg_trgm ",
            ";\tdepends on: 10",
            "20; 1259 16400 TABLE public a postgres",
            "21; 1259 16410 TABLE public b postgres",
            "30; 1259 16420 INDEX public b_trgm postgres",
            ";\tdepends on: 21 10",
            "31; 1259 16430 INDEX public a_trgm postgres",
            ";\tdepends on: 20 10",
        ]
    )
    entries = parse_toc(listing)
    selection = select(entries, [TableName("public", "a")])
    assert selection.ids == {10, 11, 20, 31}
    assert selection.skipped == []


def test_a_chosen_schemas_view_over_a_table_left_out_is_skipped_and_listed():
    listing = "\n".join(
        [
            "5; 2615 16380 SCHEMA - reporting postgres",
            "20; 1259 16400 TABLE public orders postgres",
            "21; 1259 16410 TABLE reporting totals postgres",
            ";\tdepends on: 5",
            "22; 1259 16420 VIEW reporting order_totals postgres",
            ";\tdepends on: 20 5",
            "23; 1259 16430 VIEW reporting totals_view postgres",
            ";\tdepends on: 21 5",
            "24; 0 0 ACL reporting TABLE order_totals postgres",
            ";\tdepends on: 22",
        ]
    )
    selection = select(parse_toc(listing), schemas=["reporting"])
    assert selection.ids == {5, 21, 23}
    assert selection.skipped == ["view reporting.order_totals reads public.orders, which is not restored"]


def test_tables_can_be_verified_once_their_data_and_exclusive_items_are_done_except_partitions():
    ready = ready_after(ENTRIES, KNOWN)
    assert {t.qualified for t in ready} == {t.qualified for t in KNOWN} - {
        "public.events_2025",
        "public.events_2026",
    }
    by_id = {e.id: e for e in ENTRIES}
    track = ready[TableName("public", "track")]
    assert {f"{by_id[i].kind} {by_id[i].rest}" for i in track} == {
        "TABLE DATA public track music_owner",
        "CONSTRAINT public track track_pkey music_owner",  # ALTER TABLE ... ADD PRIMARY KEY
    }  # not its foreign key, indexes or grants: they do not lock it exclusively
    assert 2653 in ready[TableName("Odd Schema", "Weird Name")]
