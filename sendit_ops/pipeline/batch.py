"""The per-batch steps of a run, in plain Python (the Airflow tasks are thin wrappers).

Each step loads the batch record, checks the batch is at the stage it expects, does its work
in the batch's work folder, and saves the record. A BatchError moves that batch to ERROR with
its reason and the other batches go on; any other exception does the same with a generic,
PHI-free reason (the stack is logged without exception text, which may quote header values).
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from sendit_ops import __version__
from sendit_ops.core.atomic_files import read_json, write_atomic, write_json
from sendit_ops.core.discovery import FoundBatch, batch_problem, list_entries
from sendit_ops.core.errors import (
    BatchError,
    ConfigError,
    LeakError,
    NoSpaceError,
    ProviderError,
    TransientError,
    is_no_space,
)
from sendit_ops.core.ledger import Ledger
from sendit_ops.core.lifecycle import BATCH_STEPS, Stage, State, Step
from sendit_ops.core.progress import ProgressLog
from sendit_ops.core.records import BatchRecord, Delivery
from sendit_ops.core.settings import Settings
from sendit_ops.dicom.annex_e import CLEAN_PIXEL_DATA_CODE, Profile, add_method_codes
from sendit_ops.dicom.annex_e.record import append_method
from sendit_ops.dicom.anonymize import (
    anonymize_dataset,
    load_profile,
    load_recipe,
    recipe_checksum,
)
from sendit_ops.dicom.filters import FilterRules, load_filter_recipe
from sendit_ops.dicom.identifiers import Needles, ocr_matcher
from sendit_ops.dicom.io import read_full, text
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.dicom.pixels import (
    PixelOutcome,
    PixelPlan,
    plan_pixels,
)
from sendit_ops.dicom.pixels import clean as clean_pixels
from sendit_ops.dicom.recipe_engine import CompiledRecipe
from sendit_ops.dicom.recipe_variables import recipe_variables, uid_remapper
from sendit_ops.packaging.archive import (
    archive_name,
    header_bytes,
    metadata_row,
    object_name,
    shared_header,
    write_archive,
)
from sendit_ops.pipeline.study_scan import (
    AcceptedImage,
    accepted_json,
    incomplete_warning,
    scan_study,
    study_identity,
)
from sendit_ops.pseudonyms.providers import (
    LocalKeyedProvider,
    Pseudonym,
    PseudonymProvider,
    StudyIdentity,
    build_request,
    parse_response,
)

log = logging.getLogger("sendit")

# the batches a step takes: a state (any stage), or a state at a given stage
Wanted = tuple[State | tuple[State, Stage], ...]

# stages inside PROCESSING, in order


@dataclass
class Pipeline:
    """Everything the steps of one DAG run share: settings, key, ledger, parsed recipes."""

    settings: Settings
    secret_key: bytes
    dag_id: str
    run_id: str = ""
    provider: PseudonymProvider | None = None
    map_index: int = -1  # the Airflow map index of the running task (-1: not mapped)
    # the running step's progress log (a long batch reports its images to it)
    progress: ProgressLog | None = field(default=None, init=False, repr=False, compare=False)

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
    def recipe(self) -> CompiledRecipe:
        """The site's header recipe (deid syntax), parsed once; applied after the profile."""
        return load_recipe(self.settings.recipe)

    @cached_property
    def profile(self) -> Profile:
        """The Annex E profile with the configured options, compiled once per process."""
        return load_profile(self.settings.deid_options, self.settings.clean_descriptor_attributes)

    def scanner(self, needles: Needles) -> LeakScanner:
        """The leak check of one batch: its original values, less what an option keeps on
        purpose (full dates, UIDs, institution names)."""
        return LeakScanner(needles, kept=self.profile.kept_needles)

    @cached_property
    def pseudonym_source(self) -> str:
        """Which pseudonyms this run gives (provider and what its answers depend on: the
        local provider a fingerprint of the secret key, DASHER the connection and study).
        Recorded per batch: a run with another source would deliver a second copy of a
        study under new ids, so discover refuses it unless re-delivery is asked for."""
        s = self.settings
        if s.pseudonym_provider == "local":
            digest = hashlib.sha256(b"sendit-key-id:" + self.secret_key).hexdigest()[:12]
            return "local:" + digest
        return f"dasher:{s.dasher_conn_id}/{s.study_name}"

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
                if old and old.outputs.review:
                    # a reviewer's decision stays with the content it was made for
                    record.outputs.review = old.outputs.review
                record.set_state(State.QUEUE)
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
            record.outputs.review = {
                "decision": decision,
                "fingerprint": record.fingerprint,
                "run_id": self.run_id,
                "reviewer": reviewer,
                "at": round(time.time(), 3),
            }
            record.warnings.append(f"reviewer's decision on held images: {decision}")
            self.ledger.save(record)

    def _each(
        self, keys: Iterable[str], step: Step, want: Wanted, fn: Callable[[BatchRecord], None]
    ) -> None:
        keys = list(keys)
        progress = self.progress = ProgressLog(step, len(keys), log.info)
        try:
            with progress.heartbeat():  # a long batch logs a line at least every 30 s
                for key in keys:
                    progress.begin(key)
                    record = self._one(key, step, want, fn)
                    metrics = record.metrics if record else {}
                    progress.batch_done(
                        metrics.get("images_accepted", 0), metrics.get("bytes_in", 0)
                    )
        finally:
            self.progress = None
        progress.close()

    def _one(
        self, key: str, step: Step, want: Wanted, fn: Callable[[BatchRecord], None]
    ) -> BatchRecord | None:
        """One step of one batch: the record's state and reasons say how it went; an
        exception never leaves the batch (or stops the others)."""
        record = self.ledger.get(key)
        if record is None:
            log.warning("batch %s: no record, skipped by %s", key, step)
            return None
        stage = record.outputs.stage
        if (record.state, stage) not in want and record.state not in want:
            return record
        record.run_id = self.run_id or record.run_id
        record.start(step, self.map_index)
        try:
            fn(record)
        except (ConfigError, TransientError):
            # not this batch's fault (the setup, or a service down): the task fails or is
            # retried with the message; the batch resumes from its stage next time
            self.ledger.save(record)
            raise
        except BatchError as exc:
            record.set_state(State.ERROR, f"{step}: {exc}")
            log.error("batch %s: ERROR in %s: %s", key, step, exc)
        except Exception as exc:  # keep the run going; never print the exception text
            if is_no_space(exc):
                # the working copies and the archive: about twice the batch's size
                full = NoSpaceError("work root", 2 * record.metrics.get("bytes_in", 0))
                record.set_state(State.ERROR, f"{step}: {full}")
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
                    State.ERROR,
                    f"{step}: internal error ({type(exc).__name__}); "
                    "see the task log, then rerun the batch",
                )
        if record.state == State.ERROR:  # finished: its identifier lists go (docs/pipeline.md)
            self.drop_identifiers(record)
        record.finish(step)
        self.ledger.save(record)
        return record

    def drop_identifiers(self, record: BatchRecord) -> None:
        """Delete a finished batch's identifier lists (names, ids, addresses: identified
        data nothing needs once the batch is DONE, EMPTY or ERROR; a rerun derives them
        again from the source folder). For an ERROR batch its working copies go too
        (unless ``keep_work_files``): a rerun rebuilds them, and on a full work root they
        hold the space the other batches need."""
        work = self._work(record)
        for name in ("identifiers.json", "images.json"):
            (work / name).unlink(missing_ok=True)
        if record.state == State.ERROR and not self.settings.keep_work_files:
            for name in ("anonymized", "archive"):
                shutil.rmtree(work / name, ignore_errors=True)

    def _work(self, record: BatchRecord) -> Path:
        return self.ledger.batch_dir(record.key)

    def run(self, step: Step, keys: Iterable[str]) -> None:
        """Run one step (or, for ``Step.PROCESS``, the four batch steps in order: the
        "fused" task layout) over some batches. Each step checks the stage a batch is at,
        so a retry resumes where the batch stopped."""
        keys = list(keys)
        steps = {
            Step.FILTER: self.filter,
            Step.PSEUDONYMIZE: self.pseudonymize,
            Step.ANONYMIZE: self.anonymize,
            Step.PACKAGE: self.package,
        }
        for each in BATCH_STEPS if step == Step.PROCESS else (Step(step),):
            steps[each](keys)

    # ---- filter --------------------------------------------------------------------------

    def filter(self, keys: Iterable[str]) -> None:
        """Import and filter each image; collect identifiers. QUEUE -> PROCESSING/EMPTY/ERROR."""
        self._each(keys, Step.FILTER, (State.QUEUE,), self._filter_one)

    def _filter_one(self, record: BatchRecord) -> None:
        """Read (scan_study), decide (study_identity), then write: the record's metrics and
        state, the accepted images and the identifier list of the later steps."""
        s = self.settings
        source = Path(record.source_path)
        refused = batch_problem(source, s.follow_external_symlinks)
        if refused:
            raise BatchError(refused)
        record.set_state(State.PROCESSING)
        try:
            listing = list_entries(source, source.parent, s.follow_external_symlinks)
        except FileNotFoundError:
            raise BatchError("the batch folder is gone (moved or deleted during the run)") from None
        except OSError as exc:
            raise BatchError(f"the batch folder cannot be read ({type(exc).__name__})") from None
        scan = scan_study(listing, listing.paths, source.name, self.filter_rules, s)
        record.warnings.extend(scan.warnings)
        record.metrics.update(scan.metrics())
        warning = incomplete_warning(scan, s)
        if warning:
            record.warnings.append(warning)
        if not scan.accepted:
            why = "no image passed the filters" if scan.total else "the batch folder has no files"
            record.set_state(State.EMPTY, why)
            return
        identity = study_identity(scan, s)
        work = self._work(record)
        # derived from the source folder again if lost: not fsynced (the record is)
        write_json(work / "images.json", accepted_json(scan), durable=False)
        write_json(
            work / "identifiers.json",
            {"identity": asdict(identity), "needles": scan.needles.as_dict()},
            durable=False,
        )
        record.outputs.stage = Stage.FILTERED
        log.info(
            "batch %s: %d of %d images accepted, %d series",
            record.key,
            len(scan.accepted),
            scan.total,
            len(scan.series),
        )

    # ---- pseudonymize --------------------------------------------------------------------

    def pseudonymize(self, keys: Iterable[str]) -> None:
        """Get pseudonyms, one request per batch."""
        self._each(
            keys,
            Step.PSEUDONYMIZE,
            ((State.PROCESSING, Stage.FILTERED), (State.PROCESSING, Stage.PSEUDONYMIZED)),
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
        record.outputs = replace(
            record.outputs,
            stage=Stage.PSEUDONYMIZED,
            provider=self.settings.pseudonym_provider,
            pseudonym_source=self.pseudonym_source,
            entity_suid=pseudonym.entity_suid,
            item_suid=pseudonym.item_suid,
        )

    # ---- anonymize -----------------------------------------------------------------------

    def anonymize(self, keys: Iterable[str]) -> None:
        """Apply the header recipe to every accepted image; leak-check each in memory."""
        self._each(
            keys,
            Step.ANONYMIZE,
            ((State.PROCESSING, Stage.PSEUDONYMIZED), (State.PROCESSING, Stage.ANONYMIZED)),
            self._anonymize_one,
        )

    def _anonymize_one(self, record: BatchRecord) -> None:
        work = self._work(record)
        images = [AcceptedImage.from_json(i) for i in read_json(work / "images.json")]
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
        masked: list[dict[str, Any]] = []
        screened = 0
        for done, image in enumerate(images):
            if self.progress is not None:
                self.progress.images_done(done, len(images))
            original = read_full(image.file)
            risk = image.pixels  # the filter step's verdict on this image
            plan = self._pixel_plan(original, risk)
            ds = anonymize_dataset(
                original, self.recipe, variables, scanner, self.profile, clean=scanner.descriptors
            )
            name = _file_name(image.series, image.instance, names)
            if plan is not None:
                fuzzy = ocr_matcher(needles)

                def identifying(t: str, fuzzy: Callable[[str], bool] = fuzzy) -> bool:
                    return scanner.hits(t) or fuzzy(t)

                outcome = clean_pixels(
                    ds, plan, self.settings, identifying, released=decision == RELEASE
                )
                if not outcome.cleaned:
                    held.append(_held_entry(name, risk, outcome, review_dir))
                    continue
                screened += 1
                if outcome.boxes or plan.needed:  # masked, or read whole and found clean
                    add_method_codes(ds, [CLEAN_PIXEL_DATA_CODE])
                if outcome.boxes:
                    cleaned += 1
                    masked.append(_masked_entry(name, outcome))
                released += outcome.released
            if self.settings.pixel_screening == "header":
                append_method(ds, HEADER_ONLY_METHOD)
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
                "written": sorted(scanner.written_values),
            },
            durable=False,
        )
        record.metrics.update(
            images_pixel_cleaned=cleaned,
            images_released=released,
            images_held=len(held),
            images_pixel_screened=screened,
            pixel_screening=self.settings.pixel_screening,
            pixel_masked_share_max=max((m["masked_share"] for m in masked), default=0.0),
        )
        record.outputs.held = held
        record.outputs.masked = masked
        record.outputs.files = sorted(names - {h["file"] for h in held})
        if held:
            log.info("batch %s: %d image(s) held back for review", record.key, len(held))
        if held and decision is None and self.settings.pixel_hold == "study":
            record.set_state(
                State.HELD,
                f"{len(held)} image(s) held for review: their pixels could not be verified "
                "free of burned-in text; release or reject the batch after looking at the "
                "masked thumbnails",
            )
            return
        if not record.outputs.files:
            who = "rejected by a reviewer" if decision == REJECT else "held back"
            record.set_state(State.EMPTY, f"every image was {who} (burned-in text)")
            return
        if held:
            why = "rejected by a reviewer" if decision == REJECT else "held for review"
            record.warnings.append(f"{len(held)} image(s) {why}, delivered without them")
        record.outputs.stage = Stage.ANONYMIZED

    def _pixel_plan(self, original: Dataset, risk: str | None) -> PixelPlan | None:
        """The pixel stage's plan for one image: the header's (graylist boxes, ultrasound
        regions) when the filters found a risk; else, with ``pixel_screening`` all (the
        default), a plan to screen every frame of any image with pixel data; else none."""
        if risk:
            return plan_pixels(original, self.filter_rules.recipe)
        if self.settings.pixel_screening == "all" and "PixelData" in original:
            rows, columns = int(original.get("Rows") or 0), int(original.get("Columns") or 0)
            return PixelPlan(None, (), rows, columns)
        return None

    # ---- package and verify --------------------------------------------------------------

    def package(self, keys: Iterable[str]) -> None:
        """Pack each batch, build its row, and verify names, row and archive headers."""
        self._each(keys, Step.PACKAGE, ((State.PROCESSING, Stage.ANONYMIZED),), self._package_one)

    def _package_one(self, record: BatchRecord) -> None:
        s = self.settings
        work = self._work(record)
        pseudonym = Pseudonym(**read_json(work / "pseudonym.json"))
        needles = Needles.from_dict(read_json(work / "identifiers.json")["needles"])
        header = read_json(work / "header.json")
        scanner = self.scanner(needles)
        scanner.written_values.update(header.get("written", ()))  # what the pipeline wrote
        defined_terms = frozenset(header.get("defined_terms", ()))
        name = archive_name(pseudonym.entity_suid, header["study_date"], pseudonym.item_suid)
        members = [
            (f"{pseudonym.item_suid}/{f}", work / "anonymized" / f) for f in record.outputs.files
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
        record.outputs = replace(
            record.outputs,
            stage=Stage.PACKAGED,
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
        record.set_state(State.DONEPROCESSING)
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
            if record is None or record.state != State.DONEPROCESSING:
                continue
            out = record.outputs
            if not (
                out.verified and out.entity_suid and out.item_suid and Path(out.archive).is_file()
            ):
                record.set_state(
                    State.ERROR, "deliver: refused, batch is not verified as anonymized"
                )
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
                record.outputs.previous_sha256 = delivered[record.key].own_versions()
        return ready

    def row_of(self, record: BatchRecord) -> dict[str, str]:
        """The metadata row of a packaged batch."""
        row: dict[str, str] = read_json(self._work(record) / "archive" / "row.json")
        return row

    def mark_delivered(self, record: BatchRecord, where: dict[str, Any]) -> Delivery | None:
        """DONEPROCESSING -> DONE and "what sendit delivered" in one transaction; then
        remove identified work files. Returns what sendit had delivered for the batch
        before, when it went to the same place (target and location): the caller removes
        it if it has another object name or row key (one object and one row per study)."""
        # identified work files go first: a crash before the DONE transaction leaves the
        # batch to be redone from its source (the same bytes, replaced by themselves), never
        # a DONE batch whose identifier lists no later run would delete
        work = self._work(record)
        for name in ("identifiers.json", "images.json"):
            (work / name).unlink(missing_ok=True)
        record.outputs = replace(record.outputs, **where)
        record.finish(Step.DELIVER)
        record.note_chunk(Step.DELIVER, self.map_index)
        record.set_state(State.DONE)
        outbox = where.get("delivered_to") == "outbox"
        location = str(where.get("bucket") or (self.settings.outbox if outbox else ""))
        with self.ledger.transaction():
            before = self.ledger.delivery(record.key)
            self.ledger.save(record)
            self.ledger.confirm_delivery(record, location)
        if not self.settings.keep_work_files:
            shutil.rmtree(work / "archive", ignore_errors=True)
        same_place = before is not None and (before.target, before.location) == (
            where.get("delivered_to"),
            location,
        )
        return before if same_place else None

    def mark_failed(self, record: BatchRecord, exc: Exception) -> None:
        """A delivery failure of one batch: ERROR with the (PHI-free) reason; a full disk
        says so ("no space left on the outbox"), and the identifier lists go (finished)."""
        if is_no_space(exc):
            exc = NoSpaceError("outbox", record.outputs.bytes_out)
        reason = str(exc) if isinstance(exc, BatchError) else type(exc).__name__
        record.set_state(State.ERROR, f"deliver: {reason}")
        self.drop_identifiers(record)
        self.ledger.save(record)

    def finalize_empty(self, keys: Iterable[str]) -> None:
        """Remove identified work files of finished batches that will not be delivered
        (EMPTY, HELD, and ERROR: docs/pipeline.md promises identifier lists are deleted when a
        batch is finished, whatever its end)."""
        for key in keys:
            record = self.ledger.get(key)
            if record and record.state in (State.EMPTY, State.ERROR, State.HELD):
                self.drop_identifiers(record)  # a held batch is redone from its source


RELEASE, REJECT = "release", "reject"
# De-identification Method text of a run that looked only at header-flagged images
HEADER_ONLY_METHOD = "pixel text screening: header-flagged images only"


def review_decision(record: BatchRecord) -> str | None:
    """A reviewer's decision on this batch's held images (release or reject), if it was made
    for the content the batch has now (a changed study needs a new review)."""
    review = record.outputs.review or {}
    if review.get("fingerprint") != record.fingerprint:
        return None
    return review.get("decision") if review.get("decision") in (RELEASE, REJECT) else None


def _masked_entry(name: str, outcome: PixelOutcome) -> dict[str, Any]:
    """A delivered image whose pixels were masked: its share masked and the boxes (never
    the text OCR read)."""
    return {
        "file": name,
        "masked_share": round(outcome.masked_share, 5),
        "boxes": [b.as_dict() for b in outcome.boxes],
        "frames": outcome.frames,
        "released": outcome.released,
    }


def _held_entry(
    name: str, risk: str | None, outcome: PixelOutcome, review_dir: Path
) -> dict[str, Any]:
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
