"""What a de-identified file says about its de-identification (PS3.15 E.1.1, PS3.3 C.12.1).

A receiver decides what it may do with a file from these attributes, so they describe what
was done, adding to what an earlier de-identification wrote instead of replacing it:

- Patient Identity Removed (0012,0062) ``YES``;
- De-identification Method (0012,0063): a value appended to those already there;
- De-identification Method Code Sequence (0012,0064): CID 7050 codes, one item per code, the
  Basic Profile's (113100) and each option's; a later stage adds its own (the pixel stage:
  113101 Clean Pixel Data) through ``add_method_codes``;
- Longitudinal Temporal Information Modified (0028,0303): ``MODIFIED`` when dates were moved,
  ``UNMODIFIED`` when the full dates were retained, ``REMOVED`` when the profile removed or
  emptied them (the enumerated values of PS3.3 C.12.1.1.3.1).
"""

from __future__ import annotations

from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from sendit_ops import __version__
from sendit_ops.dicom.annex_e.profile import (
    CLEAN_OPTIONS,
    FULL_DATES,
    MODIFIED_DATES,
    Done,
    Profile,
)
from sendit_ops.dicom.annex_e.table import BASIC_PROFILE_CODE, OPTION_CODES, load_table
from sendit_ops.dicom.written import of as written_of

CODING_SCHEME = "DCM"
_LO_MAX = 64


def method_text(profile: Profile) -> str:
    """The value appended to De-identification Method (an LO: at most 64 characters)."""
    text = f"sendit {__version__} PS3.15 Annex E Basic Profile ({load_table().edition} table)"
    return text[:_LO_MAX]


def add_method_codes(ds: Dataset, codes: Iterable[tuple[str, str]]) -> None:
    """Add CID 7050 codes (value, meaning) to De-identification Method Code Sequence, keeping
    the items already there and never adding a code twice. The items written are noted in
    the dataset's ``written.Written`` record, if it has one (the leak check then knows the
    code meanings are sendit's own text, not the input's)."""
    written = written_of(ds)
    if "DeidentificationMethodCodeSequence" not in ds:
        ds.DeidentificationMethodCodeSequence = Sequence()
    items = ds.DeidentificationMethodCodeSequence
    present = {
        (str(i.get("CodingSchemeDesignator", "")), str(i.get("CodeValue", ""))) for i in items
    }
    for value, meaning in codes:
        if (CODING_SCHEME, value) in present:
            continue
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = CODING_SCHEME
        item.CodeMeaning = meaning
        items.append(item)
        if written is not None:
            for keyword in ("CodeValue", "CodingSchemeDesignator", "CodeMeaning"):
                written.dataset_element(item, keyword)
        present.add((CODING_SCHEME, value))


def append_method(ds: Dataset, text: str) -> None:
    """Append ``text`` to De-identification Method (values already there are kept)."""
    current = ds.get("DeidentificationMethod")
    if current in (None, ""):
        values: list[str] = []
    elif isinstance(current, MultiValue | list | tuple):
        values = [str(v) for v in current]
    else:
        values = [str(current)]
    if text not in values:
        values.append(text)
    ds.DeidentificationMethod = values if len(values) > 1 else values[0]
    written = written_of(ds)
    if written is not None:  # only sendit's own value: earlier ones came with the input
        written.dataset_element(ds, "DeidentificationMethod", [text])


def temporal_state(profile: Profile, jitter_days: int) -> str:
    """Longitudinal Temporal Information Modified for what the profile did."""
    if FULL_DATES in profile.options:
        return "UNMODIFIED"
    if MODIFIED_DATES in profile.options:
        return "MODIFIED" if jitter_days else "UNMODIFIED"
    return "REMOVED"


def record(ds: Dataset, profile: Profile, done: Done, jitter_days: int) -> None:
    """Write what was done into ``ds`` (after the profile and the site recipe ran).

    A clean option whose cleaning could not be done (no cleaner given) is not claimed: the
    profile then did the Basic Profile action instead.
    """
    ds.PatientIdentityRemoved = "YES"
    written = written_of(ds)
    if written is not None:
        written.dataset_element(ds, "PatientIdentityRemoved")
    append_method(ds, method_text(profile))
    codes = [BASIC_PROFILE_CODE]
    for option in profile.option_names:
        if option in CLEAN_OPTIONS and not done.clean_available:
            continue
        codes.append(OPTION_CODES[option])
    add_method_codes(ds, codes)
    ds.LongitudinalTemporalInformationModified = temporal_state(profile, jitter_days)
    if written is not None:
        written.dataset_element(ds, "LongitudinalTemporalInformationModified")
