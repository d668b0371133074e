"""De-identified output stays valid DICOM: dciodvfy (Debian dicom3tools) is the judge.

Every file of the real corpus (pydicom's test files, deid-data, pydicom-data) is checked
before and after de-identification; the test fails on any error dciodvfy reports for the
output that it did not report for the input (a file that was invalid before may stay so,
never become worse).
dciodvfy is installed by the test when missing (``apt-get install -y dicom3tools``): the test
is never skipped.

dciodvfy prints values in some messages (``= <value>``): they are blanked before messages
are compared or shown, so no header value reaches the test output.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from functools import cache
from pathlib import Path

import pydicom
import pytest
from dicom_corpus import DEID_FILES, pydicom_files

from sendit_ops.core.settings import DEFAULT_DEID_OPTIONS
from sendit_ops.dicom.anonymize import anonymize_dataset, load_profile, load_recipe
from sendit_ops.dicom.identifiers import Needles
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.dicom.recipe_variables import recipe_variables, uid_remapper
from sendit_ops.pseudonyms.providers import Pseudonym

pytestmark = pytest.mark.emulator


def pydicom_data_files() -> list[Path]:
    """pydicom-data's files (the ``data_store`` package: many transfer syntaxes, enhanced
    multi-frame objects) that read to their end without a warning and have an SOP Instance
    UID (truncated files are refused by sendit's image check before de-identification)."""
    import data_store

    chosen = []
    for path in sorted((Path(data_store.__file__).parent / "data").rglob("*.dcm")):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                if "SOPInstanceUID" in pydicom.dcmread(path, force=True):
                    chosen.append(path)
        except Exception:
            continue
    return chosen


FILES = [*DEID_FILES, *pydicom_files(), *pydicom_data_files()]
PSEUDO = Pseudonym("codedpatient01", "codedstudy0001", -21)
OPTION_SETS = {
    "default": DEFAULT_DEID_OPTIONS,
    "default-no-cleaner": DEFAULT_DEID_OPTIONS,
    "basic": (),
    # every option but retain_uids: that one keeps the input's UIDs as they are, invalid ones
    # too (pydicom-data's bad_sequence.dcm has a hex SOP Instance UID, then also in the meta)
    "all-full-dates": (
        "retain_longitudinal_full_dates",
        "retain_patient_characteristics",
        "retain_device_identity",
        "retain_institution_identity",
        "retain_safe_private",
        "clean_descriptors",
        "clean_structured_content",
        "clean_graphics",
    ),
}
_VALUE = re.compile(r"= <[^>]*>|\"[^\"]*\"|'[^']*'")


@cache
def dciodvfy() -> str:
    """The dciodvfy binary, installed from Debian when missing (we run as root)."""
    found = shutil.which("dciodvfy")
    if found is None:
        install = ["apt-get", "install", "-y", "-q", "dicom3tools"]
        if subprocess.run(install, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=True)
            subprocess.run(install, capture_output=True, check=True)
        found = shutil.which("dciodvfy")
    assert found, "dicom3tools did not install dciodvfy"
    return found


def errors(path: Path) -> set[str]:
    """dciodvfy's error messages for a file, values blanked."""
    run = subprocess.run([dciodvfy(), str(path)], capture_output=True, text=True, errors="replace")
    lines = (run.stdout + run.stderr).splitlines()
    return {_VALUE.sub("<...>", line.strip()) for line in lines if line.startswith("Error")}


@cache
def input_errors(path: Path) -> frozenset[str]:
    return frozenset(errors(path))


def keep_text(text: str) -> str:
    """A cleaner that finds nothing to replace: the cleaned elements keep their values (the
    worst case for validity is what the options keep, not the cleaner's markers)."""
    return text


@pytest.mark.parametrize("options", list(OPTION_SETS), ids=str)
def test_deidentified_files_gain_no_dciodvfy_error(tmp_path, options):
    profile = load_profile(OPTION_SETS[options])
    recipe = load_recipe(None)
    scanner = LeakScanner(Needles())  # validity only; leaks are tested elsewhere
    new: dict[str, set[str]] = {}
    checked = 0
    for i, path in enumerate(FILES):
        ds = pydicom.dcmread(path, force=True)
        variables = recipe_variables(PSEUDO, uid_remapper(b"k" * 32))
        cleaner = None if options.endswith("no-cleaner") else keep_text
        out = anonymize_dataset(ds, recipe, variables, scanner, profile, clean=cleaner)
        target = tmp_path / f"{i}.dcm"
        out.save_as(target, enforce_file_format=True)
        gained = errors(target) - input_errors(path)
        if gained:
            new[f"{path.parent.name}/{path.name}"] = gained
        checked += 1
    assert checked >= 100
    assert not new, "\n".join(f"{name}: {sorted(msgs)}" for name, msgs in new.items())
