"""sendit's fast path gives the same headers as deid's own replace_identifiers.

Only the recipe stage is compared (``recipe_only``): the Annex E profile that runs before it
has no counterpart in deid and is tested in tests/test_annex_e.py.

Two recipes: the one sendit ships, and one exercising the deid features it does not use
(KEEP, BLANK, literal values, select:group, startswith/endswith/contains, a %fields list).

The reference runs in a separate process with deid as released (without sendit's speed fix),
on pydicom's test files and deid-data, with the same recipe and the same variables.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from dicom_corpus import DEID_FILES, pydicom_files

from sendit_ops.dicom.anonymize import SHIPPED_RECIPE, anonymize_dataset, load_recipe, uid_remapper
from sendit_ops.dicom.anonymize import recipe_variables as variables
from sendit_ops.dicom.identifiers import Needles
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.pseudonyms.providers import Pseudonym

pytestmark = pytest.mark.emulator  # whole studies through the pipeline (or OCR on real images)

KEY = b"k" * 32
FEATURES_RECIPE = Path(__file__).parent / "recipes" / "deid.features"
PSEUDO = Pseudonym("codedpatient01", "codedstudy0001", -21)
REFERENCE = r"""
import json, sys
from pathlib import Path
from deid.dicom import replace_identifiers
from sendit_ops.dicom.recipe_variables import recipe_variables, uid_remapper
from sendit_ops.pseudonyms.providers import Pseudonym
assert "sendit_ops.dicom.deid_patches" not in sys.modules
files, recipe, out = json.loads(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
ids = {f: recipe_variables(Pseudonym("codedpatient01", "codedstudy0001", -21),
                           uid_remapper(b"k" * 32)) for f in files}
for i, ds in enumerate(replace_identifiers(files, deid=recipe, ids=ids, remove_private=True)):
    ds.save_as(out / f"{i}.dcm", enforce_file_format=False)
"""


def elements(ds):
    return [(str(e.tag), e.VR, e.value) for e in ds.iterall() if e.tag != 0x7FE00010]


@pytest.mark.parametrize("recipe_file", [SHIPPED_RECIPE, FEATURES_RECIPE], ids=lambda p: p.name)
def test_fast_path_equals_deid_replace_identifiers(tmp_path, recipe_file):
    files = [str(p) for p in [*DEID_FILES, *pydicom_files()]]
    # deid's reference needs the files under their absolute path (its lookup key)
    subprocess.run(
        [sys.executable, "-c", REFERENCE, json.dumps(files), str(recipe_file), str(tmp_path)],
        check=True,
        capture_output=True,
    )
    recipe = load_recipe(str(recipe_file))
    scanner = LeakScanner(Needles())  # equivalence only; the leak check is tested elsewhere
    compared = 0
    for i, path in enumerate(files):
        ours = anonymize_dataset(
            pydicom.dcmread(path, force=True),
            recipe,
            variables(PSEUDO, uid_remapper(KEY)),
            scanner,
            recipe_only=True,  # the recipe engine alone: deid has no Annex E profile
        )
        ours.save_as(tmp_path / f"ours{i}.dcm", enforce_file_format=False)  # as the reference
        ours = pydicom.dcmread(tmp_path / f"ours{i}.dcm", force=True)
        theirs = pydicom.dcmread(tmp_path / f"{i}.dcm", force=True)
        assert elements(ours) == elements(theirs), Path(path).name
        compared += 1
    assert compared >= 20
