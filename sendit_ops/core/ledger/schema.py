"""The ledger's tables as the code reads and writes them (the newest schema revision).

The database is built and changed only by the migrations in ``migrations/versions``
(Alembic); this module describes what they produce. ``HEAD_REVISION`` names the newest
migration, so a process whose ledger is current needs no Alembic at start
(tests/test_ledger_migrations.py checks both agree, and that the migrations give exactly
these tables).
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

HEAD_REVISION = "0004_reviews"
BASELINE_REVISION = "0001_baseline"  # the schema of sendit 0.1.0, before migrations
# not Alembic's default name: a PostgreSQL ledger may share a database with Airflow's own
VERSION_TABLE = "sendit_alembic_version"

metadata = MetaData()

ledgers = Table(
    "sendit_ledgers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("root", Text, nullable=False),  # the work root (absolute)
    Column("dag_id", String(250), nullable=False),
    Column("imported_at", Float, nullable=False, default=0.0),  # record.json import done
    Column("imported", Integer, nullable=False, default=0),
    UniqueConstraint("root", "dag_id", name="uq_sendit_ledgers_root_dag"),
)

batches = Table(
    "sendit_batches",
    metadata,
    Column("ledger_id", Integer, primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("state", String(20), nullable=False),
    Column("source_path", Text, nullable=False),
    Column("source_hash", String(40), nullable=False),  # indexable, whatever the path length
    Column("finished_at", Float, nullable=False, default=0.0),
    Column("fingerprint", String(128), nullable=False, default=""),
    Column("run_id", Text, nullable=False, default=""),
    Column("changed", Float, nullable=False, default=0.0),
    # what the dashboard shows, so a page needs no JSON parse of whole records
    Column("images", Integer, nullable=False, default=0),
    Column("images_found", Integer, nullable=False, default=0),
    Column("bytes_in", BigInteger, nullable=False, default=0),
    Column("warnings", Integer, nullable=False, default=0),
    Column("reasons", Text, nullable=False, default="[]"),
    Column("object_name", Text, nullable=False, default=""),
    Column("data", Text, nullable=False),  # the whole BatchRecord as JSON
    # 0002: what the provider-switch check filters on (it searched ``data`` with LIKE)
    Column("pseudonym_source", Text, nullable=False, server_default=text("''")),
    Column("superseded_by", String(64), nullable=False, server_default=text("''")),
    Index("ix_sendit_batches_state", "ledger_id", "state", "changed"),
    Index("ix_sendit_batches_source", "ledger_id", "source_hash"),
    Index("ix_sendit_batches_changed", "ledger_id", "changed"),
)

deliveries = Table(
    "sendit_deliveries",
    metadata,
    Column("ledger_id", Integer, primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("object_name", Text, nullable=False, default=""),
    Column("sha256", String(64), nullable=False, default=""),
    Column("row_key", Text, nullable=False, default=""),
    Column("target", String(20), nullable=False, default=""),
    Column("location", Text, nullable=False, default=""),
    Column("delivered_at", Float, nullable=False, default=0.0),
    Column("run_id", Text, nullable=False, default=""),
    Column("attempts", Text, nullable=False, default="[]"),
)

run_locks = Table(
    "sendit_run_locks",
    metadata,
    Column("scope", String(64), primary_key=True),  # sha256 of work root + input folder
    Column("dag_id", String(250), nullable=False, default=""),
    Column("run_id", Text, nullable=False, default=""),  # "" = free
    Column("host", Text, nullable=False, default=""),
    Column("pid", Integer, nullable=False, default=0),
    Column("pid_started", Text, nullable=False, default=""),  # tells a reused pid apart
    Column("active", Integer, nullable=False, default=0),  # a task of the run is working
    # the task processes of the run working now: JSON [[host, pid, pid_started, beat], ...]
    Column("workers", Text, nullable=False, default="[]"),
    Column("acquired_at", Float, nullable=False, default=0.0),
    Column("heartbeat_at", Float, nullable=False, default=0.0),
)

# 0004: reviewers' decisions on HELD batches, one row each, never updated (the review history)
reviews = Table(
    "sendit_reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ledger_id", Integer, nullable=False),
    Column("key", String(64), nullable=False),
    Column("decision", String(16), nullable=False),  # release / reject
    Column("images", Integer, nullable=False),  # held images the reviewer decided on
    Column("reviewer", String(250), nullable=False),  # the Airflow user name
    Column("decided_at", Float, nullable=False),
    Column("run_id", Text, nullable=False),  # the DAG run that carries the decision out
    Index("ix_sendit_reviews_ledger_time", "ledger_id", "decided_at"),
)

# 0004: every confirmed delivery, never updated: the throughput history survives a reprocess
delivery_log = Table(
    "sendit_delivery_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ledger_id", Integer, nullable=False),
    Column("key", String(64), nullable=False),
    Column("delivered_at", Float, nullable=False),  # the DONE change time (batches.changed)
    Column("images", Integer, nullable=False),
    Column("bytes_in", BigInteger, nullable=False),
    Column("run_id", Text, nullable=False),
    Index("ix_sendit_delivery_log_time", "ledger_id", "delivered_at"),
)
