"""The pixel stage: find, mask and verify burned-in text (issues 14 and 22).

Use, per image (``pipeline.steps.anonymize.pixel_plan`` in the pipeline)::

    plan = plan_pixels(original_header, filter_recipe)        # header risk: read whole
    # or PixelPlan(None, (), rows, columns): no header risk, screened frame by frame
    outcome = clean(anonymized_ds, plan, settings, ocr_matcher(needles))
    # outcome.cleaned -> deliver (masked when outcome.boxes); else hold outcome.held_reason

:func:`text_risk` says whether the header gives a reason to read an image whole; it never
says an image is clean (``pixel_screening`` all screens every frame of every image).
"""

from sendit_ops.dicom.identifiers import identifier_matcher
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
