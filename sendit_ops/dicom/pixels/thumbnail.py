"""A small PNG of the masked output, for the reviewer of a held or cleaned image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from sendit_ops.dicom.pixels.display import Picture

MAX_SIDE = 256


def png(rgb: Picture, max_side: int = MAX_SIDE) -> bytes:
    """PNG bytes of an (rows, columns, 3) uint8 image, shrunk to fit ``max_side``."""
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    image.thumbnail((max_side, max_side))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
