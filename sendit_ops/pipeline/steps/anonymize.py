"""Step 3, anonymize: stage PSEUDONYMIZED -> ANONYMIZED, HELD or EMPTY.

Read (the accepted images, the study's needles, the pseudonym), then per image: clean the
header (profile, then the site's recipe: ``_header``) and, when planned, the pixels
(``_pixels``); a held image is kept back with its thumbnail, the others are written. Then
decide what the batch does with its held images (``held_verdict``, a pure function of
counts, the reviewer's decision and ``pixel_hold``) and write the record.

Threads (issue 22): the headers are cleaned on the step's thread, one image after the other
(the batch's ``LeakScanner`` notes what each wrote: it is never touched from another
thread); the pixel stages run meanwhile in ``image_threads`` threads (``pixel_threads``;
``pipeline.in_order``), and each image is finished (named, written or held, counted, the
progress reported) back on the step's thread in the images' order: names, files and the
record are those of a sequential run, and an error is raised when its image's turn comes,
as it would have been. A pixel stage touches only its own dataset; what it shares is read
only (the settings, the ``identifying`` test: compiled patterns and sets) or per thread
(the OCR engine objects, ``ocr.engine``, over models shared thread-safely).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from sendit_ops.core.atomic_files import write_atomic
from sendit_ops.core.lifecycle import Stage, State
from sendit_ops.core.records import BatchRecord
from sendit_ops.core.settings import Settings
from sendit_ops.dicom.annex_e import CLEAN_PIXEL_DATA_CODE, add_method_codes
from sendit_ops.dicom.annex_e.record import append_method
from sendit_ops.dicom.anonymize import anonymize_dataset
from sendit_ops.dicom.identifiers import ocr_matcher
from sendit_ops.dicom.io import read_full, text
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.dicom.pixels import PixelOutcome, PixelPlan, plan_pixels
from sendit_ops.dicom.pixels import clean as clean_pixels
from sendit_ops.dicom.pixels.stage import FRAME_WORKERS, MAX_THREADS
from sendit_ops.dicom.recipe_variables import recipe_variables
from sendit_ops.packaging.archive import shared_header
from sendit_ops.pipeline.context import StepContext
from sendit_ops.pipeline.in_order import InOrder
from sendit_ops.pipeline.study_scan import AcceptedImage
from sendit_ops.pipeline.work_files import BatchFiles, HeaderSummary

log = logging.getLogger("sendit")

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


# ---- decide ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """What a batch does after the anonymize step. ``state``: HELD or EMPTY with
    ``reason``, or None: it goes on to the package step (``warning``: its held images
    leave it, said on the batch)."""

    state: State | None = None
    reason: str = ""
    warning: str = ""


def held_verdict(held: int, delivered: int, decision: str | None, pixel_hold: str) -> Verdict:
    """The batch's fate from how many images were held back and how many are delivered,
    the reviewer's decision (RELEASE, REJECT or None) and ``pixel_hold`` ("study": a held
    image holds the whole study until a reviewer decides; else the study goes without it)."""
    if held and decision is None and pixel_hold == "study":
        return Verdict(
            State.HELD,
            f"{held} image(s) held for review: their pixels could not be verified "
            "free of burned-in text; release or reject the batch after looking at the "
            "masked thumbnails",
        )
    if not delivered:
        who = "rejected by a reviewer" if decision == REJECT else "held back"
        return Verdict(State.EMPTY, f"every image was {who} (burned-in text)")
    if held:
        why = "rejected by a reviewer" if decision == REJECT else "held for review"
        return Verdict(warning=f"{held} image(s) {why}, delivered without them")
    return Verdict()


# ---- per image ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cleaned:
    """One image after cleaning, in memory: the dataset, and the pixel stage's outcome
    (None: no pixel plan)."""

    ds: Dataset
    outcome: PixelOutcome | None = None

    @property
    def held(self) -> bool:
        """Its pixels could not be verified free of text: it is not delivered."""
        return self.outcome is not None and not self.outcome.cleaned


@dataclass
class Tally:
    """What the images of a batch came to (names taken, held and masked entries, counts,
    the shared header of the delivered images)."""

    names: set[str] = field(default_factory=set)
    held: list[dict[str, Any]] = field(default_factory=list)
    masked: list[dict[str, Any]] = field(default_factory=list)
    cleaned: int = 0
    released: int = 0
    screened: int = 0
    study_date: str = ""
    header: dict[str, Any] | None = None

    def delivered(self, name: str, image: Cleaned) -> None:
        """Count an image that is written (screened, masked, released; its header)."""
        outcome = image.outcome
        if outcome is not None:
            self.screened += 1
            if outcome.boxes:
                self.cleaned += 1
                self.masked.append(_masked_entry(name, outcome))
            self.released += outcome.released
        self.study_date = self.study_date or text(image.ds, "StudyDate")
        values = shared_header([image.ds])
        self.header = (
            values
            if self.header is None
            else {k: v for k, v in self.header.items() if values.get(k) == v}
        )

    @property
    def files(self) -> list[str]:
        """The delivered images' names, sorted."""
        return sorted(self.names - {h["file"] for h in self.held})


# decoded pixel bytes of the images in flight at once (at least one image, however large):
# small images (a CT slice: 0.5 MB) are the case that pays; a cine (a 120-frame 640x480
# grey one: 37 MB decoded, several times that in working copies) is screened alone, as
# before: its frames are already read by the frame threads
IN_FLIGHT_BYTES = 32 << 20


def image_threads(settings: Settings) -> int:
    """Threads that run the pixel stages of a batch's images while its headers are cleaned:
    ``pixel_threads`` (0: the cores, ``stage.FRAME_WORKERS``), at most
    ``stage.MAX_THREADS``; 1: one image after the other on the step's thread."""
    return min(MAX_THREADS, settings.pixel_threads or FRAME_WORKERS)


def _pixel_bytes(ds: Dataset) -> int:
    """What one image's pixels take decoded (frames x rows x columns x samples x bytes):
    its weight in flight. Unreadable values count as one frame of 1 x 1."""

    def number(keyword: str, default: int) -> int:
        try:
            return max(default, int(ds.get(keyword) or default))
        except (TypeError, ValueError):
            return default

    size = number("Rows", 1) * number("Columns", 1) * number("NumberOfFrames", 1)
    return size * number("SamplesPerPixel", 1) * max(1, number("BitsAllocated", 8) // 8)


def pixel_plan(ctx: StepContext, original: Dataset, risk: str | None) -> PixelPlan | None:
    """The pixel stage's plan for one image: the header's (graylist boxes, ultrasound
    regions) when the filters found a risk; else, with ``pixel_screening`` all (the
    default), a plan to screen every frame of any image with pixel data; else none."""
    if risk:
        return plan_pixels(original, ctx.filter_rules.recipe)
    if ctx.settings.pixel_screening == "all" and "PixelData" in original:
        rows, columns = int(original.get("Rows") or 0), int(original.get("Columns") or 0)
        return PixelPlan(None, (), rows, columns)
    return None


def _header(
    ctx: StepContext, image: AcceptedImage, scanner: LeakScanner, variables: dict[str, Any]
) -> tuple[Dataset, PixelPlan | None]:
    """Read one image and clean its header (the part that updates the batch's ``scanner``:
    always on the step's own thread, image after image); the pixel plan, from the original
    header."""
    original = read_full(image.file)
    risk = image.pixels  # the filter step's verdict on this image
    plan = pixel_plan(ctx, original, risk)
    ds = anonymize_dataset(
        original, ctx.recipe, variables, scanner, ctx.profile, clean=scanner.descriptors
    )
    return ds, plan


def _pixels(
    ctx: StepContext,
    ds: Dataset,
    plan: PixelPlan | None,
    identifying: Callable[[str], bool],
    decision: str | None,
) -> Cleaned:
    """The pixel stage of one header-cleaned image when planned, and the method codes
    saying what was done. Touches only ``ds`` (and reads ``identifying``, ``ctx``): it may
    run in an image thread (``pipeline.in_order``) while the next images' headers are cleaned."""
    result = Cleaned(ds)
    if plan is not None:
        outcome = clean_pixels(ds, plan, ctx.settings, identifying, released=decision == RELEASE)
        result = Cleaned(ds, outcome)
        if not outcome.cleaned:
            return result
        if outcome.boxes or plan.needed:  # masked, or read whole and found clean
            add_method_codes(ds, [CLEAN_PIXEL_DATA_CODE])
    if ctx.settings.pixel_screening == "header":
        append_method(ds, HEADER_ONLY_METHOD)
    return result


# ---- the step --------------------------------------------------------------------------------


def anonymize_batch(ctx: StepContext, record: BatchRecord, files: BatchFiles) -> None:
    """Apply the header recipe to every accepted image, clean or hold its pixels, leak-check
    each in memory; then decide the batch's fate (``held_verdict``)."""
    images = files.read_images()
    needles = files.read_study().needles
    scanner = ctx.scanner(needles)
    fuzzy = ocr_matcher(needles)  # OCR-tolerant: the pixel stage's reading of the same values

    def identifying(t: str) -> bool:
        return scanner.hits(t) or fuzzy(t)

    variables = recipe_variables(files.read_pseudonym(), ctx.remap)
    files.drop_copies("anonymized", "review")
    files.anonymized.mkdir(parents=True)
    decision = review_decision(record)
    tally = Tally()

    def finish(index: int, cleaned: Cleaned) -> None:  # in the images' order
        image = images[index]
        if ctx.progress is not None:
            ctx.progress.images_done(index, len(images))
        name = _file_name(image.series, image.instance, tally.names)
        if cleaned.held:
            assert cleaned.outcome is not None
            tally.held.append(_held_entry(name, image.pixels, cleaned.outcome, files.review))
            return
        cleaned.ds.save_as(files.anonymized / name, enforce_file_format=True)
        tally.delivered(name, cleaned)

    # the headers are cleaned here, image after image (the scanner notes what each wrote);
    # the pixel stages run in the image threads meanwhile; each image is finished (written
    # or held, named, counted) here in its order: the outcome of a sequential run
    threads = image_threads(ctx.settings)
    with InOrder(threads, finish, most=2 * threads, budget=IN_FLIGHT_BYTES) as queue:
        for index, image in enumerate(images):
            ds, plan = _header(ctx, image, scanner, variables)
            job = partial(_pixels, ctx, ds, plan, identifying, decision)
            queue.put(index, job, _pixel_bytes(ds) if plan else 0, inline=plan is None)
    files.write_header(
        HeaderSummary(
            study_date=tally.study_date,
            shared=tally.header or {},
            defined_terms=frozenset(scanner.defined_terms),
            written=frozenset(scanner.written_values),
        )
    )
    record.metrics.update(
        images_pixel_cleaned=tally.cleaned,
        images_released=tally.released,
        images_held=len(tally.held),
        images_pixel_screened=tally.screened,
        pixel_screening=ctx.settings.pixel_screening,
        pixel_masked_share_max=max((m["masked_share"] for m in tally.masked), default=0.0),
    )
    record.outputs.held = tally.held
    record.outputs.masked = tally.masked
    record.outputs.files = tally.files
    if tally.held:
        log.info("batch %s: %d image(s) held back for review", record.key, len(tally.held))
    verdict = held_verdict(len(tally.held), len(tally.files), decision, ctx.settings.pixel_hold)
    if verdict.state is not None:
        record.set_state(verdict.state, verdict.reason)
        return
    if verdict.warning:
        record.warnings.append(verdict.warning)
    record.outputs.stage = Stage.ANONYMIZED


# ---- what the record keeps of an image -------------------------------------------------------


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
    """What a reviewer needs about one held image: why, where the masks are, and thumbnails
    of the masked output (never the text OCR read): the frame strip (``strip``: a PNG per
    frame shown, ``<name>_f<frame>.png``, with the boxes outlined on it;
    ``frames_not_shown`` counts the rest), ``thumbnail`` its first (or, without a strip,
    the plain thumbnail of frame 0)."""
    entry: dict[str, Any] = {"file": name, "risk": risk or "", **outcome.as_dict()}
    stem = Path(name).stem
    strip = []
    for thumb in outcome.strip:
        path = review_dir / f"{stem}_f{thumb.frame:04d}.png"
        write_atomic(path, thumb.png, durable=False)
        strip.append(
            {"frame": thumb.frame, "file": path.name, "boxes": [b.as_dict() for b in thumb.boxes]}
        )
    if strip:
        entry["strip"] = strip
        entry["thumbnail"] = strip[0]["file"]
    elif outcome.thumbnail_png:
        path = review_dir / (stem + ".png")
        write_atomic(path, outcome.thumbnail_png, durable=False)
        entry["thumbnail"] = path.name
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
