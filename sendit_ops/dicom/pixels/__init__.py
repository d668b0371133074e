"""The pixel stage: find, mask and verify burned-in text (issue 14).

Use, per image that may carry text::

    plan = plan_pixels(original_header, filter_recipe)        # before header anonymization
    if plan.needed:
        outcome = clean(anonymized_ds, plan, settings, ocr_matcher(needles))  # identifiers'
        # outcome.cleaned -> deliver (BurnedInAnnotation is NO); else hold outcome.held_reason

:func:`text_risk` alone says whether an image needs the stage (CT/MR without a flag do not).
"""

from sendit_ops.dicom.pixels.check import identifier_matcher
from sendit_ops.dicom.pixels.model import Box, PixelOutcome, PixelPlan
from sendit_ops.dicom.pixels.plan import plan_pixels
from sendit_ops.dicom.pixels.risk import text_risk
from sendit_ops.dicom.pixels.stage import clean

__all__ = [
    "Box",
    "PixelOutcome",
    "PixelPlan",
    "clean",
    "identifier_matcher",
    "plan_pixels",
    "text_risk",
]
