"""One request against one PACS, in two steps the DAG runs as two tasks: ``find`` (resolve
the request, record every item, return the keys still to fetch) and ``retrieve`` (fetch
those studies, record each result). Tests, the demo and the bench call the same two."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sendit_ops.pacs.model import (
    PacsConnection,
    RetrievalResult,
    RetrievePolicy,
    StudyRequest,
    StudyState,
)
from sendit_ops.pacs.query import find_request
from sendit_ops.pacs.request_ledger import RequestLedger
from sendit_ops.pacs.retrieve import retrieve_study
from sendit_ops.pacs.studies import StudyStore

log = logging.getLogger("sendit")


@dataclass(frozen=True)
class FindSummary:
    """Counts of a find step (safe to log and to pass in XCom)."""

    items: int
    not_found: int
    failed: int
    studies: int
    to_fetch: list[str]
    queries: int
    splits: int


class RetrieveJob:
    """Query/retrieve for one PACS into one input folder."""

    def __init__(
        self,
        conn: PacsConnection,
        work_root: str | Path,
        incoming: str | Path,
        secret_key: bytes,
        policy: RetrievePolicy | None = None,
        ledger_url: str | None = None,
        run_id: str = "",
    ):
        self.conn = conn
        self.work_root = Path(work_root)
        self.incoming = Path(incoming)
        self.secret_key = secret_key
        self.policy = policy or RetrievePolicy()
        self.ledger = RequestLedger(work_root, conn.name, ledger_url)
        self.store = StudyStore(work_root, conn.name)
        self.run_id = run_id

    def find(self, request: StudyRequest) -> FindSummary:
        """Resolve the request; return the keys of the studies not retrieved yet."""
        answers, stats = find_request(self.conn, request, self.secret_key)
        keys: list[str] = []
        not_found = failed = 0
        for answer in answers:
            if answer.error:
                state, failed = "FAILED", failed + 1
            elif not answer.studies:
                state, not_found = StudyState.NOT_FOUND, not_found + 1
            else:
                state = StudyState.FOUND
            self.ledger.record_item(
                answer.item_key,
                answer.kind,
                state,
                len(answer.studies),
                answer.error,
                self.run_id,
            )
            for study in answer.studies:
                self.store.save(study)
                self.ledger.record_found(study.key, study.item_key, study.expected, self.run_id)
                keys.append(study.key)
        keys = list(dict.fromkeys(keys))
        to_fetch = self.ledger.missing(keys)
        log.info(
            "PACS %s: %d item(s) requested, %d not found, %d failed; %d stud(ies) found, "
            "%d to fetch (%d retrieved before); %d queries, %d date split(s)",
            self.conn.name,
            len(answers),
            not_found,
            failed,
            len(keys),
            len(to_fetch),
            len(keys) - len(to_fetch),
            stats.queries,
            stats.splits,
        )
        return FindSummary(
            len(answers), not_found, failed, len(keys), to_fetch, stats.queries, stats.splits
        )

    def retrieve(
        self, keys: list[str], stop: Callable[[], bool] | None = None
    ) -> list[RetrievalResult]:
        """Fetch these studies one after the other (one association at a time). ``stop``
        is asked before each study (a time window closing): the rest stay FOUND for the
        next run."""
        results = []
        todo = self.ledger.missing(keys)
        for i, key in enumerate(todo):
            if stop is not None and stop():
                log.info(
                    "PACS %s: stopping; %d stud(ies) left for the next run",
                    self.conn.name,
                    len(todo) - i,
                )
                break
            study = self.store.load(key)
            self.ledger.record_started(key, self.run_id)
            started = time.monotonic()
            result = retrieve_study(
                self.conn,
                study,
                self.incoming,
                self.secret_key,
                self.policy,
                self.work_root / "pacs" / "locks",
            )
            self.ledger.record_result(result, self.run_id)
            log.info(
                "study %s: %s, %d of %s instance(s), %.1f MB in %.1f s%s",
                key,
                result.state,
                result.received,
                result.expected,
                result.megabytes,
                time.monotonic() - started,
                f" ({result.reason})" if result.reason else "",
            )
            results.append(result)
        counts = Counter(r.state for r in results)
        log.info("PACS %s: %s", self.conn.name, dict(counts) or "nothing to fetch")
        return results
