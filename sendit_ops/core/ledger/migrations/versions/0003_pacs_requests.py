"""The query/retrieve bookkeeping (docs/pacs.md): one row per requested item and one per
study, keyed by keyed hashes (never an accession number or a UID).

Columns as ``sendit_ops.pacs.request_ledger`` reads and writes them.

Revision ID: 0003_pacs_requests
Revises: 0002_pseudonym_source
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_pacs_requests"
down_revision = "0002_pseudonym_source"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pacs_items",
        sa.Column("pacs", sa.String(64), primary_key=True),
        sa.Column("item_key", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("studies", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pacs_studies",
        sa.Column("pacs", sa.String(64), primary_key=True),
        sa.Column("study_key", sa.String(32), primary_key=True),
        sa.Column("item_key", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("expected", sa.Integer, nullable=True),
        sa.Column("received", sa.Integer, nullable=False),
        sa.Column("bytes", sa.BigInteger, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("folder", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(250), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_pacs_studies_item_key", "pacs_studies", ["item_key"])


def downgrade() -> None:
    op.drop_index("ix_pacs_studies_item_key", "pacs_studies")
    op.drop_table("pacs_studies")
    op.drop_table("pacs_items")
