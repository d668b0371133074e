"""Columns for what the provider-switch check filtered out of the record's JSON text.

``Ledger.delivered_with_other_pseudonyms`` searched ``data`` with two ``LIKE`` patterns for
``outputs.pseudonym_source`` and then parsed every match to drop the records with
``outputs.superseded_by`` set. Both are columns now, filled here from the stored JSON (a
record that cannot be parsed keeps '' and is left to the check's warning about unreadable
records).

Revision ID: 0002_pseudonym_source
Revises: 0001_baseline
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0002_pseudonym_source"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

CHUNK = 500


def upgrade() -> None:
    with op.batch_alter_table("sendit_batches") as batch:
        batch.add_column(
            sa.Column("pseudonym_source", sa.Text, nullable=False, server_default=sa.text("''"))
        )
        batch.add_column(
            sa.Column("superseded_by", sa.String(64), nullable=False, server_default=sa.text("''"))
        )
    table = sa.table(
        "sendit_batches",
        sa.column("ledger_id", sa.Integer),
        sa.column("key", sa.String),
        sa.column("data", sa.Text),
        sa.column("pseudonym_source", sa.Text),
        sa.column("superseded_by", sa.String),
    )
    conn = op.get_bind()
    # only records that name a source or a successor need a value (normally DONE ones)
    query = sa.select(table.c.ledger_id, table.c.key, table.c.data).where(
        sa.or_(table.c.data.like('%"pseudonym_source"%'), table.c.data.like('%"superseded_by"%'))
    )
    updates = []
    for ledger_id, key, data in conn.execute(query):
        try:
            outputs = json.loads(str(data)).get("outputs") or {}
        except (ValueError, AttributeError):
            continue
        source = str(outputs.get("pseudonym_source") or "")
        successor = str(outputs.get("superseded_by") or "")
        if source or successor:
            updates.append({"l": ledger_id, "k": key, "s": source, "n": successor})
    stmt = (
        sa.update(table)
        .where(table.c.ledger_id == sa.bindparam("l"), table.c.key == sa.bindparam("k"))
        .values(pseudonym_source=sa.bindparam("s"), superseded_by=sa.bindparam("n"))
    )
    for i in range(0, len(updates), CHUNK):
        conn.execute(stmt, updates[i : i + CHUNK])


def downgrade() -> None:
    with op.batch_alter_table("sendit_batches") as batch:
        batch.drop_column("superseded_by")
        batch.drop_column("pseudonym_source")
