"""The per-batch steps of a run, in plain Python (the Airflow tasks are thin wrappers).

Each step loads the batch record, checks the batch is at the stage it expects, does its work
in the batch's work folder, and saves the record. A BatchError moves that batch to ERROR with
its reason and the other batches go on; any other exception does the same with a generic,
PHI-free reason (the stack is logged without exception text, which may quote header values).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sendit_ops import __version__
from sendit_ops.core.discovery import FoundBatch, batch_problem, list_entries
from sendit_ops.core.errors import (
    BatchError,
    DeliveryError,
    LeakError,
    NoSpaceError,
    ProviderError,
    is_no_space,
)
from sendit_ops.core.ledger import (
    DONE,
    DONEPROCESSING,
    EMPTY,
    ERROR,
    HELD,
    PROCESSING,
    QUEUE,
    BatchRecord,
    Ledger,
    read_json,
    write_atomic,
    write_json,
)
from sendit_ops.core.settings import Settings
from sendit_ops.dicom.annex_e import CLEAN_PIXEL_DATA_CODE, Profile, add_method_codes
from sendit_ops.dicom.anonymize import (
    anonymize_dataset,
    load_profile,
    load_recipe,
    recipe_checksum,
    recipe_variables,
    uid_remapper,
)
from sendit_ops.dicom.filters import FilterRules, judge, load_filter_recipe
from sendit_ops.dicom.identifiers import Needles, collect_needles, dicom_date_to_iso
from sendit_ops.dicom.image_check import RejectedImageError, read_checked_header
from sendit_ops.dicom.io import NotDicomError, read_full, text
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.dicom.pixels import (
    PixelOutcome,
    header_identifiers,
    identifier_matcher,
    plan_pixels,
)
from sendit_ops.dicom.pixels import clean as clean_pixels
from sendit_ops.packaging.archive import (
    archive_name,
    header_bytes,
    metadata_row,
    object_name,
    shared_header,
    write_archive,
)
from sendit_ops.pseudonyms.providers import (
    LocalKeyedProvider,
    Pseudonym,
    PseudonymProvider,
    StudyIdentity,
    build_request,
    parse_response,
    sanitize_id,
)

log = logging.getLogger("sendit")

# stages inside PROCESSING, in order
FILTERED, PSEUDONYMIZED, ANONYMIZED = "filtered", "pseudonymized", "anonymized"
PACKAGED = "packaged"


@dataclass
class Pipeline:
    """Everything the steps of one DAG run share: settings, key, ledger, parsed recipes."""

    settings: Settings
    secret_key: bytes
    dag_id: str
    run_id: str = ""
    provider: PseudonymProvider | None = None
    stats: dict[str, int] = field(default_factory=dict)

    @cached_property
    def ledger(self) -> Ledger:
        """The batch records of this DAG (SQLite in the work root, or ``ledger_url``)."""
        return Ledger(self.settings.work_root, self.dag_id, self.settings.ledger_url)

    @cached_property
    def filter_rules(self) -> FilterRules:
        """Filter recipes, parsed once."""
        s = self.settings
        return FilterRules(
            load_filter_recipe(s.study_deid),
            s.modality_allowlist,
            s.image_type_required,
            pixel_cleaning=s.pixel_cleaning,
        )

    @cached_property
    def recipe(self):
        """The site's header recipe (deid syntax), parsed once; applied after the profile."""
        return load_recipe(self.settings.recipe)

    @cached_property
    def profile(self) -> Profile:
        """The Annex E profile with the configured options, compiled once per process."""
        return load_profile(self.settings.deid_options)

    def scanner(self, needles: Needles) -> LeakScanner:
        """The leak check of one batch: its original values, less what an option keeps on
        purpose (full dates, UIDs, institution names)."""
        return LeakScanner(needles, kept=self.profile.kept_needles)

    @cached_property
    def remap(self) -> Callable[[str], str]:
        """The keyed UID remapper (one cache per task)."""
        return uid_remapper(self.secret_key)

    # ---- bookkeeping -------------------------------------------------------------------

    def register(self, found: Iterable[FoundBatch]) -> list[str]:
        """Put the chosen batches in QUEUE for this run (work files of earlier tries removed),
        in one transaction. A record starts afresh: what sendit delivered before is kept
        apart (``Ledger.delivery``), whatever state the previous attempt was left in."""
        chosen = list(found)
        for batch in chosen:
            work = self.ledger.batch_dir(batch.key)
            for name in ("anonymized", "archive"):
                shutil.rmtree(work / name, ignore_errors=True)
        keys = []
        with self.ledger.transaction():
            for batch in chosen:
                old = self.ledger.get(batch.key)
                record = BatchRecord(
                    key=batch.key,
                    dag_id=self.dag_id,
                    source_path=batch.path,
                    fingerprint=batch.fingerprint,
                    finished_at=batch.finished_at,
                    run_id=self.run_id,
                    history=old.history if old else [],
                )
                if old and old.outputs.get("review"):
                    # a reviewer's decision stays with the content it was made for
                    record.outputs["review"] = old.outputs["review"]
                record.set_state(QUEUE)
                self.ledger.save(record)
                keys.append(batch.key)
        return keys

    def record_review(self, decisions: dict[str, str], reviewer: str = "") -> None:
        """Record reviewers' decisions (batch key -> release / reject) on held batches queued
        for this run; each applies to the batch's current content only."""
        for key, decision in decisions.items():
            record = self.ledger.get(key)
            if record is None or decision not in (RELEASE, REJECT):
                continue
            record.outputs["review"] = {
                "decision": decision,
                "fingerprint": record.fingerprint,
                "run_id": self.run_id,
                "reviewer": reviewer,
                "at": round(time.time(), 3),
            }
            record.warnings.append(f"reviewer's decision on held images: {decision}")
            self.ledger.save(record)

    def _each(self, keys: Iterable[str], step: str, want: tuple[str, ...], fn: Callable) -> None:
        for key in keys:
            record = self.ledger.get(key)
            if record is None:
                log.warning("batch %s: no record, skipped by %s", key, step)
                continue
            stage = record.outputs.get("stage", "")
            if (record.state, stage) not in want and record.state not in want:
                continue
            record.run_id = self.run_id or record.run_id
            record.start(step)
            try:
                fn(record)
            except BatchError as exc:
                record.set_state(ERROR, f"{step}: {exc}")
                log.error("batch %s: ERROR in %s: %s", key, step, exc)
            except Exception as exc:  # keep the run going; never print the exception text
                if is_no_space(exc):
                    # the working copies and the archive: about twice the batch's size
                    full = NoSpaceError("work root", 2 * record.metrics.get("bytes_in", 0))
                    record.set_state(ERROR, f"{step}: {full}")
                    log.error("batch %s: ERROR in %s: %s", key, step, full)
                else:
                    stack = "".join(traceback.format_tb(exc.__traceback__))
                    log.error(
                        "batch %s: internal error in %s (%s)\n%s",
                        key,
                        step,
                        type(exc).__name__,
                        stack,
                    )
                    record.set_state(
                        ERROR,
                        f"{step}: internal error ({type(exc).__name__}); "
                        "see the task log, then rerun the batch",
                    )
            if record.state == ERROR:  # finished: its identifier lists go (docs/pipeline.md)
                self.drop_identifiers(record)
            record.finish(step)
            self.ledger.save(record)

    def drop_identifiers(self, record: BatchRecord) -> None:
        """Delete a finished batch's identifier lists (names, ids, addresses: identified
        data nothing needs once the batch is DONE, EMPTY or ERROR; a rerun derives them
        again from the source folder). For an ERROR batch its working copies go too
        (unless ``keep_work_files``): a rerun rebuilds them, and on a full work root they
        hold the space the other batches need."""
        work = self._work(record)
        for name in ("identifiers.json", "images.json"):
            (work / name).unlink(missing_ok=True)
        if record.state == ERROR and not self.settings.keep_work_files:
            for name in ("anonymized", "archive"):
                shutil.rmtree(work / name, ignore_errors=True)

    def _work(self, record: BatchRecord) -> Path:
        return self.ledger.batch_dir(record.key)

    def process(self, keys: Iterable[str]) -> None:
        """Every batch step in order (the "fused" task layout): filter, pseudonymize,
        anonymize, package. Each step still checks the stage a batch is at, so a retry
        resumes where the batch stopped."""
        for step in (self.filter, self.pseudonymize, self.anonymize, self.package):
            step(keys)

    # ---- filter --------------------------------------------------------------------------

    def filter(self, keys: Iterable[str]) -> None:
        """Import and filter each image; collect identifiers. QUEUE -> PROCESSING/EMPTY/ERROR."""
        self._each(keys, "filter", (QUEUE,), self._filter_one)

    def _filter_one(self, record: BatchRecord) -> None:
        s = self.settings
        source = Path(record.source_path)
        refused = batch_problem(source, s.follow_external_symlinks)
        if refused:
            raise BatchError(refused)
        record.set_state(PROCESSING)
        try:
            listing = list_entries(source, source.parent, s.follow_external_symlinks)
        except FileNotFoundError:
            raise BatchError("the batch folder is gone (moved or deleted during the run)") from None
        except OSError as exc:
            raise BatchError(f"the batch folder cannot be read ({type(exc).__name__})") from None
        files = listing.paths
        total = len(files)
        record.warnings.extend(listing.notes)
        record.warnings.extend(f"{problem}, not read" for problem in listing.problems)
        # files of the study that cannot be delivered (unreadable entries, corrupt images)
        rejected: list[str] = list(listing.problems)
        accepted: list[dict[str, Any]] = []
        needles = Needles()
        series: dict[str, dict[str, Any]] = {}
        seen: dict[str, set[str]] = {
            "study_date": set(),
            "study": set(),
            "entity": set(),
            "item": set(),
        }
        missing: dict[str, int] = {}
        size = 0
        for i, (path, (_, st, _)) in enumerate(zip(files, listing.files, strict=True), 1):
            size += st.st_size
            try:
                ds = read_checked_header(path)
            except RejectedImageError as exc:
                rejected.append(f"file {i} of {total}: {exc}")
                record.warnings.append(f"file {i} of {total}: {exc}, rejected")
                continue
            except NotDicomError as exc:
                record.warnings.append(f"file {i} of {total}: {exc}, skipped")
                continue
            series_uid = text(ds, "SeriesInstanceUID")
            info = series.setdefault(
                series_uid,
                {
                    "number": text(ds, "SeriesNumber"),
                    "modality": text(ds, "Modality"),
                    "images": 0,
                    "removed": 0,
                    "ordinal": len(series) + 1,
                },
            )
            info["images"] += 1
            verdict = judge(ds, self.filter_rules)
            if verdict.skip:
                info["removed"] += 1
                record.warnings.append(f"file {i} of {total}: {verdict.skip}, skipped")
                continue
            entity, item = text(ds, s.entity_id), text(ds, s.item_id)
            for keyword, value in ((s.entity_id, entity), (s.item_id, item)):
                if not value:
                    missing[keyword] = missing.get(keyword, 0) + 1
            seen["entity"].add(entity)
            seen["item"].add(item)
            seen["study"].add(text(ds, "StudyInstanceUID"))
            seen["study_date"].add(text(ds, "StudyDate"))
            needles.update(collect_needles(ds, [source.name]))
            accepted.append(
                {
                    "file": str(path),
                    "series": text(ds, "SeriesNumber") or str(info["ordinal"]),
                    "instance": text(ds, "InstanceNumber") or str(len(accepted) + 1),
                    "item_time": self._item_timestamp(ds),
                    "birth": dicom_date_to_iso(text(ds, "PatientBirthDate")),
                    # why the image must go through the pixel stage (None: it need not)
                    "pixels": verdict.pixels,
                }
            )
        record.metrics.update(
            {
                "images_found": total,
                "images_accepted": len(accepted),
                "images_skipped": total - len(accepted),
                "bytes_in": size,
                "series": len(series),
                "series_detail": sorted(series.values(), key=lambda v: v["ordinal"]),
                "series_removed": sum(1 for v in series.values() if v["images"] == v["removed"]),
                "study_dates": len(seen["study_date"] - {""}),
                "images_rejected": len(rejected),
            }
        )
        if rejected:
            self._incomplete(record, rejected, bool(accepted))
        if not accepted:
            why = "no image passed the filters" if total else "the batch folder has no files"
            record.set_state(EMPTY, why)
            return
        if missing:
            names = ", ".join(f"{k} in {n} image(s)" for k, n in sorted(missing.items()))
            raise BatchError(f"required identifier missing: {names}")
        if len(seen["study_date"]) > 1:
            raise BatchError(f"images have {len(seen['study_date'])} different study dates")
        for what, label in (
            ("study", "studies (StudyInstanceUID)"),
            ("entity", f"patients ({s.entity_id})"),
            ("item", f"accession numbers ({s.item_id})"),
        ):
            if len(seen[what]) > 1:
                raise BatchError(
                    f"one folder holds {len(seen[what])} different {label}; "
                    "split it into one folder per study"
                )
        first = accepted[0]
        identity = StudyIdentity(
            entity_id=sanitize_id(next(iter(seen["entity"]))),
            item_id=sanitize_id(next(iter(seen["item"]))),
            entity_source=s.entity_id_source,
            item_source=s.item_id_source,
            entity_timestamp=first["birth"],
            item_timestamp=first["item_time"],
        )
        work = self._work(record)
        # derived from the source folder again if lost: not fsynced (the record is)
        write_json(work / "images.json", accepted, durable=False)
        write_json(
            work / "identifiers.json",
            {"identity": asdict(identity), "needles": needles.as_dict()},
            durable=False,
        )
        record.outputs["stage"] = FILTERED
        log.info(
            "batch %s: %d of %d images accepted, %d series",
            record.key,
            len(accepted),
            total,
            len(series),
        )

    def _incomplete(self, record: BatchRecord, rejected: list[str], others: bool) -> None:
        """The rule for a study with files that cannot be delivered (docs/pipeline.md): the
        batch ends ERROR naming the count and the first problem, so a study is never
        delivered silently incomplete; with ``deliver_incomplete_studies`` on, the images
        that passed are delivered and the batch carries a warning instead."""
        if others and self.settings.deliver_incomplete_studies:
            record.warnings.append(
                f"delivered without {len(rejected)} file(s) that cannot be delivered "
                "(deliver_incomplete_studies is on)"
            )
            return
        more = f" (and {len(rejected) - 1} more, see the warnings)" if len(rejected) > 1 else ""
        raise BatchError(
            f"{len(rejected)} file(s) of the study cannot be delivered, the study would be "
            f"incomplete: {rejected[0]}{more}; replace them (fetch the study again), "
            "then reprocess the batch"
        )

    @staticmethod
    def _item_timestamp(ds: Any) -> str | None:
        for date_kw, time_kw in (
            ("StudyDate", "StudyTime"),
            ("SeriesDate", "SeriesTime"),
            ("ContentDate", "ContentTime"),
            ("AcquisitionDate", "AcquisitionTime"),
        ):
            stamp = dicom_date_to_iso(text(ds, date_kw), text(ds, time_kw))
            if stamp:
                return stamp
        return None

    # ---- pseudonymize --------------------------------------------------------------------

    def pseudonymize(self, keys: Iterable[str]) -> None:
        """Get pseudonyms, one request per batch."""
        self._each(
            keys,
            "pseudonymize",
            ((PROCESSING, FILTERED), (PROCESSING, PSEUDONYMIZED)),
            self._pseudonymize_one,
        )

    def _provider(self) -> PseudonymProvider:
        if self.provider is None:
            if self.settings.pseudonym_provider != "local":
                raise ProviderError("no DASHER client was given to this step")
            self.provider = LocalKeyedProvider(self.secret_key)
        return self.provider

    def _pseudonymize_one(self, record: BatchRecord) -> None:
        work = self._work(record)
        identity = StudyIdentity(**read_json(work / "identifiers.json")["identity"])
        answer = self._provider().lookup(self.settings.study_name, build_request([identity]))
        pseudonym = parse_response(answer, identity)
        write_json(work / "pseudonym.json", asdict(pseudonym))
        record.outputs.update(
            stage=PSEUDONYMIZED,
            provider=self.settings.pseudonym_provider,
            entity_suid=pseudonym.entity_suid,
            item_suid=pseudonym.item_suid,
        )

    # ---- anonymize -----------------------------------------------------------------------

    def anonymize(self, keys: Iterable[str]) -> None:
        """Apply the header recipe to every accepted image; leak-check each in memory."""
        self._each(
            keys,
            "anonymize",
            ((PROCESSING, PSEUDONYMIZED), (PROCESSING, ANONYMIZED)),
            self._anonymize_one,
        )

    def _anonymize_one(self, record: BatchRecord) -> None:
        work = self._work(record)
        images = read_json(work / "images.json")
        needles = Needles.from_dict(read_json(work / "identifiers.json")["needles"])
        pseudonym = Pseudonym(**read_json(work / "pseudonym.json"))
        scanner = self.scanner(needles)
        variables = recipe_variables(pseudonym, self.remap)
        out_dir = work / "anonymized"
        review_dir = work / "review"
        for folder in (out_dir, review_dir):
            shutil.rmtree(folder, ignore_errors=True)
        out_dir.mkdir(parents=True)
        decision = review_decision(record)
        names: set[str] = set()
        study_date = ""
        header: dict[str, Any] | None = None
        held: list[dict[str, Any]] = []
        cleaned = released = 0
        for image in images:
            original = read_full(image["file"])
            risk = image.get("pixels")  # the filter step's verdict on this image
            plan = plan_pixels(original, self.filter_rules.recipe) if risk else None
            ocr_words = header_identifiers(original) if plan else None
            ds = anonymize_dataset(
                original, self.recipe, variables, scanner, self.profile, clean=scanner.redact
            )
            name = _file_name(image["series"], image["instance"], names)
            if plan is not None and ocr_words is not None:
                fuzzy = identifier_matcher(*ocr_words)
                outcome = clean_pixels(
                    ds,
                    plan,
                    self.settings,
                    lambda t, fuzzy=fuzzy: scanner.hits(t) or fuzzy(t),
                    released=decision == RELEASE,
                )
                if not outcome.cleaned:
                    held.append(_held_entry(name, risk, outcome, review_dir))
                    continue
                add_method_codes(ds, [CLEAN_PIXEL_DATA_CODE])
                cleaned += 1
                released += outcome.released
            ds.save_as(out_dir / name, enforce_file_format=True)
            study_date = study_date or text(ds, "StudyDate")
            values = shared_header([ds])
            header = (
                values
                if header is None
                else {k: v for k, v in header.items() if values.get(k) == v}
            )
        write_json(
            work / "header.json",
            {
                "study_date": study_date,
                "shared": header or {},
                "defined_terms": sorted(scanner.defined_terms),
            },
            durable=False,
        )
        record.metrics.update(
            images_pixel_cleaned=cleaned, images_released=released, images_held=len(held)
        )
        record.outputs["held"] = held
        record.outputs["files"] = sorted(names - {h["file"] for h in held})
        if held:
            log.info("batch %s: %d image(s) held back for review", record.key, len(held))
        if held and decision is None and self.settings.pixel_hold == "study":
            record.set_state(
                HELD,
                f"{len(held)} image(s) held for review: their pixels could not be verified "
                "free of burned-in text; release or reject the batch after looking at the "
                "masked thumbnails",
            )
            return
        if not record.outputs["files"]:
            who = "rejected by a reviewer" if decision == REJECT else "held back"
            record.set_state(EMPTY, f"every image was {who} (burned-in text)")
            return
        if held:
            why = "rejected by a reviewer" if decision == REJECT else "held for review"
            record.warnings.append(f"{len(held)} image(s) {why}, delivered without them")
        record.outputs["stage"] = ANONYMIZED

    # ---- package and verify --------------------------------------------------------------

    def package(self, keys: Iterable[str]) -> None:
        """Pack each batch, build its row, and verify names, row and archive headers."""
        self._each(keys, "package", ((PROCESSING, ANONYMIZED),), self._package_one)

    def _package_one(self, record: BatchRecord) -> None:
        s = self.settings
        work = self._work(record)
        pseudonym = Pseudonym(**read_json(work / "pseudonym.json"))
        needles = Needles.from_dict(read_json(work / "identifiers.json")["needles"])
        header = read_json(work / "header.json")
        scanner = self.scanner(needles)
        defined_terms = frozenset(header.get("defined_terms", ()))
        name = archive_name(pseudonym.entity_suid, header["study_date"], pseudonym.item_suid)
        members = [
            (f"{pseudonym.item_suid}/{f}", work / "anonymized" / f) for f in record.outputs["files"]
        ]
        target = work / "archive" / name
        row = metadata_row(header["shared"], pseudonym.entity_suid, pseudonym.item_suid)
        # the name carries the shifted study date, which may equal another original date
        date_left = scanner.date_kept("StudyDate", header["study_date"])
        leaks = ["archive name"] if scanner.hits(name, dates="none") or date_left else []
        leaks += [f"member name {m}" for m, _ in members if scanner.hits(m)]
        leaks += scanner.scan_mapping(row, "metadata row")

        def inspect(member: str, data: bytes) -> None:
            # the raw header bytes going into the archive, whatever their encoding
            if scanner.hits_bytes(header_bytes(data), exempt=defined_terms):
                leaks.append(f"{member}: header bytes")

        sha = write_archive(members, target, level=s.gzip_level, inspect=inspect)
        if leaks:
            target.unlink(missing_ok=True)
            raise LeakError("original identifier found in " + "; ".join(leaks[:5]))
        write_json(work / "archive" / "row.json", row, durable=False)
        record.outputs.update(
            stage=PACKAGED,
            verified=True,
            archive=str(target),
            archive_name=name,
            object_name=object_name(s.collection, pseudonym.entity_suid, name),
            sha256=sha,
            bytes_out=target.stat().st_size,
            images=len(members),
            recipe_sha256=recipe_checksum(s.recipe),
            deidentification=self.profile.describe(),
            version=__version__,
        )
        record.set_state(DONEPROCESSING)
        if not s.keep_work_files:
            shutil.rmtree(work / "anonymized", ignore_errors=True)
        log.info("batch %s: packaged and verified %d images", record.key, len(members))

    # ---- delivery helpers ----------------------------------------------------------------

    def ready_for_delivery(self, keys: Iterable[str]) -> list[BatchRecord]:
        """Batches that may leave the machine: DONEPROCESSING, verified, with pseudonyms.

        This re-checks the record rather than trusting the upstream task's result.
        """
        ready = []
        for key in keys:
            record = self.ledger.get(key)
            if record is None or record.state != DONEPROCESSING:
                continue
            out = record.outputs
            if not (
                out.get("verified")
                and out.get("entity_suid")
                and out.get("item_suid")
                and Path(out.get("archive", "")).is_file()
            ):
                record.set_state(ERROR, "deliver: refused, batch is not verified as anonymized")
                self.ledger.save(record)
                self.drop_identifiers(record)
                continue
            ready.append(record)
        if ready:
            # noted before any object is written: a crash after the write leaves the
            # checksum known, so the next attempt may replace that object
            delivered = self.ledger.note_attempts(ready)
            for record in ready:
                # every version sendit put at this batch's object (the replace-own rule)
                record.outputs["previous_sha256"] = delivered[record.key].own_versions()
        return ready

    def row_of(self, record: BatchRecord) -> dict[str, str]:
        """The metadata row of a packaged batch."""
        return read_json(self._work(record) / "archive" / "row.json")

    def mark_delivered(self, record: BatchRecord, where: dict[str, Any]) -> None:
        """DONEPROCESSING -> DONE and "what sendit delivered" in one transaction; then
        remove identified work files, and in the outbox the batch's own earlier object when
        this one has another name (one object and one row per study)."""
        # identified work files go first: a crash before the DONE transaction leaves the
        # batch to be redone from its source (the same bytes, replaced by themselves), never
        # a DONE batch whose identifier lists no later run would delete
        work = self._work(record)
        for name in ("identifiers.json", "images.json"):
            (work / name).unlink(missing_ok=True)
        record.outputs.update(where)
        record.finish("deliver")
        record.set_state(DONE)
        outbox = where.get("delivered_to") == "outbox"
        location = str(where.get("bucket") or (self.settings.outbox if outbox else ""))
        with self.ledger.transaction():
            before = self.ledger.delivery(record.key)
            self.ledger.save(record)
            self.ledger.confirm_delivery(record, location)
        mine = before is not None and (before.target, before.location) == ("outbox", location)
        if outbox and before is not None and mine:
            from sendit_ops.delivery import outbox as box

            s, out = self.settings, record.outputs
            table = box.table_path(Path(location), s.collection, s.bigquery_table)
            box.remove_replaced(Path(location), table, before, out["object_name"], out["item_suid"])
        if not self.settings.keep_work_files:
            shutil.rmtree(work / "archive", ignore_errors=True)

    def mark_failed(self, record: BatchRecord, exc: Exception) -> None:
        """A delivery failure of one batch: ERROR with the (PHI-free) reason; a full disk
        says so ("no space left on the outbox"), and the identifier lists go (finished)."""
        if is_no_space(exc):
            exc = NoSpaceError("outbox", record.outputs.get("bytes_out", 0))
        reason = str(exc) if isinstance(exc, BatchError) else type(exc).__name__
        record.set_state(ERROR, f"deliver: {reason}")
        self.drop_identifiers(record)
        self.ledger.save(record)

    def finalize_empty(self, keys: Iterable[str]) -> None:
        """Remove identified work files of finished batches that will not be delivered
        (EMPTY, HELD, and ERROR: docs/pipeline.md promises identifier lists are deleted when a
        batch is finished, whatever its end)."""
        for key in keys:
            record = self.ledger.get(key)
            if record and record.state in (EMPTY, ERROR, HELD):
                self.drop_identifiers(record)  # a held batch is redone from its source


RELEASE, REJECT = "release", "reject"


def review_decision(record: BatchRecord) -> str | None:
    """A reviewer's decision on this batch's held images (release or reject), if it was made
    for the content the batch has now (a changed study needs a new review)."""
    review = record.outputs.get("review") or {}
    if review.get("fingerprint") != record.fingerprint:
        return None
    return review.get("decision") if review.get("decision") in (RELEASE, REJECT) else None


def _held_entry(name: str, risk: str | None, outcome: PixelOutcome, review_dir: Path) -> dict:
    """What a reviewer needs about one held image: why, where the masks are, and a thumbnail
    of the masked output (never the text OCR read)."""
    entry = {"file": name, "risk": risk or "", **outcome.as_dict()}
    if outcome.thumbnail_png:
        thumb = review_dir / (Path(name).stem + ".png")
        write_atomic(thumb, outcome.thumbnail_png, durable=False)
        entry["thumbnail"] = thumb.name
    return entry


def _file_name(series: str, instance: str, taken: set[str]) -> str:
    """``<series>_<instance>.dcm`` from the (numeric) series and instance numbers."""

    def num(v: str) -> str:
        digits = "".join(c for c in str(v) if c.isdigit())
        return digits.zfill(4)[-8:] if digits else "0000"

    base = f"{num(series)}_{num(instance)}"
    name, n = f"{base}.dcm", 1
    while name in taken:
        n += 1
        name = f"{base}_{n}.dcm"
    taken.add(name)
    return name


def _outbox_error(exc: Exception) -> Exception:
    """The reason an outbox write failed, as an admin reads it (a full disk named)."""
    if is_no_space(exc):
        return exc  # mark_failed words it with the batch's size
    if isinstance(exc, BatchError):
        return exc
    return DeliveryError(f"outbox write failed ({type(exc).__name__})")


def deliver_to_outbox(pipeline: Pipeline, keys: Iterable[str], outbox: Path) -> dict[str, int]:
    """Deliver ready batches to the local outbox (objects, then one upsert of all rows)."""
    from sendit_ops.delivery import outbox as box

    s = pipeline.settings
    counts = {"created": 0, "exists": 0, "replaced": 0, "failed": 0}
    delivered: list[tuple[BatchRecord, dict[str, str]]] = []
    created: dict[str, bool] = {}
    for record in pipeline.ready_for_delivery(keys):
        record.start("deliver")
        try:
            out = record.outputs
            status = box.put_object(
                outbox,
                out["object_name"],
                Path(out["archive"]),
                out["sha256"],
                replaces=out.get("previous_sha256"),
            )
            counts[status] += 1
            created[record.key] = status == "created"
            row = pipeline.row_of(record)
            row["storage_download"] = (outbox / out["object_name"]).resolve().as_uri()
            row["storage_metadataLink"] = row["storage_download"]
            delivered.append((record, row))
        except (BatchError, OSError) as exc:
            counts["failed"] += 1
            pipeline.mark_failed(record, _outbox_error(exc))
    if delivered:
        table = box.table_path(outbox, s.collection, s.bigquery_table)
        try:
            counts.update(box.upsert_rows(table, [row for _, row in delivered]))
        except OSError as exc:
            # no row, so no object either: an archive without its row looks delivered to
            # whoever reads the outbox; objects this call created are removed, the batches
            # end ERROR and the next run delivers them again
            # the table is rewritten whole: its size plus the new rows
            need = sum(len(json.dumps(row)) + 1 for _, row in delivered)
            need += table.stat().st_size if table.exists() else 0
            for record, _ in delivered:
                if created.get(record.key):
                    (outbox / record.outputs["object_name"]).unlink(missing_ok=True)
                counts["failed"] += 1
                pipeline.mark_failed(
                    record,
                    NoSpaceError("outbox", need) if is_no_space(exc) else _outbox_error(exc),
                )
            return counts
        for record, _ in delivered:
            pipeline.mark_delivered(record, {"delivered_to": "outbox", "delivered_at": time.time()})
    return counts
