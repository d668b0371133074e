"""Alembic migrations of the ledger's schema (run by ``core.ledger.migrate``)."""
