"""Reviewers' decisions on HELD batches (the dashboard's review desk): who released or
rejected which batch when, and the DAG run that carried the decision out.

One row per decision, never updated: the review history an auditor reads. The reviewer is
the Airflow user name; nothing else about the user is kept.

Also ``sendit_delivery_log``: one row per confirmed delivery, never updated, so the
dashboard's throughput chart keeps a batch's earlier deliveries when it is reprocessed
(``sendit_batches`` holds only a batch's latest state).

Revision ID: 0004_reviews
Revises: 0003_pacs_requests
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_reviews"
down_revision = "0003_pacs_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sendit_reviews",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ledger_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("reviewer", sa.String(250), nullable=False),
        sa.Column("decided_at", sa.Float, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
    )
    op.create_index("ix_sendit_reviews_ledger_time", "sendit_reviews", ["ledger_id", "decided_at"])
    op.create_table(
        "sendit_delivery_log",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ledger_id", sa.Integer, nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("delivered_at", sa.Float, nullable=False),
        sa.Column("images", sa.Integer, nullable=False),
        sa.Column("bytes_in", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.Text, nullable=False),
    )
    op.create_index(
        "ix_sendit_delivery_log_time", "sendit_delivery_log", ["ledger_id", "delivered_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_sendit_delivery_log_time", "sendit_delivery_log")
    op.drop_table("sendit_delivery_log")
    op.drop_index("ix_sendit_reviews_ledger_time", "sendit_reviews")
    op.drop_table("sendit_reviews")
