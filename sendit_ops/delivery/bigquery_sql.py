"""BigQuery statements for sendit's ``<collection>.dicom`` table.

Rows are upserted with MERGE keyed by ``CodedAccessionNumberID``, so reruns, retries and
backfills never duplicate a row; a reprocessed batch replaces its row with the new values.

Two forms of the same statements: with query parameters (``merge_with_parameters``,
``DELETE_WITH_PARAMETER``: the values never enter the SQL text), what the real service
runs; and with the values written as string literals (``merge_statements``,
``delete_statement``), in which every character outside a small safe set is a
``\\uXXXX`` escape so no value can end the literal: only for the BigQuery emulator of the
tests (crucible), which refuses query parameters. The Google target picks the form.
"""

from __future__ import annotations

import re

from sendit_ops.packaging.archive import BQ_SCHEMA

KEY = "CodedAccessionNumberID"
_SAFE = re.compile(r"[A-Za-z0-9 _.,:/+=@-]")
_IDENT = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_STATEMENT_CHARS = 800_000  # BigQuery allows 1,024 K characters of query text


def literal(value: str) -> str:
    """A GoogleSQL string literal that round-trips any text exactly."""
    out = []
    for char in str(value):
        if _SAFE.match(char):
            out.append(char)
        elif ord(char) <= 0xFFFF:
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(f"\\U{ord(char):08x}")
    return "'" + "".join(out) + "'"


def table_ref(project: str, dataset: str, table: str) -> str:
    """A quoted table reference; names are checked so they cannot break the statement."""
    for part in (project, dataset, table):
        if not _IDENT.match(part):
            raise ValueError(f"invalid BigQuery name {part!r}")
    return f"`{project}.{dataset}.{table}`"


def merge_statements(table: str, rows: list[dict[str, str]]) -> list[str]:
    """MERGE statements upserting ``rows`` (deduplicated by key, the last one wins), split
    so that no statement exceeds MAX_STATEMENT_CHARS."""
    unique = {row[KEY]: row for row in rows}
    selects = []
    for key in sorted(unique):
        row = unique[key]
        cols = ", ".join(f"{literal(row.get(c, ''))} AS {c}" for c in BQ_SCHEMA)
        selects.append(f"SELECT {cols}")
    update = ", ".join(f"{c} = S.{c}" for c in BQ_SCHEMA if c != KEY)
    columns = ", ".join(BQ_SCHEMA)
    values = ", ".join(f"S.{c}" for c in BQ_SCHEMA)
    head = f"MERGE {table} T USING ("
    tail = (
        f") S ON T.{KEY} = S.{KEY} WHEN MATCHED THEN UPDATE SET {update} "
        f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})"
    )
    statements: list[str] = []
    batch: list[str] = []
    size = len(head) + len(tail)
    for select in selects:
        if batch and size + len(select) + 11 > MAX_STATEMENT_CHARS:
            statements.append(head + " UNION ALL ".join(batch) + tail)
            batch, size = [], len(head) + len(tail)
        batch.append(select)
        size += len(select) + 11
    if batch:
        statements.append(head + " UNION ALL ".join(batch) + tail)
    return statements


# rows per parameterized MERGE: ~1 KB of values each, well below the 10 MB request limit
PARAMETER_ROWS = 2_000


def merge_with_parameters(
    table: str, rows: list[dict[str, str]]
) -> list[tuple[str, list[dict[str, str]]]]:
    """MERGE statements upserting ``rows`` (deduplicated by key, the last one wins), each
    with the rows it reads from the query parameter ``@rows`` (ARRAY<STRUCT> of BQ_SCHEMA's
    STRING columns, in that order)."""
    unique = {row[KEY]: row for row in rows}
    ordered = [{c: str(unique[k].get(c, "")) for c in BQ_SCHEMA} for k in sorted(unique)]
    update = ", ".join(f"{c} = S.{c}" for c in BQ_SCHEMA if c != KEY)
    columns = ", ".join(BQ_SCHEMA)
    values = ", ".join(f"S.{c}" for c in BQ_SCHEMA)
    statement = (
        f"MERGE {table} T USING (SELECT * FROM UNNEST(@rows)) S ON T.{KEY} = S.{KEY} "
        f"WHEN MATCHED THEN UPDATE SET {update} "
        f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})"
    )
    return [
        (statement, ordered[i : i + PARAMETER_ROWS]) for i in range(0, len(ordered), PARAMETER_ROWS)
    ]


def delete_with_parameter(table: str) -> str:
    """``delete_statement`` with the key in the query parameter ``@key`` (the same MERGE)."""
    return (
        f"MERGE {table} T USING (SELECT @key AS {KEY}) S "
        f"ON T.{KEY} = S.{KEY} WHEN MATCHED THEN DELETE"
    )


def delete_statement(table: str, key: str) -> str:
    """Remove the row a batch was delivered with before, when its row key changed (new
    pseudonyms, a corrected accession number): the key is sendit's own coded id. A MERGE
    with DELETE, like the upserts (the BigQuery emulator of the tests has no DELETE)."""
    return (
        f"MERGE {table} T USING (SELECT {literal(key)} AS {KEY}) S "
        f"ON T.{KEY} = S.{KEY} WHEN MATCHED THEN DELETE"
    )
