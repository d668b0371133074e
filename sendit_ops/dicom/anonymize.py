"""Header de-identification: DICOM PS3.15 Annex E, then the site's deid recipe, per file.

Order for every image (``anonymize_dataset``):

1. private elements removed (unless Retain Safe Private keeps the safe ones), preamble zeroed;
2. the Annex E profile (``sendit_ops.dicom.annex_e``: Table E.1-1 with the options of
   ``settings.deid_options``), compiled once per process and option set;
3. the user's deid recipe on top (site rules: the shipped one puts the pseudonyms in
   PatientID/PatientName/AccessionNumber/StudyID), parsed once per task;
4. the record of what was done (PatientIdentityRemoved, De-identification Method and its
   code sequence, Longitudinal Temporal Information Modified) and the file meta (sendit's:
   the source's AE title, addresses and private information are not copied);
5. the leak scan in memory: anything original left stops the image (LeakError). What the
   pipeline wrote itself (the record, dummies, placeholders) is noted as it is written
   (``written.Written``) and is not taken for input.

Clean Descriptors: ``clean=scanner.descriptors`` cleans each kept text attribute of the
study's identifiers and of any other identifying information (``descriptors``,
``free_text``), dates shifted like the header's.

The per-batch values (coded ids, jitter) and a keyed UID remapper are handed to deid as
recipe variables (``var:``/``func:``), and to the profile as its ``Context``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from deid.config import DeidRecipe
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from sendit_ops import __version__
from sendit_ops.core.errors import LeakError
from sendit_ops.core.settings import DEFAULT_DEID_OPTIONS
from sendit_ops.dicom import deid_patches
from sendit_ops.dicom.annex_e import Context, Profile, compile_profile, record
from sendit_ops.dicom.annex_e.profile import FULL_DATES, MODIFIED_DATES, Cleaner
from sendit_ops.dicom.descriptors import StudyDescriptors
from sendit_ops.dicom.identifiers import original_dates
from sendit_ops.dicom.io import as_file_dataset, remove_private_tags
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.dicom.recipe_engine import CompiledRecipe, apply_recipe
from sendit_ops.dicom.recipe_variables import recipe_variables, uid_remapper  # noqa: F401 - re-exported
from sendit_ops.dicom.written import Written, attach

SHIPPED_RECIPE = Path(__file__).parent / "recipes" / "deid.sendit"
# file meta elements kept: version, SOP class and instance, transfer syntax, implementation
_FILE_META_KEPT = frozenset(
    {0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013}
)

deid_patches.install()  # before any deid call: deid's logger prints header values


def recipe_path(user_recipe: str | None) -> Path:
    """The recipe in use: the user's, else the one shipped with sendit."""
    return Path(user_recipe) if user_recipe else SHIPPED_RECIPE


def load_recipe(user_recipe: str | None) -> CompiledRecipe:
    """Parse the header recipe once (deid's default header actions are not mixed in) and
    compile its field expressions."""
    return CompiledRecipe(DeidRecipe(str(recipe_path(user_recipe)), base=False))


def recipe_checksum(user_recipe: str | None) -> str:
    """sha256 of the recipe text, recorded with every delivered archive."""
    return hashlib.sha256(recipe_path(user_recipe).read_bytes()).hexdigest()


def load_profile(
    options: tuple[str, ...] | list[str] | None = None,
    descriptors: tuple[str, ...] | list[str] | None = None,
) -> Profile:
    """The Annex E profile for ``settings.deid_options`` (the defaults when None) and
    ``settings.clean_descriptor_attributes`` (None: all the option cleans); compiled once
    per process and option set."""
    return compile_profile(DEFAULT_DEID_OPTIONS if options is None else options, descriptors)


def anonymize_dataset(
    ds: Dataset,
    recipe: CompiledRecipe,
    variables: dict[str, Any],
    scanner: LeakScanner,
    profile: Profile | None = None,
    clean: Cleaner | StudyDescriptors | None = None,
    *,
    recipe_only: bool = False,
) -> Dataset:
    """De-identify one dataset in place and return it; raise LeakError if anything survives.

    ``profile``: the compiled Annex E profile (``load_profile(settings.deid_options)``; the
    default options when None). ``clean``: the study's descriptor cleaning
    (``scanner.descriptors``: its identifiers and the free-text detector, dates shifted by
    this file's jitter), or any text -> text cleaner; without one, what the options would
    clean is removed as the Basic Profile says. ``recipe_only`` runs the recipe alone (no
    profile, no record): only for comparing sendit's recipe engine with deid's
    (tests/test_equivalence.py).
    """
    ds = as_file_dataset(ds)
    before = original_dates(ds)  # each date element is checked against its own original
    profile = load_profile() if profile is None else profile
    if recipe_only:
        remove_private_tags(ds)  # otherwise the profile's walk removes them, undecoded
    ds.preamble = b"\0" * 128
    jitter = int(variables.get("jitter") or 0)
    written = Written(scanner.written_values)
    attach(ds, written)  # later stages (the pixel stage's method code) note theirs here too
    if isinstance(clean, StudyDescriptors):
        dates = (
            "shift"
            if MODIFIED_DATES in profile.options
            else "keep"
            if FULL_DATES in profile.options
            else "remove"
        )
        clean = clean.cleaner(dates=dates, jitter_days=jitter, written=written)
    done = None
    if not recipe_only:
        context = Context(
            remap_uid=variables["remap"], jitter_days=jitter, clean=clean, written=written
        )
        done = profile.apply(ds, context)
    try:
        ds = apply_recipe(ds, recipe, variables)
    finally:
        deid_patches.release_caches()  # only a KEEP action still goes through deid's cache
    if done is not None:
        record(ds, profile, done, jitter)
    if getattr(ds, "file_meta", None) is not None and not recipe_only:
        # the meta is sendit's (PS3.10: written by the application that writes the file):
        # the source's AE titles, addresses and private information go
        for tag in [t for t in ds.file_meta._dict if t not in _FILE_META_KEPT]:
            del ds.file_meta[tag]
    if getattr(ds, "file_meta", None) is not None and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta.ImplementationVersionName = "SENDIT_" + __version__.replace(".", "")[:9]
        written.dataset_element(ds.file_meta, "ImplementationVersionName")
    leaks = scanner.scan_dataset(ds, original_dates=before, written=written)
    if leaks:
        raise LeakError(
            "original identifier left after de-identification in: " + ", ".join(leaks[:5])
        )
    return ds
