"""Batch records in a database (SQLAlchemy, schema migrations by Alembic), batch work files
under the work root.

Records live in a SQLite file in the work root by default (``<work_root>/ledger.sqlite``,
embedded, nothing to start) or in PostgreSQL when ``ledger_url`` is set: what a deployment
with workers on several machines needs, since file locks on shared storage are not reliable.
Work files stay on disk: ``<work_root>/<dag_id>/batches/<batch_key>/``.

Why a database: every state change is a transaction, the dashboard and the watch trigger
query indexed columns, and one run at a time holds a lock row per input folder.

The modules, one job each:
- ``schema``: the tables (newest revision); ``migrations/``: how every ledger gets there;
  ``migrate``: the check at start and ``sendit db upgrade``
- ``database``: engines, transactions, the one-line message of an unusable ledger
- ``records``: ``Ledger``, the records and deliveries of one DAG; ``rows``: their row shapes
- ``queries``: read-only questions over many records (dashboard, progress, watch trigger)
- ``run_lock``: one run at a time per input folder
- ``legacy_import``: the one-time import of the file-based ledger (``record.json``)
"""

from sendit_ops.core.ledger.database import (
    LEDGER_FILE,
    LedgerUnavailable,
    database_url,
    describe,
    dispose_engines,
    engine_for,
)
from sendit_ops.core.ledger.migrate import LedgerTooNew, upgrade, upgrade_url
from sendit_ops.core.ledger.records import Ledger
from sendit_ops.core.ledger.rows import source_hash
from sendit_ops.core.ledger.run_lock import LockHolder, RunLock, RunLocked
from sendit_ops.core.ledger.schema import HEAD_REVISION, batches, deliveries, run_locks

__all__ = [
    "HEAD_REVISION",
    "LEDGER_FILE",
    "Ledger",
    "LedgerTooNew",
    "LedgerUnavailable",
    "LockHolder",
    "RunLock",
    "RunLocked",
    "batches",
    "database_url",
    "deliveries",
    "describe",
    "dispose_engines",
    "engine_for",
    "run_locks",
    "source_hash",
    "upgrade",
    "upgrade_url",
]
