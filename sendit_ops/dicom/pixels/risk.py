"""Which images may carry burned-in text, judged from the header.

A header can say an image is risky, never that it is safe: ultrasound, screen captures and
camera images carry text whatever their BurnedInAnnotation says (3 of 6 real ultrasound images
with a name, an id or a date on screen were missed by deid's graylist, issue 14). A risk
found here makes the pixel stage read an image whole by OCR; with ``pixel_screening`` all
(the default) every other image is still screened frame by frame (issue 22: a CT localizer
with the patient's name burned in had no flag). With ``header`` only images with a risk are
looked at.
Reasons name the rule and the tag, never a header value.
"""

from __future__ import annotations

import copy
from typing import Any, TypedDict

from deid.config import DeidRecipe
from deid.dicom.pixels.detect import has_burned_pixels
from pydicom.dataset import Dataset

from sendit_ops.dicom import deid_patches
from sendit_ops.dicom.io import as_file_dataset, text

_SOP = "1.2.840.10008.5.1.4.1.1."
# SOP classes whose images are screen captures, photographs or ultrasound by definition
TEXT_SOP_CLASSES = {
    _SOP + "6.1": "US",
    _SOP + "6": "US",  # retired
    _SOP + "6.2": "US",  # enhanced US volume
    _SOP + "3.1": "US",  # multi-frame
    _SOP + "3": "US",  # retired multi-frame
    _SOP + "7": "SC",
    _SOP + "7.1": "SC",
    _SOP + "7.2": "SC",
    _SOP + "7.3": "SC",
    _SOP + "7.4": "SC",
    _SOP + "77.1.1": "VL endoscopic (ES)",
    _SOP + "77.1.1.1": "VL endoscopic video (ES)",
    _SOP + "77.1.2": "VL microscopic",
    _SOP + "77.1.2.1": "VL microscopic video",
    _SOP + "77.1.3": "VL slide microscopic",
    _SOP + "77.1.4": "VL photographic (XC)",
    _SOP + "77.1.4.1": "VL photographic video (XC)",
    _SOP + "77.1.5.1": "ophthalmic photography (OP)",
    _SOP + "77.1.5.2": "ophthalmic photography (OP)",
    _SOP + "77.1.5.4": "ophthalmic tomography (OPT)",
    _SOP + "77.1.7": "dermoscopic photography (DMS)",
    _SOP + "14.1": "intravascular OCT",
}
# modalities of camera, screen and ultrasound images (OT: "other", mostly screen captures)
TEXT_MODALITIES = frozenset(
    {"US", "IVUS", "SC", "XC", "ES", "VL", "GM", "SM", "OP", "OPT", "DMS", "DOC", "OT", "IVOCT"}
)

deid_patches.install()  # before any deid call: deid's logger prints header values
# ImageType values of derived pictures: screen saves, secondary captures, reformats with labels
TEXT_IMAGE_TYPES = ("SECONDARY", "DERIVED", "SCREEN", "SAVE")


# deid filter groups whose coordinates are NOT areas to clean
NOT_CLEANING = frozenset({"whitelist", "blacklist"})


def _private_recipe(recipe: DeidRecipe) -> DeidRecipe:
    """A shallow copy of ``recipe`` with its own filter section (deid writes into it)."""
    clone = copy.copy(recipe)
    clone.deid = dict(recipe.deid)
    if "filter" in recipe.deid:
        clone.deid["filter"] = copy.deepcopy(recipe.deid["filter"])
    return clone


class DeidFilterResult(TypedDict):
    """One flagged result of deid's ``has_burned_pixels`` (deid ships no types)."""

    reason: str
    group: str  # the filter group: whitelist, blacklist, graylist, ...
    # each a 2-item list: [keep (0/1), "x0,y0,x1,y1" | "all" | a list of those]
    coordinates: list[list[Any]]


def graylist_results(ds: Dataset, recipe: DeidRecipe) -> list[DeidFilterResult]:
    """deid's flagged filter results for this header, judged on a private recipe copy."""
    result = has_burned_pixels(as_file_dataset(ds), force=True, deid=_private_recipe(recipe))
    return list(result.get("results") or [])


def deid_reason(results: list[DeidFilterResult]) -> str | None:
    """The reason deid's filter results give for pixel cleaning: a match in a group other
    than whitelist/blacklist (the graylist), unless the whitelist matched too."""
    groups = [str(r.get("group")) for r in results]
    if "whitelist" in groups:
        return None
    cleaning = [g for g in groups if g not in NOT_CLEANING]
    return f"deid {cleaning[0]} match: needs pixel cleaning" if cleaning else None


def text_risk(ds: Dataset, recipe: DeidRecipe | None = None) -> str | None:
    """Why this image may carry burned-in text (a PHI-free reason naming the rule), or None.

    Order matters only for the wording: an explicit BurnedInAnnotation YES is named first,
    as the filters always did. With ``recipe`` (the filter recipe) a deid graylist match is
    a reason too; the filters judge that themselves, memoized per series.
    """
    burned = text(ds, "BurnedInAnnotation").strip().upper()
    if burned in {"YES", "Y"}:
        return "BurnedInAnnotation is YES (burned-in text)"
    sop = text(ds, "SOPClassUID")
    if sop in TEXT_SOP_CLASSES:
        return f"SOP class {TEXT_SOP_CLASSES[sop]} may carry burned-in text"
    modality = text(ds, "Modality").strip().upper()
    if modality in TEXT_MODALITIES:
        return f"modality {modality} may carry burned-in text"
    if burned and burned not in {"NO", "N"}:
        return "BurnedInAnnotation is not NO"
    image_type = {
        word
        for value in text(ds, "ImageType").upper().split("\\")
        for word in value.replace("_", " ").split()
    }
    flagged = [v for v in TEXT_IMAGE_TYPES if v in image_type]
    if flagged:
        return f"ImageType {'/'.join(flagged)} may carry burned-in text"
    return deid_reason(graylist_results(ds, recipe)) if recipe is not None else None
