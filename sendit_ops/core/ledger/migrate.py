"""Bring a ledger's schema to the revision this code reads (Alembic migrations).

Every process checks at its first use of a ledger: a current ledger costs one query (no
Alembic import); an older one is upgraded under the setup lock, and the log says from which
revision; a ledger written before migrations existed (sendit 0.1.0: tables, no version
table) is stamped as the baseline first; a NEWER one (upgraded by a newer sendit) stops the
run with one line naming its revision, since this code would write rows it cannot read back
correctly. ``sendit db upgrade`` runs the same upgrade on demand.
"""

from __future__ import annotations

import logging
from pathlib import Path

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from sendit_ops.core.errors import ConfigError
from sendit_ops.core.ledger.database import (
    create_engine_for,
    describe,
    setup_lock,
    unavailable,
    write,
)
from sendit_ops.core.ledger.schema import BASELINE_REVISION, HEAD_REVISION, VERSION_TABLE

log = logging.getLogger("sendit")

MIGRATIONS = Path(__file__).with_name("migrations")


class LedgerTooNew(ConfigError):
    """The ledger was upgraded by a newer sendit than this one."""


def current_revision(conn: Connection) -> str | None:
    """The ledger's schema revision; None when it has no version table (new, or 0.1.0)."""
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _config(conn: Connection):  # type: ignore[no-untyped-def]  # alembic.config.Config
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = conn
    return config


def known_revisions() -> set[str]:
    """Every revision of this code's migrations."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS))
    return {rev.revision for rev in script.walk_revisions()}


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Upgrade the ledger to HEAD_REVISION; return (revision before, revision after).
    Raises LedgerTooNew when the ledger's revision is unknown to this code."""
    from alembic import command

    with write(engine) as conn:
        setup_lock(conn)
        before = current_revision(conn)
        if before == HEAD_REVISION:
            return before, before
        if before is not None and before not in known_revisions():
            raise LedgerTooNew(
                f"ledger {describe(str(engine.url))} has schema revision {before!r}, newer "
                f"than this sendit knows (newest: {HEAD_REVISION!r}): it was upgraded by a "
                "newer sendit; run that version (or restore the ledger's backup)"
            )
        config = _config(conn)
        # Alembic's own lines ("Context impl SQLiteImpl", one per revision) are noise in a
        # run's output: the caller says what was upgraded, in one line
        alembic_log = logging.getLogger("alembic")
        level = alembic_log.level
        alembic_log.setLevel(logging.WARNING)
        try:
            if before is None and inspect(conn).has_table("sendit_batches"):
                command.stamp(config, BASELINE_REVISION)  # written by 0.1.0, before migrations
                before = BASELINE_REVISION
            command.upgrade(config, HEAD_REVISION)
        finally:
            alembic_log.setLevel(level)
    return before, HEAD_REVISION


def ensure_current(engine: Engine) -> None:
    """At a process's first use of a ledger: upgrade an older schema (logged), refuse a
    newer one. A current ledger costs one query."""
    with engine.connect() as conn:
        revision = current_revision(conn)
    if revision == HEAD_REVISION:
        return
    before, after = upgrade(engine)
    if before is not None and before != after:
        log.warning(
            "ledger %s: schema upgraded from revision %s to %s",
            describe(str(engine.url)),
            before,
            after,
        )


def upgrade_url(url: str) -> tuple[str | None, str]:
    """``sendit db upgrade``: upgrade the ledger at ``url`` (an engine of its own, closed
    afterwards); an unusable ledger raises LedgerUnavailable (one line)."""
    engine = create_engine_for(url)
    try:
        return upgrade(engine)
    except DBAPIError as exc:
        raise unavailable(url, exc) from None
    finally:
        engine.dispose()
