"""Images with planted burned-in text for the pixel stage's tests.

Text is drawn in several fonts (Pillow's default, DejaVu when the fonts are installed, and
OpenCV's Hershey fonts, which are always there), sizes, grey levels and places; the ink of
each line is returned too, so a test can check that every inked pixel was masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from sendit_ops.sample_data import PATIENTS, make_image, ultrasound_picture

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
HERSHEY = {
    "hershey-simplex": cv2.FONT_HERSHEY_SIMPLEX,
    "hershey-duplex": cv2.FONT_HERSHEY_DUPLEX,
    "hershey-complex": cv2.FONT_HERSHEY_COMPLEX,
}


def fonts() -> list[str]:
    """Font names usable here: Pillow's default and Hershey always, DejaVu when installed."""
    names = ["pillow-default", *HERSHEY]
    for file in ("DejaVuSans.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf"):
        if (DEJAVU / file).is_file():
            names.append(file)
    return names


@dataclass(frozen=True)
class Planted:
    """One line of burned-in text: where, how big (pixels), how bright (0-255), which font."""

    text: str
    x: int
    y: int
    height: int = 16
    level: int = 255
    font: str = "pillow-default"


def ink(line: Planted, rows: int, columns: int) -> np.ndarray:
    """The line's coverage (0..1) on a rows x columns canvas."""
    if line.font in HERSHEY:
        canvas = np.zeros((rows, columns), dtype=np.uint8)
        face = HERSHEY[line.font]
        scale = cv2.getFontScaleFromHeight(face, line.height, 1)
        baseline = line.y + line.height
        cv2.putText(canvas, line.text, (line.x, baseline), face, scale, 255, 1, cv2.LINE_AA)
        return canvas.astype(np.float32) / 255.0
    if line.font == "pillow-default":
        font = ImageFont.load_default(line.height)
    else:
        font = ImageFont.truetype(str(DEJAVU / line.font), line.height)
    image = Image.new("L", (columns, rows), 0)
    ImageDraw.Draw(image).text((line.x, line.y), line.text, fill=255, font=font)
    return np.asarray(image, dtype=np.float32) / 255.0


def plant(picture: np.ndarray, lines: list[Planted]) -> np.ndarray:
    """``picture`` (rows, columns) uint8 with the lines drawn in; returns the union of ink."""
    rows, columns = picture.shape[:2]
    union = np.zeros((rows, columns), dtype=np.float32)
    for line in lines:
        cover = ink(line, rows, columns)
        picture[...] = np.round(picture * (1 - cover) + line.level * cover).astype(np.uint8)
        union = np.maximum(union, cover)
    return union


def us_dataset(
    picture: np.ndarray, *, region: tuple[int, int, int, int] | None = None, seed: int = 1
) -> Dataset:
    """An ultrasound image (8-bit grey, or RGB for (rows, columns, 3)) holding ``picture``,
    with one ultrasound region (x0, y0, x1, y1) when given."""
    ds = make_image(PATIENTS[0], "ACC20001", "20240115", "US", 1, seed)
    ds.Rows, ds.Columns = picture.shape[:2]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if picture.ndim == 3:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    if region is not None:
        item = Dataset()
        item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = 1, 1, 0
        (item.RegionLocationMinX0, item.RegionLocationMinY0,
         item.RegionLocationMaxX1, item.RegionLocationMaxY1) = region  # fmt: skip
        ds.SequenceOfUltrasoundRegions = Sequence([item])
    ds.PixelData = np.ascontiguousarray(picture).tobytes()
    return ds


def planted_us(
    lines: list[Planted], *, size: int = 512, seed: int = 0, region: bool = True
) -> tuple[Dataset, np.ndarray]:
    """A 512x512 grey ultrasound image with ``lines`` burned in, and their ink."""
    picture = ultrasound_picture(size, size, seed)
    cover = plant(picture, lines)
    box = (0, 40, size - 1, size - 1) if region else None
    return us_dataset(picture, region=box, seed=seed + 1), cover


# ---- planted text on acquisitions of every kind (issue 22) -------------------------------

SOP = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "SC": "1.2.840.10008.5.1.4.1.1.7",
    "PT": "1.2.840.10008.5.1.4.1.1.128",
}


def stored_text(picture: np.ndarray, cover: np.ndarray, level: int) -> np.ndarray:
    """``picture`` (any integer type) with text of grey ``level`` (0-255 of its range)
    blended in where ``cover`` (0..1) says: the value a scanner would burn, whatever the
    bit depth (not necessarily the top of the range)."""
    lo, hi = float(picture.min()), float(picture.max())
    value = lo + (hi - lo) * level / 255.0
    out = picture.astype(np.float64) * (1 - cover) + value * cover
    return np.round(out).astype(picture.dtype)


def acquisition(
    modality: str,
    picture: np.ndarray,
    *,
    flag: str | None = None,
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    seed: int = 1,
) -> Dataset:
    """An image of ``modality`` holding ``picture`` ((frames,) rows, columns; uint8 or
    uint16), with BurnedInAnnotation ``flag`` (None: absent)."""
    from sendit_ops.sample_data import US_MULTIFRAME

    ds = make_image(PATIENTS[0], "ACC20001", "20240115", "CT", 1, seed)
    ds.Modality = modality
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SOP[modality]
    ds.ImageType = list(image_type)
    if flag is not None:
        ds.BurnedInAnnotation = flag
    elif "BurnedInAnnotation" in ds:
        del ds.BurnedInAnnotation
    frames = picture if picture.ndim == 3 else picture[np.newaxis]
    ds.Rows, ds.Columns = frames.shape[1:3]
    if frames.shape[0] > 1:
        ds.NumberOfFrames = frames.shape[0]
        if modality == "US":
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
    bits = 8 if picture.dtype == np.uint8 else 16
    stored = 8 if bits == 8 else 12
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = (
        bits,
        stored,
        stored - 1,
        0,
    )
    ds.PixelData = np.ascontiguousarray(frames).tobytes()
    return ds
