"""Header de-identification with a deid recipe, parsed once per task and reused per file.

The per-batch values (coded ids, jitter) and a keyed UID remapper are handed to deid as
recipe variables (``var:``/``func:``). Private tags are removed and the preamble zeroed before
the recipe runs; the output is checked in memory by the leak scanner before it is written.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from deid.config import DeidRecipe
from pydicom.dataset import Dataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from sendit_ops import __version__, deid_tuning
from sendit_ops.dicom_io import as_file_dataset, remove_private_tags
from sendit_ops.errors import LeakError
from sendit_ops.recipe_engine import CompiledRecipe, apply_recipe
from sendit_ops.recipe_variables import recipe_variables, uid_remapper  # noqa: F401 - re-exported
from sendit_ops.verify import LeakScanner

SHIPPED_RECIPE = Path(__file__).parent / "recipes" / "deid.sendit"


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


def anonymize_dataset(
    ds: Dataset, recipe: CompiledRecipe, variables: dict[str, Any], scanner: LeakScanner
) -> Dataset:
    """De-identify one dataset in place and return it; raise LeakError if anything survives."""
    ds = as_file_dataset(ds)
    remove_private_tags(ds)
    ds.preamble = b"\0" * 128
    try:
        ds = apply_recipe(ds, recipe, variables)
    finally:
        deid_tuning.release_caches()  # only a KEEP action still goes through deid's cache
    if getattr(ds, "file_meta", None) is not None and "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta.ImplementationVersionName = "SENDIT_" + __version__.replace(".", "")[:9]
    leaks = scanner.scan_dataset(ds)
    if leaks:
        raise LeakError("original identifier left after the recipe in: " + ", ".join(leaks[:5]))
    return ds
