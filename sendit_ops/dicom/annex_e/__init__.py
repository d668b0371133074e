"""DICOM PS3.15 Annex E de-identification: the standard's table as data, the action engine
and what is recorded in the output (see docs/deid_profile.md)."""

from sendit_ops.dicom.annex_e.profile import Context, Done, Profile, compile_profile
from sendit_ops.dicom.annex_e.record import add_method_codes, record
from sendit_ops.dicom.annex_e.table import CLEAN_PIXEL_DATA_CODE, OPTION_CODES, load_table

__all__ = [
    "CLEAN_PIXEL_DATA_CODE",
    "OPTION_CODES",
    "Context",
    "Done",
    "Profile",
    "add_method_codes",
    "compile_profile",
    "load_table",
    "record",
]
