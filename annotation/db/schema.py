"""The rating store's tables, written once; each engine fills in the few fragments where it differs.

The rules are the same on both engines: every score column CHECKed to its MASI range, MASI and mMASI
to theirs, photo ids 16 hex digits, visit dates real ISO dates, the audit trail and the adjudication
log append-only (triggers refuse UPDATE and DELETE, and TRUNCATE on PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass

from melasma.masi import ITEM_RANGES, ITEMS, REGIONS

SCHEMA_VERSION = 2
#: (region, item) in the order of the 12 score columns and of every 12-value score list.
SCORE_FIELDS: tuple[tuple[str, str], ...] = tuple((r, i) for r in REGIONS for i in ITEMS)
SCORE_COLUMNS: tuple[str, ...] = tuple(f"{r}_{i}" for r, i in SCORE_FIELDS)
#: The store's tables, parents first (the order a copy inserts them in).
TABLES: tuple[str, ...] = ("images", "ratings", "rating_audit", "adjudications")
#: table -> what its append-only triggers call it in their refusal
APPEND_ONLY: dict[str, str] = {"rating_audit": "the audit trail", "adjudications": "the adjudication log"}


@dataclass(frozen=True)
class Fragments:
    """The SQL that differs between the engines (everything else in `TEMPLATE` is shared)."""

    text: str  #: a text column type
    real: str  #: a double-precision column type
    serial_key: str  #: an auto-numbered integer primary key
    image_position: str  #: an extra images column giving ingestion order ("" where rowid does)
    hex_id: str  #: CHECK body: `id` is 16 lower-case hex digits
    iso_date: str  #: CHECK body: `visit_date` is a real YYYY-MM-DD date
    integer: str  #: CHECK prefix for a score column `{name}` holding an integer, not a float
    json_type: str  #: the column type of the audit's JSON score snapshots
    json_valid: str  #: CHECK body: `{name}` is valid JSON ("" where the type checks it)
    prelude: str  #: statements before the tables (helper functions)


TEMPLATE = """
CREATE TABLE IF NOT EXISTS images (
    id {text} PRIMARY KEY CHECK ({hex_id}),
    filename {text} NOT NULL,
    width INTEGER NOT NULL CHECK (width > 0),
    height INTEGER NOT NULL CHECK (height > 0),
    patient_id {text} CHECK (patient_id IS NULL OR length(patient_id) BETWEEN 1 AND 64),
    visit_date {text} CHECK (visit_date IS NULL OR {iso_date}),
    added_at {text} NOT NULL{image_position}
);
CREATE TABLE IF NOT EXISTS ratings (
    image_id {text} NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
    rater {text} NOT NULL CHECK (length(rater) BETWEEN 1 AND 64),
    {scores},
    masi {real} NOT NULL CHECK (masi BETWEEN 0 AND 48),
    mmasi {real} NOT NULL CHECK (mmasi BETWEEN 0 AND 24),
    revision INTEGER NOT NULL CHECK (revision >= 1),
    created_at {text} NOT NULL,
    updated_at {text} NOT NULL,
    hidden {text} NOT NULL DEFAULT '',
    PRIMARY KEY (image_id, rater)
);
CREATE TABLE IF NOT EXISTS rating_audit (
    id {serial_key},
    image_id {text} NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
    rater {text} NOT NULL,
    changed_at {text} NOT NULL,
    revision INTEGER NOT NULL CHECK (revision >= 1),
    old_scores {json_type}{old_scores_check},
    new_scores {json_type} NOT NULL{new_scores_check},
    old_masi {real} CHECK (old_masi IS NULL OR old_masi BETWEEN 0 AND 48),
    new_masi {real} NOT NULL CHECK (new_masi BETWEEN 0 AND 48)
);
CREATE INDEX IF NOT EXISTS ratings_by_rater ON ratings (rater);
CREATE TABLE IF NOT EXISTS adjudications (
    id {serial_key},
    image_id {text} NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
    coordinator {text} NOT NULL CHECK (length(coordinator) BETWEEN 1 AND 64),
    decided_at {text} NOT NULL,
    action {text} NOT NULL CHECK (action IN ('adjudicate', 'rerate')),
    rater {text} CHECK ((action = 'rerate') = (rater IS NOT NULL)),
    old_masi {real} CHECK (old_masi IS NULL OR old_masi BETWEEN 0 AND 48),
    new_masi {real} CHECK ((action = 'adjudicate') = (new_masi IS NOT NULL) AND
                         (new_masi IS NULL OR new_masi BETWEEN 0 AND 48)),
    reason {text} NOT NULL CHECK (length(trim(reason)) BETWEEN 1 AND 500)
);
"""


def tables_sql(fragments: Fragments) -> str:
    """The CREATE statements of the four tables and the index, for one engine."""
    scores = []
    for region, item in SCORE_FIELDS:
        low, high = ITEM_RANGES[item]
        name = f"{region}_{item}"
        integer = fragments.integer.format(name=name)
        scores.append(f"{name} INTEGER NOT NULL CHECK ({integer}{name} BETWEEN {low} AND {high})")

    def json_check(name: str, nullable: bool) -> str:
        if not fragments.json_valid:
            return ""
        valid = fragments.json_valid.format(name=name)
        return f" CHECK ({name} IS NULL OR {valid})" if nullable else f" CHECK ({valid})"

    return fragments.prelude + TEMPLATE.format(
        text=fragments.text, real=fragments.real, serial_key=fragments.serial_key,
        image_position=fragments.image_position, hex_id=fragments.hex_id,
        iso_date=fragments.iso_date, json_type=fragments.json_type, scores=",\n    ".join(scores),
        old_scores_check=json_check("old_scores", True), new_scores_check=json_check("new_scores", False),
    )


#: SQLite: `date(x, '+0 days')` normalises 2024-02-30 to 2024-03-01, so an impossible day is refused
#: (plain `date(x)` passes it; databases created before keep their CHECK, ingest refuses it anyway).
SQLITE = Fragments(
    text="TEXT", real="REAL", serial_key="INTEGER PRIMARY KEY AUTOINCREMENT", image_position="",
    hex_id="length(id) = 16 AND id NOT GLOB '*[^0-9a-f]*'",
    iso_date="date(visit_date, '+0 days') IS visit_date", integer="typeof({name}) = 'integer' AND ",
    json_type="TEXT", json_valid="json_valid({name})", prelude="",
)

SQLITE_TRIGGERS = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{verb} BEFORE {verb.upper()} ON {table}\n"
    f"BEGIN SELECT RAISE(ABORT, '{what} is append-only'); END;\n"
    for table, what in APPEND_ONLY.items() for verb in ("update", "delete")
)

#: PostgreSQL: text sorts byte-wise (COLLATE "C", as SQLite does), whatever the database's locale.
POSTGRES = Fragments(
    text='TEXT COLLATE "C"', real="DOUBLE PRECISION",
    serial_key="BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
    image_position=",\n    position BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE",
    hex_id="id ~ '^[0-9a-f]{16}$'", iso_date="melasma_iso_date(visit_date)", integer="",
    json_type="JSON", json_valid="",
    prelude="""
CREATE OR REPLACE FUNCTION melasma_iso_date(value TEXT) RETURNS BOOLEAN
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    RETURN to_char(value::date, 'YYYY-MM-DD') = value;
EXCEPTION WHEN others THEN
    RETURN false;
END $$;
CREATE OR REPLACE FUNCTION melasma_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_ARGV[0] USING ERRCODE = 'integrity_constraint_violation';
END $$;
""",
)

POSTGRES_TRIGGERS = "".join(
    f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}\n"
    f"FOR EACH ROW EXECUTE FUNCTION melasma_append_only('{what}');\n"
    f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}\n"
    f"FOR EACH STATEMENT EXECUTE FUNCTION melasma_append_only('{what}');\n"
    for table, what in APPEND_ONLY.items()
)

#: The version table of a PostgreSQL store (SQLite keeps the version in `PRAGMA user_version`).
POSTGRES_VERSION_TABLE = "CREATE TABLE IF NOT EXISTS melasma_schema (version INTEGER NOT NULL);\n"


def sqlite_schema() -> str:
    return tables_sql(SQLITE) + SQLITE_TRIGGERS


def postgres_schema() -> str:
    return tables_sql(POSTGRES) + POSTGRES_TRIGGERS + POSTGRES_VERSION_TABLE
