"""deid's header-recipe engine, with each action's field expression resolved through indexes.

deid's ``DicomParser`` (0.4.13) spends most of its time per file on bookkeeping, not on
editing the header:

- every action expands its field expression by testing every element of the header
  (``select:VR:UI`` alone tests ~100 elements), then deep-copies the matches;
- every REMOVE match expands again each REPLACE/JITTER expression over the whole header, to
  honour deid's action priority (a field that will be replaced or jittered is not removed);
- every file re-reads deid's config JSON, and a field cache keyed by dataset keeps every
  dataset alive.

``IndexedDicomParser`` keeps deid's own code for what is *done* to an element (``add_field``,
``delete_field``, ``blank_field``, jitter, ``var:``/``func:`` values) and replaces only how
the elements an action applies to are *found*: exact names and tags through deid's own
lookup tables, ``select:VR:``/``select:group:`` through indexes kept in step with every
addition and removal, and the priority check of a REMOVE as a test of that one element.
Expressions it has no index for (``startswith:``, ``contains:``, ``values:`` lists, ...)
go through deid's own expansion unchanged. The same actions run in the same order on the
same elements, so a recipe keeps its meaning; ``tests/test_equivalence.py`` compares the
output with deid's ``replace_identifiers`` element by element.
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any, cast

import deid.dicom.parser as deid_parser
from deid.dicom.fields import (
    DicomField,
    FieldsWithLookups,
    _get_fields_inner,
    _split_expander_expression,
    expand_field_expression,
)
from deid.dicom.parser import DicomParser
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from sendit_ops.dicom import deid_patches

deid_patches.install()  # before any deid call: deid's logger prints header values

_LIST_PREFIXES = ("values", "fields")


@cache
def _deid_config_text() -> str:
    return (Path(deid_parser.__file__).parent / "config.json").read_text()


def deid_config() -> dict[str, Any]:
    """deid's default parser config (skip list, default actions), read once per process."""
    config: dict[str, Any] = json.loads(_deid_config_text())  # a JSON object: deid's to read
    return config


# the lookup keys of a field depend only on its nested name, uid, tag and private creator;
# the files of a batch share their header layout, so most fields are seen before
_LOOKUP_KEYS: dict[tuple[str, str, int, str | None], dict[str, list[str]]] = {}


class IndexedFields(FieldsWithLookups):  # type: ignore[misc]  # deid ships no type information
    """deid's field table plus ordered indexes by VR and by tag group."""

    def __init__(self, fields: dict[str, DicomField]) -> None:
        self.by_vr: dict[str, dict[str, None]] = defaultdict(dict)
        self.by_group: dict[int, dict[str, None]] = defaultdict(dict)
        super().__init__(fields)

    def _get_field_lookup_keys(self, field: Any) -> dict[str, list[str]]:
        if not isinstance(field, DicomField):
            return _deid_lookup_keys(super()._get_field_lookup_keys(field))
        element = field.element
        tag = int(element.tag)
        creator = element.private_creator if element.tag.is_private else None
        key = (field.name, field.uid, tag, creator)
        keys = _LOOKUP_KEYS.get(key)
        if keys is None:
            keys = _deid_lookup_keys(super()._get_field_lookup_keys(field))
            if len(_LOOKUP_KEYS) > 100_000:  # bounded: layouts of many batches
                _LOOKUP_KEYS.clear()
            _LOOKUP_KEYS[key] = keys
        return keys

    def _add_field_to_lookup(self, field: DicomField) -> None:
        super()._add_field_to_lookup(field)
        if isinstance(field, DicomField):
            self.by_vr[field.element.VR][field.uid] = None
            self.by_group[field.element.tag.group][field.uid] = None

    def remove(self, uid: str) -> None:
        field = self.fields.get(uid)
        super().remove(uid)
        if isinstance(field, DicomField):
            self.by_vr[field.element.VR].pop(uid, None)
            self.by_group[field.element.tag.group].pop(uid, None)


def _deid_lookup_keys(keys: Any) -> dict[str, list[str]]:
    """deid's (untyped) lookup keys of a field: lookup table name -> keys in that table."""
    return cast("dict[str, list[str]]", keys)


class FieldMatcher:
    """One field expression of a recipe, parsed once."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.kind = "deid"  # resolved by deid's own expansion
        self.key = ""  # kind "exact": the lower-case name; kind "vr": the VR
        self.group = 0  # kind "group": the tag group
        if expression.lower() == "all":
            return
        parts = _split_expander_expression(expression)
        if len(parts) == 1:
            self.kind, self.key = "exact", expression.lower()
            return
        expander, argument = parts
        if expander.lower() != "select":
            return
        attribute, _, value = argument.lower().partition(":")
        if attribute.upper() == "VR":
            self.kind, self.key = "vr", value[0:2].upper()
        elif attribute.upper() == "GROUP":
            try:
                self.kind, self.group = "group", int(value, 16)
            except ValueError:
                self.kind = "deid"  # deid would raise; let it

    def expand(self, parser: IndexedDicomParser) -> dict[str, DicomField]:
        """The fields of the header this expression selects now, in deid's order."""
        fields: IndexedFields = parser.fields
        if self.kind == "exact":
            return {f.uid: f for f in fields.get_exact_matches(self.key)}
        if self.kind == "vr":
            return {uid: fields.fields[uid] for uid in fields.by_vr.get(self.key, ())}
        if self.kind == "group":
            return {uid: fields.fields[uid] for uid in fields.by_group.get(self.group, ())}
        expanded = expand_field_expression(
            field=self.expression, dicom=parser.dicom, contenders=fields
        )
        return cast("dict[str, DicomField]", expanded)  # deid is untyped: uid -> field

    def selects(self, parser: IndexedDicomParser, uid: str) -> bool:
        """Whether the field ``uid`` (currently in the header) is selected by this expression."""
        field = parser.fields.fields.get(uid)
        if field is None:
            return False
        if self.kind == "exact":
            tables = parser.fields.lookup_tables.values()
            return any(f.uid == uid for table in tables for f in table.get(self.key, ()))
        element: DataElement = field.element  # deid's field wraps a pydicom element
        if self.kind == "vr":
            return self.key == element.VR
        if self.kind == "group":
            return self.group == element.tag.group
        return uid in self.expand(parser)


class CompiledRecipe:
    """A parsed deid recipe with its field expressions compiled to matchers (once per task)."""

    def __init__(self, recipe: Any) -> None:
        self.recipe = recipe
        self.matchers: dict[str, FieldMatcher] = {}
        self.protected: list[FieldMatcher] = []
        if recipe.deid is not None:
            for action in recipe.get_actions():
                self.matcher(action.get("field"))
            # deid: a field some REPLACE/JITTER applies to is never removed by a REMOVE
            self.protected = [
                self.matcher(a.get("field"))
                for a in recipe.get_actions(action="JITTER") + recipe.get_actions(action="REPLACE")
                if a and a.get("field")
            ]

    def matcher(self, expression: str) -> FieldMatcher:
        """The matcher for a field expression (cached)."""
        if expression not in self.matchers:
            self.matchers[expression] = FieldMatcher(expression)
        return self.matchers[expression]


class IndexedDicomParser(DicomParser):  # type: ignore[misc]  # deid ships no type information
    """deid's DicomParser with indexed field lookup (same actions, same results)."""

    def __init__(self, dataset: Dataset, compiled: CompiledRecipe) -> None:
        # not super().__init__: it re-reads deid's config file for every file
        self.lookup: dict[str, Any] = {}
        # deid's own code reads and replaces it: {} until get_fields builds the IndexedFields
        self.fields: Any = {}
        self.disable_skip = False
        self.config = deid_config()
        self.deid_funcs = deid_parser.deid_funcs
        self.compiled = compiled
        self.recipe = compiled.recipe
        self.load(dataset)

    def get_fields(self, expand_sequences: bool = True) -> IndexedFields:
        """All elements of the header (sequences expanded), indexed; not cached globally."""
        if not self.fields:
            skip = self.skip + self.keep
            fields, _, _ = _get_fields_inner.__wrapped__(
                self.dicom,
                skip=tuple(skip) if skip else None,
                expand_sequences=expand_sequences,
                seen=tuple(self.seen) if self.seen else None,
            )
            self.fields = IndexedFields(fields)
        return cast(IndexedFields, self.fields)

    def perform_action(self, field: Any, value: Any, action: str, filemeta: bool = False) -> None:
        """As deid's, with the expression resolved through the indexes."""
        if (
            not isinstance(field, str)
            or field.split(":", 1)[0] in _LIST_PREFIXES
            or action not in deid_parser.valid_actions
        ):
            super().perform_action(field, value, action, filemeta)
            return
        if action == "ADD":
            self.add_field(field, value)
            return
        selected = self.compiled.matcher(field).expand(self)
        # deid deep-copies the matches only to iterate while the header changes
        for match in list(selected.values()):
            self._run_action(field=match, action=action, value=value)

    def _run_action(self, field: Any, action: str, value: Any = None) -> None:
        if action == "REMOVE" and value is None:
            if not any(m.selects(self, field.uid) for m in self.compiled.protected):
                self.delete_field(field)
            return
        super()._run_action(field=field, action=action, value=value)

    @property
    def excluded_from_deletion(self) -> list[str]:
        """deid's list of protected expressions (used only by the fallback path)."""
        return [m.expression for m in self.compiled.protected]


def apply_recipe(ds: Dataset, compiled: CompiledRecipe, variables: dict[str, Any]) -> Dataset:
    """Run the recipe's header actions on ``ds`` (in place) and return the dataset."""
    parser = IndexedDicomParser(ds, compiled)
    parser.lookup.update(variables)
    parser.parse()
    return cast(Dataset, parser.dicom)  # deid is untyped: the dataset it loaded, edited
