"""The schema of sendit 0.1.0, the last release without migrations.

A ledger written by 0.1.0 has exactly these tables and no version table: ``migrate``
stamps it with this revision instead of running it. Do not change this file: a new column
is a new revision.

Revision ID: 0001_baseline
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sendit_ledgers",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("root", sa.Text, nullable=False),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("imported_at", sa.Float, nullable=False),
        sa.Column("imported", sa.Integer, nullable=False),
        sa.UniqueConstraint("root", "dag_id", name="uq_sendit_ledgers_root_dag"),
    )
    op.create_table(
        "sendit_batches",
        sa.Column("ledger_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("source_path", sa.Text, nullable=False),
        sa.Column("source_hash", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("changed", sa.Float, nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("images_found", sa.Integer, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("warnings", sa.Integer, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("object_name", sa.Text, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
    )
    op.create_index("ix_sendit_batches_state", "sendit_batches", ["ledger_id", "state", "changed"])
    op.create_index("ix_sendit_batches_source", "sendit_batches", ["ledger_id", "source_hash"])
    op.create_index("ix_sendit_batches_changed", "sendit_batches", ["ledger_id", "changed"])
    op.create_table(
        "sendit_deliveries",
        sa.Column("ledger_id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("object_name", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("row_key", sa.Text, nullable=False),
        sa.Column("target", sa.String(20), nullable=False),
        sa.Column("location", sa.Text, nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("attempts", sa.Text, nullable=False),
    )
    op.create_table(
        "sendit_run_locks",
        sa.Column("scope", sa.String(64), primary_key=True),
        sa.Column("dag_id", sa.String(250), nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("pid_started", sa.Text, nullable=False),
        sa.Column("active", sa.Integer, nullable=False),
        sa.Column("workers", sa.Text, nullable=False),
        sa.Column("acquired_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("sendit_run_locks", "sendit_deliveries", "sendit_batches", "sendit_ledgers"):
        op.drop_table(table)
