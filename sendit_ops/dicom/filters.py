"""Image filters: which images of a batch may be de-identified and shipped.

Rules, in order (the first that skips decides):
1. not readable as DICOM -> skipped (recorded on the batch);
2. header ``BurnedInAnnotation`` = YES -> needs the pixel stage;
3. modality not in the allow list (when one is set) -> skipped;
4. ``ImageType`` lacks a required value (when set, e.g. AXIAL) -> skipped;
5. deid's filter recipes (deid's default, plus ``study_deid``): a whitelist match keeps the
   image ("accept no matter what", as in sendit); else a blacklist match rejects it; else a
   greylist match needs the pixel stage; no match keeps it;
6. an image that may carry burned-in text by its header (ultrasound, secondary capture, camera
   and screen images, DERIVED/SECONDARY ImageType: ``sendit_ops.dicom.pixels.text_risk``) needs the
   pixel stage, whatever deid's whitelist says: a header flag never proves pixels text-free.
"Needs the pixel stage" keeps the image, marked (``Verdict.pixels``: the stage reads it whole),
when ``pixel_cleaning`` is ``ocr`` or ``recipe``; when it is ``off`` every such image is
skipped, as before pixel cleaning existed. An image without such a verdict still goes
through the pixel stage's screen when ``pixel_screening`` is ``all`` (the default; issue 22):
a header can say an image is risky, never that it is clean. Reasons name rules and tags,
never header values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import deid
from deid.config import DeidRecipe
from deid.dicom.pixels.detect import has_burned_pixels
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset

from sendit_ops.core.errors import ConfigError
from sendit_ops.dicom import deid_patches
from sendit_ops.dicom.io import as_file_dataset, text
from sendit_ops.dicom.pixels.risk import text_risk

deid_patches.install()  # before any deid call: deid's logger prints header values

DEID_DATA = Path(deid.__file__).parent / "data"


def resolve_study_deid(study_deid: str | None) -> list[str]:
    """Turn sendit's STUDY_DEID (a deid recipe name like ``dicom.xray.chest`` or a path) into
    recipe paths; unknown names are a ConfigError (deid itself would exit the process)."""
    paths = [str(DEID_DATA / "deid.dicom")]
    if not study_deid:
        return paths
    candidate = Path(study_deid)
    if candidate.is_file():
        paths.append(str(candidate))
        return paths
    shipped = DEID_DATA / f"deid.{study_deid.removeprefix('deid.')}"
    if not shipped.is_file():
        names = sorted(p.name.removeprefix("deid.") for p in DEID_DATA.glob("deid.*"))
        raise ConfigError(
            f"'study_deid' {study_deid!r} is neither a file nor a deid recipe name "
            f"(shipped with deid: {', '.join(names)})"
        )
    paths.append(str(shipped))
    return paths


def load_filter_recipe(study_deid: str | None) -> DeidRecipe:
    """Parse the filter recipes once (deid's default plus the study one)."""
    paths = resolve_study_deid(study_deid)
    return DeidRecipe(paths if len(paths) > 1 else paths[0], base=False)


# (present, str(value)) of each field the filter recipes name: what deid's rules can see
Signature = tuple[tuple[bool, str], ...]


@dataclass(frozen=True)
class FilterRules:
    """The configured image filters, parsed once per task.

    deid's decision depends only on the header fields its filter rules name, so it is
    memoized per distinct combination of those values: images of one series (usually all of
    a batch) are judged once, not once per image.
    """

    recipe: DeidRecipe
    modality_allowlist: tuple[str, ...] = ()
    image_type_required: tuple[str, ...] = ()
    # Settings.pixel_cleaning; "off" (the safe default until a caller runs the pixel stage)
    # refuses every image that may carry burned-in text
    pixel_cleaning: str = "off"
    _memo: dict[Signature, str | None] = field(default_factory=dict, compare=False, repr=False)

    @cached_property
    def fields(self) -> tuple[str, ...]:
        """Every header field named by the filter recipes."""
        names = {
            name
            for items in (self.recipe.get_filters() or {}).values()
            for item in items
            for group in item.get("filters") or []
            for name in group.get("field") or []
        }
        return tuple(sorted(names))

    @cached_property
    def _keys(self) -> tuple[int | str | None, ...]:
        """Each named field as pydicom looks it up; None for a name pydicom does not know
        (deid's rules use ``Dataset.get``, which never finds those: e.g. the repeater
        keyword ``OverlayDescription``, or the recipe's typo ``Manfacturer``)."""
        keys: list[int | str | None] = []
        for name in self.fields:
            if "0x" in name:
                keys.append(int(name, 0))
            else:
                keys.append(name if tag_for_keyword(name) is not None else None)
        return tuple(keys)

    def signature(self, ds: Dataset) -> Signature:
        """The values of the named fields (presence included): what deid's rules can see."""
        out: list[tuple[bool, str]] = []
        for key in self._keys:
            present, value = False, None
            if key is not None:
                try:
                    if key in ds:
                        present, value = True, ds[key].value
                except (KeyError, ValueError, TypeError):
                    present, value = False, None
            out.append((present, str(value)))
        return tuple(out)


def _deid_decision(ds: Dataset, rules: FilterRules) -> str | None:
    key = rules.signature(ds)
    if key not in rules._memo:
        rules._memo[key] = _deid_rules(ds, rules.recipe)
    return rules._memo[key]


def _deid_rules(ds: Dataset, recipe: DeidRecipe) -> str | None:
    result = has_burned_pixels(as_file_dataset(ds), force=True, deid=recipe)
    if not result["flagged"]:
        return None
    groups = {r["group"]: " ".join(r["reason"].split()) for r in result["results"]}
    if "whitelist" in groups:
        return None
    if "blacklist" in groups:
        return f"deid blacklist ({groups['blacklist']})"
    name = "graylist" if "graylist" in groups else next(iter(groups))
    return f"deid {name}: needs pixel cleaning ({groups[name]})"


@dataclass(frozen=True)
class Verdict:
    """The filters' decision on one image: ``skip`` (why it must not be shipped) or, for a
    kept image, ``pixels`` (why it must go through the pixel stage; None: it need not)."""

    skip: str | None = None
    pixels: str | None = None


def judge(ds: Dataset, rules: FilterRules) -> Verdict:
    """Rules 2-6 above for one header."""
    pixels = None
    if text(ds, "BurnedInAnnotation").upper() in {"YES", "Y"}:
        pixels = "BurnedInAnnotation is YES (burned-in text)"
    modality = text(ds, "Modality").upper()
    if rules.modality_allowlist and modality not in rules.modality_allowlist:
        return Verdict(skip=f"modality {modality or 'missing'} not in the allow list")
    if rules.image_type_required:
        image_type = {v.strip().upper() for v in text(ds, "ImageType").split("\\")}
        missing = [v for v in rules.image_type_required if v not in image_type]
        if missing:
            return Verdict(skip=f"ImageType lacks {'/'.join(missing)}")
    deid = _deid_decision(ds, rules)
    if deid and deid.startswith("deid blacklist"):
        return Verdict(skip=deid)
    pixels = pixels or deid or text_risk(ds)
    if pixels and rules.pixel_cleaning == "off":
        if pixels.startswith(("deid", "BurnedInAnnotation")):
            return Verdict(skip=pixels)
        return Verdict(skip=f"{pixels} (pixel cleaning is off)")
    return Verdict(pixels=pixels)


def skip_reason(ds: Dataset, rules: FilterRules) -> str | None:
    """Why an image must not be shipped, or None to keep it (see :func:`judge`)."""
    return judge(ds, rules).skip
