"""FolderArrivalTrigger: streaming pick-up of new batch folders (sendit's watcher).

It runs in Airflow's triggerer and polls one input folder; when finished batch folders
appear that no run has taken yet (a ``X.tmp…`` folder renamed to ``X``, or a new folder), it
emits one event, which makes the folder's DAG run through an AssetWatcher. Nothing runs while
nothing arrives. The event carries only a count (folder names are often accession numbers).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from sendit_ops.core.arrivals import pending_folders
from sendit_ops.core.ledger import Ledger


class FolderArrivalTrigger(BaseEventTrigger):
    """Emit an event when new finished batch folders appear in ``input_dir``."""

    def __init__(
        self,
        input_dir: str,
        work_root: str,
        dag_id: str,
        poll_seconds: float = 10.0,
        ledger_url: str | None = None,
    ):
        super().__init__()
        self.input_dir = input_dir
        self.work_root = work_root
        self.dag_id = dag_id
        self.poll_seconds = poll_seconds
        self.ledger_url = ledger_url

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Class path and arguments, as the triggerer needs them."""
        return (
            "sendit_ops.airflow.triggers.FolderArrivalTrigger",
            {
                "input_dir": self.input_dir,
                "work_root": self.work_root,
                "dag_id": self.dag_id,
                "poll_seconds": self.poll_seconds,
                "ledger_url": self.ledger_url,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll; yield an event for each new set of arrivals."""
        announced: set[str] = set()
        ledger = Ledger(self.work_root, self.dag_id, self.ledger_url)  # kept between polls
        while True:
            pending = await asyncio.to_thread(pending_folders, self.input_dir, ledger)
            announced &= pending  # taken by a run: forget them
            new = pending - announced
            if new:
                announced |= new
                self.log.info("%d new batch folder(s) in %s", len(new), self.dag_id)
                yield TriggerEvent({"dag_id": self.dag_id, "new_batches": len(new)})
            await asyncio.sleep(self.poll_seconds)
