"""Which images may carry burned-in text, judged from the header.

A header can say an image is risky, never that it is safe: ultrasound, screen captures and
camera images carry text whatever their BurnedInAnnotation says (3 of 6 real ultrasound images
with a name, an id or a date on screen were missed by deid's graylist, issue 14). CT and MR
acquisitions without a flag stay out of the pixel stage, so they keep today's speed.
Reasons name the rule and the tag, never a header value.
"""

from __future__ import annotations

from pydicom.dataset import Dataset

from sendit_ops.dicom_io import text

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
# ImageType values of derived pictures: screen saves, secondary captures, reformats with labels
TEXT_IMAGE_TYPES = ("SECONDARY", "DERIVED", "SCREEN", "SAVE")


def text_risk(ds: Dataset) -> str | None:
    """Why this image may carry burned-in text (a PHI-free reason naming the rule), or None.

    Order matters only for the wording: an explicit BurnedInAnnotation YES is named first,
    as the filters always did. deid's graylist is judged by the filters (memoized per series)
    and by :func:`sendit_ops.pixels.plan.plan_pixels`, which add their own reason.
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
    return None
