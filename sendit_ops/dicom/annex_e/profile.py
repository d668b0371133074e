"""The Basic Application Level Confidentiality Profile and its options, applied to a dataset.

``compile_profile(options)`` turns Table E.1-1 plus the chosen options into one action per tag
(once per process and option set); ``Profile.apply`` walks a dataset once, at every depth of
every sequence, and does each element's action. Elements it keeps are not decoded (pydicom
leaves them raw), so the cost per image is a dict lookup per element plus the work on the
elements that change.

How the table's actions are done, and why:

- ``X`` remove; ``Z`` keep with an empty value (a sequence: no items); ``K`` keep.
- ``D`` a dummy value of the element's VR; a sequence marked ``D`` (Content Sequence, Graphic
  Annotation Sequence, ...) keeps its items, de-identified by the same table, and the free
  text the table does not list inside it (Text Value, labels) is replaced too: a dummy
  sequence must not carry what its original said.
- ``U`` the keyed, consistent UID remapper (``recipe_variables.uid_remapper``).
- Compound actions (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) depend on the element's
  type in the IOD. A removal is only allowed for Type 3, which sendit cannot know for every
  nesting, so the action that is valid for every type is done: ``X/Z`` -> ``Z`` (a sequence:
  kept, walked like a ``D`` sequence, as an empty Type 3 sequence is invalid); ``X/D``,
  ``Z/D``, ``X/Z/D`` -> ``D`` when the element has a value (a Type 1 element stays valid), else
  ``Z``; ``X/Z/U*`` (reference sequences) -> kept, their UIDs replaced by their own rows.
  Nothing identifying survives either way; dciodvfy checks the result
  (tests/test_conformance_dciodvfy.py).
- ``C`` (an option's clean) calls the caller's ``clean(text) -> text`` on every text value
  (a person name, PN, is a name whole: emptied); without a cleaner the option cannot be
  honoured and the Basic Profile action is done. Clean Descriptors keeps only the attributes
  of ``settings.clean_descriptor_attributes`` (``compile_profile(options, descriptors)``);
  the others it would clean get the Basic Profile action. For
  a sequence, ``C`` keeps its items, de-identified by the table, and cleans the free text the
  table does not list inside it. A binary value has no text to clean and is removed.
- Retain Longitudinal Temporal Information with Modified Dates: DA and DT values are moved by
  the patient's jitter (whole days; a DT keeps its time and offset). TM values are kept: a
  shift by whole days leaves the time of day as it was, so a time is consistent with its
  moved date, and intervals between acquisitions (needed for perfusion, PET decay, ...) stay
  exact. A date that cannot be read as YYYYMMDD is emptied, never kept. The option's other
  rows (Timezone Offset From UTC, two OB values) get their Basic Profile action: a shift by
  days does not apply to them.
- Repeating groups: curves (50xx) are removed as whole groups; an overlay (60xx) with data
  or comments is removed as a whole group (an overlay without its data is invalid), under
  every option. Overlay bitmaps are never kept: sendit cannot read text in a bitmap at this
  stage, so Clean Graphics cleans the graphics that are text (Graphic Annotation Sequence).
- Private elements: removed; with Retain Safe Private only those of ``SAFE_PRIVATE`` (numeric
  values of known meaning, from PS3.15 Table E.3.10-1) and their creators are kept.
- Elements not in the table are kept (the Basic Profile's list is exhaustive for standard
  attributes), except UIDs outside the DICOM root (a sendit rule, stricter than the table:
  the leak check looks for original UIDs), which are replaced unless UIDs are retained.
- ``EMPTIED_NOT_REMOVED``: the few ``X`` rows that an IOD requires as Type 2C are emptied.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from typing import Any

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

from sendit_ops.core.errors import ConfigError
from sendit_ops.dicom.annex_e.table import OPTION_CODES, Entry, Table, load_table
from sendit_ops.dicom.written import Written

# what is done to an element (compiled from the table and the options)
REMOVE, EMPTY, DUMMY, UID, KEEP, CLEAN, SHIFT = "X", "Z", "D", "U", "K", "C", "shift"
DUMMY_OR_EMPTY = "D|Z"  # D when the element has a value, else Z
KEEP_ITEMS = "keep-items"  # a reference sequence (X/Z/U*): kept, walked
DUMMY_ITEMS = "dummy-items"  # a sequence marked D: walked, unlisted free text replaced
CLEAN_ITEMS = "clean-items"  # a sequence cleaned by an option: walked, unlisted text cleaned
REMOVE_GROUP = "remove-group"

FULL_DATES = "retain_longitudinal_full_dates"
MODIFIED_DATES = "retain_longitudinal_modified_dates"
CLEAN_OPTIONS = ("clean_descriptors", "clean_structured_content", "clean_graphics")

# free text that a dummy or cleaned sequence must not carry when the table does not list it
FREE_TEXT_VRS = frozenset({"LO", "LT", "ST", "UT", "SH", "PN", "UC"})
# ...except the parts of a code, which are vocabulary, not content
CODE_KEYWORD_TAGS = frozenset(
    {
        0x00080100,  # CodeValue
        0x00080102,  # CodingSchemeDesignator
        0x00080103,  # CodingSchemeVersion
        0x00080104,  # CodeMeaning
        0x00080105,  # MappingResource
        0x00080119,  # LongCodeValue
        0x00080120,  # URNCodeValue
        0x0008010F,  # ContextIdentifier
        0x00080117,  # ContextUID
        0x00400DB0,  # TemplateIdentifier
    }
)
STANDARD_UID_ROOT = "1.2.840.10008."

# X in Table E.1-1, but Type 2C in an IOD (Patient Module of veterinary patients, PS3.3
# C.7.1.1): removing them makes the file invalid (dciodvfy), emptying them does not
# identify anyone either, so they are emptied (Z), as the table does for Type 2 elsewhere.
EMPTIED_NOT_REMOVED = frozenset(
    {
        0x00102297,  # ResponsiblePerson
        0x00102299,  # ResponsibleOrganization
    }
)

# PS3.15 Table E.3.10-1 examples of safe private attributes: numeric diffusion parameters
# with a documented meaning, no text. (private creator, group, element byte) -> kept.
SAFE_PRIVATE: frozenset[tuple[str, int, int]] = frozenset(
    {
        ("SIEMENS MR HEADER", 0x0019, 0x0C),  # B_value
        ("SIEMENS MR HEADER", 0x0019, 0x0D),  # DiffusionDirectionality
        ("SIEMENS MR HEADER", 0x0019, 0x0E),  # DiffusionGradientDirection
        ("SIEMENS MR HEADER", 0x0019, 0x27),  # B_matrix
        ("GEMS_PARM_01", 0x0043, 0x39),  # slop_int_6..9 (b-value)
    }
)

_DUMMY_TEXT = "ANONYMIZED"
_DUMMY: dict[str, str | int | bytes] = {
    "AE": _DUMMY_TEXT,
    "AS": "000D",
    "CS": _DUMMY_TEXT,
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "DS": "0",
    "IS": "0",
    "LO": _DUMMY_TEXT,
    "LT": _DUMMY_TEXT,
    "PN": _DUMMY_TEXT,
    "SH": _DUMMY_TEXT,
    "ST": _DUMMY_TEXT,
    "UC": _DUMMY_TEXT,
    "UT": _DUMMY_TEXT,
    "UR": "urn:anonymized",
    **{vr: 0 for vr in ("US", "SS", "UL", "SL", "FL", "FD", "SV", "UV", "AT")},
    **{vr: b"\0\0" for vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN")},
}

Cleaner = Callable[[str], str]


@cache
def _vr(tag: int) -> str:
    """The dictionary VR of a standard tag ('UN' when unknown; the first of 'US or SS')."""
    try:
        return dictionary_VR(tag).split(" ")[0]
    except KeyError:
        return "UN"


def _resolve(entry: Entry, options: frozenset[str], vr: str, can_clean: bool) -> str:
    """The one action for a table row under the chosen options (see the module docstring);
    without a cleaner an option's C cannot be done and the Basic Profile action is."""
    chosen = {o: a for o, a in entry.options.items() if o in options}
    if not can_clean:
        chosen = {o: a for o, a in chosen.items() if a == "K" or o == MODIFIED_DATES}
    if "K" in chosen.values():
        return KEEP
    if chosen.get(MODIFIED_DATES) == "C":
        if vr in ("DA", "DT"):
            return SHIFT
        if vr == "TM":
            return KEEP
    if any(a == "C" for o, a in chosen.items() if o != MODIFIED_DATES):
        return CLEAN_ITEMS if vr == "SQ" else CLEAN
    return _basic(entry.basic, vr)


def _basic(action: str, vr: str) -> str:
    """A Basic Profile action (compound ones resolved to one valid for any type)."""
    if action == "X":
        return REMOVE
    if action == "X/Z" and vr == "SQ":  # empty is invalid for Type 3, absent for Type 2
        return DUMMY_ITEMS
    if action in ("Z", "X/Z"):
        return EMPTY
    if action == "U":
        return UID
    if action == "X/Z/U*":
        return KEEP_ITEMS if vr == "SQ" else UID
    if vr == "SQ":  # D, X/D, Z/D, X/Z/D on a sequence
        return DUMMY_ITEMS
    return DUMMY if action == "D" else DUMMY_OR_EMPTY


@dataclass(frozen=True)
class Context:
    """What one study's files need: the UID remapper, the date shift and the cleaner."""

    remap_uid: Callable[[str], str]
    jitter_days: int = 0
    clean: Cleaner | None = None
    written: Written | None = None  # what the profile writes itself (dummies) is noted here


@dataclass
class Done:
    """What the profile did to one file (for the record and the tests)."""

    actions: list[tuple[str, int, str]] = field(default_factory=list)
    cleaned: bool = False
    shifted: bool = False
    clean_available: bool = False  # a cleaner was given: the clean options were honoured


@dataclass(frozen=True)
class Profile:
    """Table E.1-1 compiled for a set of options (build with ``compile_profile``)."""

    options: frozenset[str]
    rules: dict[int, str]  # tag -> action, with a cleaner
    rules_without_cleaner: dict[int, str]
    overlay_actions: dict[int, str]  # element of a 60xx group -> action
    curve_action: str
    private_action: str
    # keywords kept under Clean Descriptors (None: every attribute the option cleans)
    descriptors: frozenset[str] | None = None

    @property
    def option_names(self) -> list[str]:
        """The options in use, in the order of their CID 7050 codes."""
        return [o for o in OPTION_CODES if o in self.options]

    def describe(self) -> dict[str, Any]:
        """What to store next to an archive's recipe checksum: the table's edition and the
        options, so a delivery says which de-identification produced it."""
        described: dict[str, Any] = {
            "annex_e_table": load_table().edition,
            "deid_options": self.option_names,
        }
        if self.descriptors is not None and "clean_descriptors" in self.options:
            described["clean_descriptor_attributes"] = sorted(self.descriptors)
        return described

    @property
    def kept_needles(self) -> frozenset[str]:
        """The kinds of original values (fields of ``identifiers.Needles``) that an option
        keeps on purpose, so the leak check must not look for them: full dates, UIDs,
        institution names."""
        kinds = {
            FULL_DATES: "dates",
            "retain_uids": "uids",
            "retain_institution_identity": "institutions",
        }
        return frozenset(kind for option, kind in kinds.items() if option in self.options)

    def apply(self, ds: Dataset, context: Context, log: bool = False) -> Done:
        """De-identify ``ds`` in place (every depth); return what was done."""
        done = Done(clean_available=context.clean is not None)
        rules = self.rules if context.clean is not None else self.rules_without_cleaner
        _Walker(self, rules, context, done, log).walk(ds, "", None)
        return done


class _Walker:
    """One pass over a dataset and its sequences."""

    def __init__(
        self, profile: Profile, rules: dict[int, str], context: Context, done: Done, log: bool
    ) -> None:
        self.profile = profile
        self.rules = rules
        self.context = context
        self.done = done
        self.log = log
        self.keep_uids = "retain_uids" in profile.options

    def note(self, path: str, tag: int, action: str) -> None:
        if self.log:
            self.done.actions.append((path, tag, action))

    def walk(self, ds: Dataset, path: str, mode: str | None) -> None:
        """``mode``: None, or DUMMY_ITEMS/CLEAN_ITEMS inside such a sequence."""
        elements = ds._dict
        for tag in list(elements):
            group = tag >> 16
            if group & 1:
                continue  # private: handled below, once per dataset
            action = self.rules.get(tag)
            if action is None:
                if 0x5000 <= group <= 0x60FF:  # curves 50xx, overlays 60xx
                    action = self.repeating(tag)
                if action is None:
                    self.unlisted(ds, tag, path, mode)
                    continue
            self.act(ds, tag, action, path)
        self.private(ds, path)

    def repeating(self, tag: int) -> str | None:
        group, element = tag >> 16, tag & 0xFFFF
        if group & 0xFF01 == 0x5000:
            return self.profile.curve_action
        if group & 0xFF01 == 0x6000:
            return self.profile.overlay_actions.get(element)
        return None

    def vr(self, ds: Dataset, tag: BaseTag) -> str:
        raw_vr = ds._dict[tag].VR
        return raw_vr if raw_vr and raw_vr != "UN" else _vr(tag)

    def unlisted(self, ds: Dataset, tag: BaseTag, path: str, mode: str | None) -> None:
        vr = self.vr(ds, tag)
        if vr == "SQ":
            self.items(ds, tag, path, mode)
        elif vr == "UI":
            if not self.keep_uids:
                self.uids(ds, tag, path, only_outside_root=True)
        elif mode is not None and vr in FREE_TEXT_VRS and tag not in CODE_KEYWORD_TAGS:
            if mode == CLEAN_ITEMS and self.context.clean is not None:
                self.clean(ds, tag, path)
            else:
                self.dummy(ds, tag, path, vr)

    def act(self, ds: Dataset, tag: BaseTag, action: str, path: str) -> None:
        if action == KEEP:
            self.note(path, tag, KEEP)
            if self.vr(ds, tag) == "SQ":
                self.items(ds, tag, path, None)
            return
        if action == REMOVE:
            del ds._dict[tag]
            self.note(path, tag, REMOVE)
            return
        if action == REMOVE_GROUP:
            group = tag >> 16
            for other in [t for t in ds._dict if t >> 16 == group]:
                del ds._dict[other]
            self.note(path, tag, REMOVE)
            return
        vr = self.vr(ds, tag)
        if action == DUMMY_OR_EMPTY:
            action = DUMMY if _has_value(ds, tag) else EMPTY
        if action == EMPTY:
            ds._dict[tag] = DataElement(tag, vr, Sequence() if vr == "SQ" else None)
            self.note(path, tag, EMPTY)
        elif action == DUMMY:
            self.dummy(ds, tag, path, vr)
        elif action == UID:
            self.uids(ds, tag, path, only_outside_root=False)
        elif action == SHIFT:
            self.shift(ds, tag, path, vr)
        elif action == CLEAN:
            self.clean(ds, tag, path)
        elif action in (KEEP_ITEMS, DUMMY_ITEMS, CLEAN_ITEMS):
            if vr != "SQ":  # a sequence in the table, not one in this file: never kept as is
                if action == CLEAN_ITEMS:
                    self.clean(ds, tag, path)
                else:
                    self.dummy(ds, tag, path, vr)
                return
            self.note(path, tag, action)
            self.items(ds, tag, path, None if action == KEEP_ITEMS else action)
            if action == CLEAN_ITEMS:
                self.done.cleaned = True

    def items(self, ds: Dataset, tag: BaseTag, path: str, mode: str | None) -> None:
        for i, item in enumerate(ds[tag].value or ()):
            self.walk(item, f"{path}({tag >> 16:04X},{tag & 0xFFFF:04X})[{i}]>", mode)

    def dummy(self, ds: Dataset, tag: BaseTag, path: str, vr: str) -> None:
        if vr == "UI":
            self.uids(ds, tag, path, only_outside_root=False)
            return
        ds._dict[tag] = elem = DataElement(tag, vr, _DUMMY.get(vr, b"\0\0"))
        if self.context.written is not None:
            self.context.written.element(elem)
        self.note(path, tag, DUMMY)

    def uids(self, ds: Dataset, tag: BaseTag, path: str, only_outside_root: bool) -> None:
        elem = ds[tag]
        value = elem.value
        if not value:
            return
        remap = self.context.remap_uid
        if isinstance(value, MultiValue | list | tuple):
            if only_outside_root and all(str(v).startswith(STANDARD_UID_ROOT) for v in value):
                return
            elem.value = [remap(v) for v in value]
        else:
            if only_outside_root and str(value).startswith(STANDARD_UID_ROOT):
                return
            elem.value = remap(value)
        self.note(path, tag, UID)

    def shift(self, ds: Dataset, tag: BaseTag, path: str, vr: str) -> None:
        elem = ds[tag]
        value = elem.value
        if not value:
            self.note(path, tag, SHIFT)
            return
        values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
        shifted = [_shift(str(v), self.context.jitter_days) for v in values]
        if any(s is None for s in shifted):
            ds._dict[tag] = DataElement(tag, vr, None)  # not a date: emptied, never kept
            self.note(path, tag, EMPTY)
            return
        elem.value = shifted if len(shifted) > 1 else shifted[0]
        self.done.shifted = True
        self.note(path, tag, SHIFT)

    def clean(self, ds: Dataset, tag: BaseTag, path: str) -> None:
        clean = self.context.clean
        assert clean is not None  # rules_without_cleaner has no CLEAN
        elem = ds[tag]
        value = elem.value
        if value is None or isinstance(value, bytes | Sequence):
            if isinstance(value, Sequence):
                self.items(ds, tag, path, CLEAN_ITEMS)
                self.done.cleaned = True
                self.note(path, tag, CLEAN_ITEMS)
                return
            if isinstance(value, bytes) and value:  # no text to clean in binary: removed
                del ds._dict[tag]
                self.note(path, tag, REMOVE)
            return
        if elem.VR == "PN":
            elem.value = ""  # a person name in cleaned text is a name, whole: removed
        elif isinstance(value, MultiValue | list | tuple):
            elem.value = [clean(str(v)) for v in value]
        elif isinstance(value, str):
            elem.value = clean(str(value))
        self.done.cleaned = True
        self.note(path, tag, CLEAN)

    def private(self, ds: Dataset, path: str) -> None:
        private = [t for t in ds._dict if t >> 16 & 1]
        if not private:
            return
        keep: set[int] = set()
        if self.profile.private_action == KEEP:
            keep = _safe_private(ds, private)
        for tag in private:
            if tag in keep:
                self.note(path, tag, KEEP)
            else:
                del ds._dict[tag]
                self.note(path, tag, REMOVE)


def _has_value(ds: Dataset, tag: BaseTag) -> bool:
    raw = ds._dict[tag]
    value = raw.value
    if isinstance(value, bytes):
        return bool(value.strip(b"\0 "))
    return value not in (None, "", [], ())


def _safe_private(ds: Dataset, private: list[BaseTag]) -> set[int]:
    """Private tags of SAFE_PRIVATE present in ``ds``, with their creators."""
    keep: set[int] = set()
    creators = {}
    for tag in private:
        element = tag & 0xFFFF
        if 0x0010 <= element <= 0x00FF:
            creators[(tag >> 16, element)] = str(ds[tag].value or "").strip()
    for tag in private:
        group, element = tag >> 16, tag & 0xFFFF
        if element < 0x1000:
            continue
        creator = creators.get((group, element >> 8))
        if creator and (creator, group, element & 0xFF) in SAFE_PRIVATE:
            keep.add(tag)
            keep.add((group << 16) | (element >> 8))
    return keep


def _shift(value: str, days: int) -> str | None:
    """A DA or DT moved by ``days`` (the time and offset of a DT kept); None if not a date."""
    value = value.strip()
    head, rest = value[:8], value[8:]
    if len(head) != 8 or not head.isdigit():
        return None
    try:
        moved = date(int(head[:4]), int(head[4:6]), int(head[6:])) + timedelta(days=days)
    except (ValueError, OverflowError):
        return None
    return f"{moved.year:04d}{moved.month:02d}{moved.day:02d}{rest}"


def compile_profile(
    options: Iterable[str] = (), descriptors: Iterable[str] | None = None
) -> Profile:
    """Table E.1-1 with ``options`` (names of ``settings.DEID_OPTIONS``) compiled to one action
    per tag; cached, so a task builds it once. ``descriptors``: the keywords Clean
    Descriptors keeps (``settings.clean_descriptor_attributes``; None or "all": every one
    the option cleans); the others it would clean get the Basic Profile's action."""
    wanted = None if descriptors is None else frozenset(descriptors)
    if wanted is not None and "all" in wanted:
        wanted = None
    return _compile(frozenset(options), wanted)


def _restrict_descriptors(
    options: frozenset[str],
    descriptors: frozenset[str],
    table: Table,
    rules: dict[int, str],
    without: dict[int, str],
) -> None:
    """Clean Descriptors keeps only ``descriptors``: every other attribute that only this
    option cleans gets the action it has without a cleaner (the Basic Profile's)."""
    cleanable = set()
    for tag, entry in table.by_tag().items():
        chosen_c = {o for o, a in entry.options.items() if o in options and a == "C"}
        if chosen_c == {"clean_descriptors"} and rules[tag] in (CLEAN, CLEAN_ITEMS):
            cleanable.add(tag)
    unknown = sorted(k for k in descriptors if tag_for_keyword(k) is None)
    if unknown:
        raise ConfigError(
            f"'clean_descriptor_attributes': {', '.join(unknown)} are not DICOM keywords"
        )
    cleaned = {t for t, action in rules.items() if action in (CLEAN, CLEAN_ITEMS)}
    not_cleaned = sorted(k for k in descriptors if tag_for_keyword(k) not in cleaned)
    if not_cleaned:
        raise ConfigError(
            f"'clean_descriptor_attributes': {', '.join(not_cleaned)} are not attributes that "
            "the Clean Descriptors option cleans (docs/deid_profile.md lists them)"
        )
    wanted = {tag_for_keyword(k) for k in descriptors}
    for tag in cleanable - wanted:
        rules[tag] = without[tag]


@cache
def _compile(options: frozenset[str], descriptors: frozenset[str] | None = None) -> Profile:
    unknown = options - set(OPTION_CODES)
    if unknown:
        raise ValueError(f"unknown de-identification options: {', '.join(sorted(unknown))}")
    if {FULL_DATES, MODIFIED_DATES} <= options:
        raise ValueError("choose one of the longitudinal temporal options, not both")
    table = load_table()
    rules: dict[int, str] = {}
    rules_without: dict[int, str] = {}
    for tag, entry in table.by_tag().items():
        vr = _vr(tag)
        rules[tag] = _resolve(entry, options, vr, can_clean=True)
        rules_without[tag] = _resolve(entry, options, vr, can_clean=False)
        if tag in EMPTIED_NOT_REMOVED:
            for table_rules in (rules, rules_without):
                if table_rules[tag] == REMOVE:
                    table_rules[tag] = EMPTY
    overlay: dict[int, str] = {}
    curve = REMOVE_GROUP
    for entry in table.masked():
        if entry.mask == 0xFF00FFFF:  # (60xx,eeee)
            overlay[entry.value & 0xFFFF] = REMOVE_GROUP  # bitmaps are never kept (docstring)
    if descriptors is not None and "clean_descriptors" in options:
        _restrict_descriptors(options, descriptors, table, rules, rules_without)
    private = table_private(table.entries)
    private_action = KEEP if options and "retain_safe_private" in options and private else REMOVE
    return Profile(options, rules, rules_without, overlay, curve, private_action, descriptors)


def table_private(entries: Iterable[Entry]) -> Entry | None:
    """The table's row for private attributes."""
    return next((e for e in entries if e.private), None)
