"""Files that readers see whole or not at all: work files, reports, the outbox, token stores.

Its own module because the pipeline, the report, the outbox target and the DASHER token
store all write such files, and none of them needs the ledger's database for it.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes | str, mode: int = 0o600, durable: bool = True) -> None:
    """Write a file so readers see either the old or the new content, never a partial one.

    ``durable``: the content is on disk (fsync) before it replaces the old file, so it
    survives a crash of the machine. Work files that a step can derive again from the source
    folder are written with ``durable=False``: an fsync costs a journal commit, several per
    batch, and on a busy Airflow host that is a good part of a small batch's time.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # one writer per process and thread at a time: a fixed temporary name, no random names
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, mode)  # the file may have been left by an earlier writer of that pid
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any, durable: bool = True) -> None:
    """Atomically write JSON (sorted keys, so equal content gives equal bytes)."""
    text = json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n"
    write_atomic(path, text, durable=durable)


def read_json(path: Path) -> Any:
    """Read a JSON file written by write_json."""
    return json.loads(path.read_text())
