"""The header plan: boxes the ORIGINAL header says to mask, before anonymization removes the
fields deid's graylist rules test and the ultrasound regions.

deid's ``has_burned_pixels`` writes the coordinates it derives from a file
(``from:SequenceOfUltrasoundRegions``) back into the recipe it is given, so a recipe reused
for a second file would mask the first file's regions. Each call here runs deid on a private
copy of the recipe's filter section; the caller's recipe is never changed.
"""

from __future__ import annotations

import numpy as np
from deid.config import DeidRecipe
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from sendit_ops.dicom.pixels.model import GRAYLIST, US_REGIONS, Box, PixelPlan
from sendit_ops.dicom.pixels.risk import NOT_CLEANING, deid_reason, graylist_results, text_risk


def _paint(rows: int, columns: int, coordinates: list[tuple[int, str]]) -> NDArray[np.bool_]:
    """deid's semantics: start keeping everything; each coordinate, in recipe order, marks its
    rectangle to clean (0) or to keep (1); ``all`` is the whole image. True = mask."""
    mask = np.zeros((rows, columns), dtype=bool)
    for keep, coordinate in coordinates:
        if coordinate.strip().lower() == "all":
            x0, y0, x1, y1 = 0, 0, columns, rows
        else:
            try:
                x0, y0, x1, y1 = (int(float(v)) for v in coordinate.split(","))
            except ValueError:
                continue
        mask[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)] = not keep
    return mask


def mask_to_boxes(mask: NDArray[np.bool_], source: str) -> tuple[Box, ...]:
    """Rectangles covering exactly the True pixels: runs per row, merged down while equal."""
    boxes: list[Box] = []
    open_runs: dict[tuple[int, int], int] = {}  # (x0, x1) -> first row
    rows = mask.shape[0]
    for y in range(rows + 1):
        runs: set[tuple[int, int]] = set()
        if y < rows:
            line = np.concatenate(([False], mask[y], [False])).astype(np.int8)
            edges = np.flatnonzero(np.diff(line))
            runs = {(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)}
        for run in [r for r in open_runs if r not in runs]:
            boxes.append(Box(run[0], open_runs.pop(run), run[1], y, None, source))
        for run in runs:
            open_runs.setdefault(run, y)
    return tuple(sorted(boxes))


def _us_region_boxes(ds: Dataset, rows: int, columns: int) -> tuple[Box, ...]:
    """Everything outside the union of the ultrasound regions (where annotations live)."""
    regions = ds.get("SequenceOfUltrasoundRegions")
    if not regions or not rows or not columns:
        return ()
    mask = np.ones((rows, columns), dtype=bool)
    found = False
    for region in regions:
        try:
            x0, y0 = int(region.RegionLocationMinX0), int(region.RegionLocationMinY0)
            x1, y1 = int(region.RegionLocationMaxX1), int(region.RegionLocationMaxY1)
        except (AttributeError, TypeError, ValueError):
            continue
        # the Max values are inclusive (PS3.3 C.8.5.5.1)
        mask[max(0, y0) : max(0, y1 + 1), max(0, x0) : max(0, x1 + 1)] = False
        found = True
    return mask_to_boxes(mask, US_REGIONS) if found else ()


def plan_pixels(ds: Dataset, recipe: DeidRecipe | None = None) -> PixelPlan:
    """The pixel plan of one image from its ORIGINAL header (see the module docstring).

    ``recipe`` is the filter recipe (``sendit_ops.dicom.filters.load_filter_recipe``); without it
    only the header rules of :func:`text_risk` and the ultrasound regions are used.
    """
    rows, columns = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
    risk = text_risk(ds)
    boxes: list[Box] = []
    if recipe is not None:
        coordinates: list[tuple[int, str]] = []
        results = graylist_results(ds, recipe)
        for result in results:
            if result.get("group") in NOT_CLEANING:
                continue
            for keep, value in result.get("coordinates") or []:
                for coordinate in value if isinstance(value, list) else [value]:
                    coordinates.append((int(keep), str(coordinate)))
        # a whitelist match overrides deid's other groups (as in the filters); their boxes
        # are still masked when a header rule sends the image here
        risk = risk or deid_reason(results)
        if coordinates and rows and columns and risk is not None:
            boxes.extend(mask_to_boxes(_paint(rows, columns, coordinates), GRAYLIST))
    if risk is not None:
        boxes.extend(_us_region_boxes(ds, rows, columns))
    return PixelPlan(risk=risk, boxes=tuple(boxes), rows=rows, columns=columns)
