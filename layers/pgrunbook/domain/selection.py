"""A partial restore: which entries of a dump's table of contents restore the chosen tables.

``pg_restore --list --verbose`` prints every entry of the archive with the entries it depends
on.  :func:`select` starts from the chosen tables (``--tables schema.table``, a partitioned
table with its partitions) and schemas (``--schemas s``: everything in them), and adds:

* what belongs to a chosen table: its data, its indexes and constraints, the sequences it owns
  and their values, defaults, triggers, policies, row security, rules, statistics, comments
  and grants, a partition's attachment when both sides are chosen;
* what those need and a restore cannot do without (pulled in transitively): their schemas,
  types, domains, functions, collations, sequences a default uses, and every extension;

and leaves out anything that refers to a table outside the set: a foreign key that points
outside is *skipped and listed*, so the operator knows which references the restored tables
lost; other such entries (a view over a chosen and an unchosen table) are left out.

Entry lines are ``<id>; <catalog> <oid> <DESC> <schema> <tag> <owner>``, unquoted, so a name
with spaces is matched against the names the caller knows rather than split on spaces.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pgrunbook.domain.errors import ConfigError

# Entry kinds, longest first so that "TABLE DATA" is not read as "TABLE".
_KINDS = sorted(
    (
        "ACCESS METHOD",
        "ACL",
        "AGGREGATE",
        "BLOB",
        "BLOB METADATA",
        "BLOBS",
        "CAST",
        "CHECK CONSTRAINT",
        "COLLATION",
        "COMMENT",
        "CONSTRAINT",
        "CONVERSION",
        "DATABASE",
        "DATABASE PROPERTIES",
        "DEFAULT",
        "DEFAULT ACL",
        "DOMAIN",
        "ENCODING",
        "EVENT TRIGGER",
        "EXTENSION",
        "FK CONSTRAINT",
        "FOREIGN DATA WRAPPER",
        "FOREIGN SERVER",
        "FOREIGN TABLE",
        "FUNCTION",
        "INDEX",
        "INDEX ATTACH",
        "LARGE OBJECT",
        "MATERIALIZED VIEW",
        "MATERIALIZED VIEW DATA",
        "OPERATOR",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "POLICY",
        "PROCEDURAL LANGUAGE",
        "PROCEDURE",
        "PUBLICATION",
        "PUBLICATION TABLE",
        "PUBLICATION TABLES IN SCHEMA",
        "ROW SECURITY",
        "RULE",
        "SCHEMA",
        "SEARCHPATH",
        "SECURITY LABEL",
        "SEQUENCE",
        "SEQUENCE OWNED BY",
        "SEQUENCE SET",
        "SERVER",
        "SHELL TYPE",
        "STATISTICS",
        "STATISTICS DATA",
        "STDSTRINGS",
        "SUBSCRIPTION",
        "TABLE",
        "TABLE ATTACH",
        "TABLE DATA",
        "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER",
        "TEXT SEARCH TEMPLATE",
        "TRANSFORM",
        "TRIGGER",
        "TYPE",
        "USER MAPPING",
        "VIEW",
    ),
    key=len,
    reverse=True,
)
RELATIONS = frozenset({"TABLE", "VIEW", "MATERIALIZED VIEW", "FOREIGN TABLE"})
# What a chosen object may need and a restore cannot do without: pulled in with it.
PREREQUISITES = frozenset(
    {
        "SCHEMA",
        "TYPE",
        "SHELL TYPE",
        "DOMAIN",
        "FUNCTION",
        "PROCEDURE",
        "AGGREGATE",
        "COLLATION",
        "CONVERSION",
        "EXTENSION",
        "PROCEDURAL LANGUAGE",
        "SEQUENCE",
        "OPERATOR",
        "OPERATOR CLASS",
        "OPERATOR FAMILY",
        "CAST",
        "TEXT SEARCH CONFIGURATION",
        "TEXT SEARCH DICTIONARY",
        "TEXT SEARCH PARSER",
        "TEXT SEARCH TEMPLATE",
    }
)
# What belongs to the objects it depends on: restored when they are.
BELONGING = frozenset(
    {
        "TABLE DATA",
        "SEQUENCE OWNED BY",
        "SEQUENCE SET",
        "DEFAULT",
        "CONSTRAINT",
        "CHECK CONSTRAINT",
        "FK CONSTRAINT",
        "INDEX",
        "INDEX ATTACH",
        "TABLE ATTACH",
        "TRIGGER",
        "POLICY",
        "ROW SECURITY",
        "RULE",
        "STATISTICS",
        "STATISTICS DATA",
        "COMMENT",
        "ACL",
        "SECURITY LABEL",
    }
)
ALWAYS = frozenset({"ENCODING", "STDSTRINGS", "SEARCHPATH", "EXTENSION"})
_LINE = re.compile(r"^(\d+); (\d+) (\d+) (.*)$")
_DEPENDS = re.compile(r"^;\s+depends on:((?: \d+)*)\s*$")


@dataclass(frozen=True)
class Entry:
    id: int
    kind: str
    rest: str  # "<schema> <tag> <owner>", unquoted
    line: str
    deps: tuple[int, ...] = ()

    def names(self, schema: str, name: str) -> bool:
        """Whether this entry is about ``schema.name`` (a relation entry's schema and tag)."""
        return self.rest.startswith(f"{schema} {name} ") or self.rest == f"{schema} {name}"

    def in_schema(self, schema: str) -> bool:
        if self.kind == "SCHEMA":
            return self.rest.startswith(f"- {schema} ") or self.rest == f"- {schema}"
        return self.rest.startswith(f"{schema} ")


def parse_toc(listing: str) -> list[Entry]:
    """The entries of a ``pg_restore --list --verbose`` listing, with their dependencies."""
    entries: list[Entry] = []
    pending: tuple[int, str, str, str] | None = None

    def flush(deps: tuple[int, ...] = ()) -> None:
        nonlocal pending
        if pending is not None:
            entries.append(Entry(pending[0], pending[1], pending[2], pending[3], deps))
            pending = None

    for line in listing.splitlines():
        match = _LINE.match(line)
        if match:
            flush()
            rest = match.group(4)
            kind = next((k for k in _KINDS if rest == k or rest.startswith(k + " ")), rest.split(" ", 1)[0])
            pending = (int(match.group(1)), kind, rest[len(kind) :].strip(), line)
            continue
        depends = _DEPENDS.match(line)
        if depends and pending is not None:
            flush(tuple(int(d) for d in depends.group(1).split()))
    flush()
    return entries


@dataclass(frozen=True)
class TableName:
    schema: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


def parse_tables(text: str, known: Iterable[tuple[str, str]] = ()) -> list[TableName]:
    """``schema.table,...`` as table names.  A name with a dot in it is matched against
    ``known`` (schema, table) pairs first; otherwise the first dot separates the schema."""
    known_pairs = {f"{s}.{n}": TableName(s, n) for s, n in known}
    tables = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item in known_pairs:
            tables.append(known_pairs[item])
            continue
        schema, dot, name = item.partition(".")
        if not dot or not schema or not name:
            raise ConfigError(f"table {item!r} is not schema.table")
        tables.append(TableName(schema, name))
    return tables


@dataclass
class Selection:
    """What a partial restore restores: the TOC entries, the tables (every chosen relation,
    partitions included, by qualified name), and the entries it left out, with why."""

    ids: set[int] = field(default_factory=set)
    tables: list[TableName] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def use_list(self, listing: str, also_skip: Sequence[int] = ()) -> str:
        """The listing with every entry not chosen commented out (pg_restore --use-list)."""
        out = []
        for line in listing.splitlines():
            match = _LINE.match(line)
            if match and (int(match.group(1)) not in self.ids or int(match.group(1)) in also_skip):
                line = ";" + line
            out.append(line)
        return "\n".join(out) + "\n"


def select(
    entries: Sequence[Entry],
    tables: Sequence[TableName] = (),
    schemas: Sequence[str] = (),
    known: Sequence[TableName] = (),
) -> Selection:
    """The entries that restore ``tables`` and everything in ``schemas`` (see the module).
    ``known``: the tables the backup lists (its manifest), to name restored relations whose
    names have spaces in them."""
    by_id = {e.id: e for e in entries}
    chosen: set[int] = set()
    for table in tables:
        found = [e.id for e in entries if e.kind in RELATIONS and e.names(table.schema, table.name)]
        if not found:
            raise ConfigError(f"table {table.qualified} is not in the backup")
        chosen.update(found)
    for schema in schemas:
        # the schema's own objects; what belongs to them (data, constraints, foreign keys...)
        # comes through the closure below, which leaves out what points outside
        found = [
            e.id
            for e in entries
            if e.in_schema(schema) and e.kind not in BELONGING and e.kind not in ("DATABASE", "ENCODING")
        ]
        if not any(by_id[i].kind == "SCHEMA" or by_id[i].kind in RELATIONS for i in found):
            raise ConfigError(f"schema {schema} is not in the backup")
        chosen.update(found)
    # partitions of a chosen partitioned table
    attaches = [e for e in entries if e.kind == "TABLE ATTACH" and len(e.deps) >= 2]
    grew = True
    while grew:
        grew = False
        for attach in attaches:
            child, parent = attach.deps[0], attach.deps[1]
            if parent in chosen and child not in chosen:
                chosen.add(child)
                grew = True
    named = [*tables, *known]

    def label(entry_id: int) -> str:
        return _table_of(by_id[entry_id], named).qualified

    skipped: dict[int, str] = {}
    # a view (of a chosen schema) over a relation that is not restored cannot be created
    grew = True
    while grew:
        grew = False
        for view in [i for i in chosen if by_id[i].kind in ("VIEW", "MATERIALIZED VIEW")]:
            outside = [
                d for d in by_id[view].deps if d in by_id and by_id[d].kind in RELATIONS and d not in chosen
            ]
            if outside:
                chosen.discard(view)
                names = ", ".join(dict.fromkeys(label(d) for d in outside))
                skipped[view] = (
                    f"{by_id[view].kind.lower()} {label(view)} reads {names}, which is not restored"
                )
                grew = True
    relations = {i for i in chosen if by_id[i].kind in RELATIONS}
    included: set[int] = set(chosen) | {e.id for e in entries if e.kind in ALWAYS}

    def pull(entry_id: int) -> None:
        """Add ``entry_id``'s prerequisites, transitively."""
        stack = [entry_id]
        while stack:
            for dep in by_id[stack.pop()].deps:
                target = by_id.get(dep)
                if target is None or dep in included:
                    continue
                if target.kind in PREREQUISITES:
                    included.add(dep)
                    stack.append(dep)

    for entry_id in list(included):
        pull(entry_id)

    grew = True
    while grew:
        grew = False
        for entry in entries:
            # a sequence whose entry depends on a table is that table's (serial or identity)
            owned_sequence = entry.kind == "SEQUENCE"
            if entry.id in included or entry.id in skipped or not (entry.kind in BELONGING or owned_sequence):
                continue
            # it belongs to something chosen (an extension, always included, does not make a
            # table's index or comment chosen; the extension's own comment is)
            owners = [d for d in entry.deps if d in included and by_id[d].kind not in ALWAYS]
            if not owners and not (entry.deps and all(d in included for d in entry.deps)):
                continue
            outside = [
                d for d in entry.deps if d in by_id and by_id[d].kind in RELATIONS and d not in included
            ]
            if owned_sequence:
                if outside:
                    continue  # another table's sequence
            elif entry.kind in ("TABLE ATTACH", "INDEX ATTACH"):
                if any(d not in included for d in entry.deps if d in by_id):
                    continue  # attaches to something outside the set: the partition stands alone
            elif entry.kind == "SEQUENCE OWNED BY":
                owner = [
                    d
                    for s in entry.deps
                    if s in by_id
                    for d in by_id[s].deps
                    if d in by_id and by_id[d].kind in RELATIONS and d not in included
                ]
                if owner:
                    continue  # a sequence a chosen table uses, owned by a table left out
            elif outside:
                names = ", ".join(dict.fromkeys(label(d) for d in outside))
                own = next((d for d in entry.deps if d in included and by_id[d].kind in RELATIONS), None)
                what = _object_name(entry, by_id[own], label(own)) if own is not None else _tag(entry)
                if entry.kind == "FK CONSTRAINT":
                    skipped[entry.id] = (
                        f"foreign key {what} references {names}, which is not restored: skipped"
                    )
                else:
                    skipped[entry.id] = (
                        f"{entry.kind.lower()} {what} refers to {names}, which is not restored"
                    )
                continue
            included.add(entry.id)
            pull(entry.id)
            grew = True
    restored = [by_id[i] for i in sorted(relations)]
    return Selection(
        ids=included,
        tables=[_table_of(e, named) for e in restored if e.kind in ("TABLE", "FOREIGN TABLE")],
        skipped=[skipped[i] for i in sorted(skipped) if by_id[i].kind == "FK CONSTRAINT"]
        + [skipped[i] for i in sorted(skipped) if by_id[i].kind != "FK CONSTRAINT"],
    )


def _tag(entry: Entry) -> str:
    """The entry's schema, tag and owner as pg_restore printed them, owner dropped."""
    return entry.rest.rsplit(" ", 1)[0] if " " in entry.rest else entry.rest


def _object_name(entry: Entry, table_entry: Entry, table: str) -> str:
    """``name on schema.table`` for an entry about a table (its text starts with the table's
    schema and name, as the table's own entry's does)."""
    table_rest, rest = _tag(table_entry), _tag(entry)
    if rest.startswith(table_rest + " "):
        return f"{rest[len(table_rest) + 1 :]} on {table}"
    return rest


def _table_of(entry: Entry, names: Sequence[TableName]) -> TableName:
    for table in sorted(names, key=lambda t: len(t.schema), reverse=True):
        if entry.names(table.schema, table.name):
            return table
    schema, _, rest = _tag(entry).partition(" ")
    return TableName(schema, rest)


# What pg_restore runs after a table's data that locks it ACCESS EXCLUSIVE (a COPY TO reading
# it would make pg_restore wait); indexes, foreign keys and triggers take weaker locks.
EXCLUSIVE_AFTER_DATA = frozenset({"CONSTRAINT", "RULE", "POLICY", "ROW SECURITY"})


def ready_after(entries: Sequence[Entry], tables: Iterable[TableName]) -> dict[TableName, set[int]]:
    """For each of ``tables`` that can be verified before pg_restore ends, the items that must
    have finished first: its TABLE DATA, and what then locks it ACCESS EXCLUSIVE
    (:data:`EXCLUSIVE_AFTER_DATA`: its primary key, for one), so that reading it never holds up
    the restore.  The rows are final then: the rest does not change them.  Partitions are left
    out (pg_dump may load a partition's rows through the root, so another partition's item can
    still add to it), and so is a table without a data item."""
    partitions = {e.deps[0] for e in entries if e.kind == "TABLE ATTACH" and e.deps}
    relations = [e for e in entries if e.kind == "TABLE"]
    wanted = list(tables)
    ready: dict[TableName, set[int]] = {}
    for entry in entries:
        if entry.kind != "TABLE DATA" or partitions.intersection(entry.deps):
            continue
        table = next((t for t in wanted if entry.names(t.schema, t.name)), None)
        if table is None or table in ready:
            continue
        own = {e.id for e in relations if e.names(table.schema, table.name)}
        ready[table] = {entry.id} | {
            e.id for e in entries if e.kind in EXCLUSIVE_AFTER_DATA and own.intersection(e.deps)
        }
    return ready
