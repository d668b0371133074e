"""Alembic's environment: migrations run on the connection ``core.ledger.migrate`` passes
(inside its write transaction and setup lock), never on a URL of their own."""

from __future__ import annotations

from alembic import context

from sendit_ops.core.ledger.schema import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
