"""Generate realistic identified DICOM studies for the demo, the tests and the benchmark.

PHI is planted in many places (names, ids, dates, addresses, sequences, private tags, free
text) so the de-identification and the leak check have something to find. All values are
invented; the output is deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

SOP_CLASSES = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "XA": "1.2.840.10008.5.1.4.1.1.12.1",
    "OT": "1.2.840.10008.5.1.4.1.1.7",  # secondary capture (a screen saved as an image)
}


@dataclass(frozen=True)
class Patient:
    """An invented patient."""

    name: str
    mrn: str
    birth: str
    sex: str = "F"
    address: str = "12 Elm Street, Springfield"


PATIENTS = (
    Patient("DOE^JANE^Q", "MRN-100234", "19710304", "F"),
    Patient("ROE^RICHARD", "MRN-200871", "19580712", "M", "9 Oak Lane, Shelbyville"),
    Patient("SMITH^ALEXANDRA", "MRN-300415", "19900228", "F", "77 Pine Road, Ogdenville"),
)


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def make_image(
    patient: Patient,
    accession: str,
    study_date: str,
    modality: str,
    series: int,
    instance: int,
    *,
    size: int = 64,
    burned_in: str | None = None,
    seed: int = 0,
    study_uid: str | None = None,
) -> Dataset:
    """One identified image with PHI in headers, a sequence, a private block and free text."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = SOP_CLASSES[modality]
    study_uid = study_uid or _uid("study", accession, seed)
    ds.SOPInstanceUID = _uid("sop", accession, series, instance, seed)
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PatientName = patient.name
    ds.PatientID = patient.mrn
    ds.OtherPatientIDs = patient.mrn.replace("MRN-", "ALT")
    ds.PatientBirthDate = patient.birth
    ds.PatientSex = patient.sex
    ds.PatientAge = f"{int(study_date[:4]) - int(patient.birth[:4]):03d}Y"
    ds.PatientAddress = patient.address
    ds.PatientTelephoneNumbers = "555-0100"
    ds.AccessionNumber = accession
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = _uid("series", accession, series, seed)
    ds.FrameOfReferenceUID = _uid("for", accession, seed)
    ds.StudyID = accession[-6:]
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = study_date
    ds.StudyTime, ds.SeriesTime, ds.ContentTime = "083000", f"08{30 + series:02d}00", "083512"
    ds.AcquisitionDateTime = f"{study_date}083512.000000"
    ds.Modality = modality
    ds.Manufacturer = "ACME MEDICAL"
    ds.ManufacturerModelName = "Imager 3000"
    ds.InstitutionName = "Springfield General Hospital"
    ds.InstitutionAddress = "1 Hospital Drive, Springfield"
    ds.StationName = "CT-ROOM-2"
    ds.ReferringPhysicianName = "HOUSE^GREGORY"
    ds.PerformingPhysicianName = "CAMERON^ALLISON"
    ds.OperatorsName = "TECH^TOM"
    ds.StudyDescription = f"{modality} CHEST WITH CONTRAST"
    ds.SeriesDescription = f"AXIAL {series}"
    ds.ImageComments = f"patient {patient.name.split('^')[0]} moved, repeat scan"
    ds.SeriesNumber = series
    ds.InstanceNumber = instance
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    if burned_in is not None:
        ds.BurnedInAnnotation = burned_in
    req = Dataset()
    req.AccessionNumber = accession
    req.RequestedProcedureID = "RP" + accession[-5:]
    req.RequestedProcedureDescription = "CHEST"
    ds.RequestAttributesSequence = Sequence([req])
    ref = Dataset()
    ref.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ref.ReferencedSOPInstanceUID = _uid("pps", accession, seed)
    ds.ReferencedPerformedProcedureStepSequence = Sequence([ref])
    block = ds.private_block(0x0029, "ACME PRIVATE", create=True)
    block.add_new(0x10, "LO", patient.name)
    block.add_new(0x11, "LO", patient.mrn)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    rng = np.random.default_rng(seed * 1_000_003 + series * 1009 + instance)
    ds.PixelData = rng.integers(0, 4096, (size, size), dtype=np.uint16).tobytes()
    return ds


def write_study(
    folder: Path,
    patient: Patient,
    accession: str,
    study_date: str,
    modality: str = "CT",
    series: int = 2,
    images: int = 3,
    *,
    size: int = 64,
    burned_in: str | None = None,
    seed: int = 0,
) -> list[Path]:
    """Write one study (series x images files) into ``folder``; return the file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    study_uid = _uid("study", accession, seed)
    for s in range(1, series + 1):
        for i in range(1, images + 1):
            ds = make_image(
                patient,
                accession,
                study_date,
                modality,
                s,
                i,
                size=size,
                burned_in=burned_in,
                seed=seed,
                study_uid=study_uid,
            )
            path = folder / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True)
            paths.append(path)
    return paths


def make_demo_input(root: Path, size: int = 64) -> dict[str, str]:
    """A demo input folder with every kind of batch sendit meets. Returns name -> expectation.

    Folder names are accession numbers, as the C-MOVE script writes them.
    """
    root.mkdir(parents=True, exist_ok=True)
    jane, richard, alex = PATIENTS
    expect: dict[str, str] = {}
    write_study(root / "ACC10001", jane, "ACC10001", "20240115", "CT", 2, 3, size=size)
    # its localizer shows the patient's name, sex and dates, unflagged: screened, masked
    write_localizer(root / "ACC10001", jane, "ACC10001", "20240115")
    expect["ACC10001"] = "DONE"
    write_study(
        root / "ACC10002", richard, "ACC10002", "20240116", "MR", 2, 2, size=size, burned_in="NO"
    )
    expect["ACC10002"] = "DONE"
    mixed = root / "ACC10003"  # same patient as ACC10001, plus a corrupt and a non-DICOM file
    files = write_study(mixed, jane, "ACC10003", "20240301", "CT", 1, 3, size=size)
    (mixed / "corrupt.dcm").write_bytes(files[0].read_bytes()[:300])
    (mixed / "notes.txt").write_text("C-MOVE log: transfer complete\n")
    expect["ACC10003"] = "ERROR"  # a study missing an image is not delivered incomplete
    write_study(
        root / "ACC10004", alex, "ACC10004", "20240302", "US", 1, 2, size=size, burned_in="YES"
    )
    expect["ACC10004"] = "DONE"  # flagged burned-in: pixels checked by OCR, then delivered
    write_burned_in_ultrasound(root / "ACC10009", alex, "ACC10009", "20240307")
    expect["ACC10009"] = "DONE"  # name, MRN and date burned in: masked, verified, delivered
    write_screen_capture(root / "ACC10010", richard, "ACC10010", "20240308")
    # a dose screen full of text: masking it would cover more than pixel_mask_max_share
    # allows, so no automatic pass can call it clean; a reviewer decides (the review desk)
    expect["ACC10010"] = "HELD"
    (root / "ACC10005").mkdir(exist_ok=True)
    expect["ACC10005"] = "EMPTY"
    two_dates = root / "ACC10006"
    write_study(two_dates, alex, "ACC10006", "20240303", "CT", 1, 2, size=size)
    ds = make_image(alex, "ACC10006", "20240304", "CT", 2, 1, size=size)
    ds.StudyInstanceUID = _uid("study", "ACC10006", 0)
    ds.save_as(two_dates / "late.dcm", enforce_file_format=True)
    expect["ACC10006"] = "ERROR"
    no_acc = root / "ACC10007"
    ds = make_image(richard, "", "20240305", "CT", 1, 1, size=size)
    no_acc.mkdir(exist_ok=True)
    ds.save_as(no_acc / "image.dcm", enforce_file_format=True)
    expect["ACC10007"] = "ERROR"
    write_study(root / "ACC10008.tmp", jane, "ACC10008", "20240306", "CT", 1, 2, size=size)
    expect["ACC10008.tmp"] = "in progress (not picked up)"
    return expect


def make_localizer(
    patient: Patient, accession: str, study_date: str, *, size: int = 512, seed: int = 0
) -> Dataset:
    """A CT localizer (scout) with the patient's name, sex, study date and birth date burned
    in, as some scanners print them, and nothing in the header saying so: ImageType
    ORIGINAL\\PRIMARY\\LOCALIZER, no BurnedInAnnotation (issue 22: a header can say an
    image is risky, never that it is clean)."""
    import cv2

    ds = make_image(patient, accession, study_date, "CT", 1, 1, size=size, seed=seed,
                    study_uid=_uid("study", accession, seed))  # fmt: skip
    ds.SeriesInstanceUID = _uid("series", accession, "localizer", seed)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = _uid("scout", accession, seed)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesDescription = "TOPOGRAM"
    ds.SeriesNumber = 100
    picture = anatomy_slice(size, seed + 7, "CT")
    last, _, first = patient.name.partition("^")
    lines = (
        f"{last}, {first.split('^')[0]}",
        f"{patient.sex}  DOB {patient.birth[6:8]}/{patient.birth[4:6]}/{patient.birth[:4]}",
        f"{study_date[:4]}-{study_date[4:6]}-{study_date[6:8]}",
    )
    ink = np.zeros(picture.shape, np.uint8)
    for n, line in enumerate(lines):
        cv2.putText(ink, line, (10, 24 + 20 * n), cv2.FONT_HERSHEY_SIMPLEX, 0.5, 255, 1,
                    cv2.LINE_AA)  # fmt: skip
    top = int(picture.max())
    picture = np.round(picture * (1 - ink / 255.0) + top * (ink / 255.0)).astype(np.uint16)
    ds.PixelData = picture.tobytes()
    return ds


def write_localizer(folder: Path, patient: Patient, accession: str, study_date: str) -> Path:
    """Write :func:`make_localizer`'s image into ``folder``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = make_localizer(patient, accession, study_date)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


US_MULTIFRAME = UID("1.2.840.10008.5.1.4.1.1.3.1")


def ultrasound_picture(rows: int, columns: int, seed: int = 0) -> np.ndarray:
    """An 8-bit ultrasound-like picture: a speckled fan on black (no text)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:columns]
    apex_x, apex_y = columns / 2, rows * 0.08
    radius = np.hypot(x - apex_x, y - apex_y)
    angle = np.degrees(np.arctan2(x - apex_x, y - apex_y))
    fan = (radius > rows * 0.05) & (radius < rows * 0.9) & (np.abs(angle) < 38)
    speckle = rng.gamma(2.0, 30.0, (rows, columns)) * np.exp(-radius / (rows * 1.2))
    return np.where(fan, np.clip(speckle, 0, 200), 0).astype(np.uint8)


def anatomy_slice(size: int = 512, seed: int = 0, modality: str = "CT") -> np.ndarray:
    """A 16-bit slice with realistic anatomy and no text (stored values, 12 bits): a body
    with fat, muscle and organs, two lungs with branching vessels, a spine, ribs and the
    table for CT; brain-like folds for MR. Smooth shapes, reconstruction blur and noise,
    with the small bright dots and thin edges a text screen must not take for text."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.zeros((size, size), np.float32)
    c = size / 2
    s = size / 512
    if modality == "MR":
        cv2.ellipse(img, (int(c), int(c)), (int(190 * s), int(230 * s)), 0, 0, 360, 900, -1)
        cv2.ellipse(img, (int(c), int(c)), (int(175 * s), int(215 * s)), 0, 0, 360, 600, -1)
        for _ in range(60):  # folds: gyri as thick bright curves
            x, y = rng.normal(c, 90 * s, 2)
            axes = (int(rng.uniform(10, 40) * s), int(rng.uniform(5, 20) * s))
            cv2.ellipse(img, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0,
                        float(rng.uniform(90, 300)), float(rng.uniform(700, 1100)),
                        max(1, int(rng.uniform(2, 6) * s)))  # fmt: skip
        cv2.ellipse(img, (int(c), int(c)), (int(25 * s), int(50 * s)), 0, 0, 360, 1500, -1)
        noise = 25
    else:
        air = 24  # stored value of air (intercept -1024)
        img[:] = air
        body = (int(c), int(c + 10 * s))
        cv2.ellipse(img, body, (int(220 * s), int(160 * s)), 0, 0, 360, 930, -1)  # fat
        cv2.ellipse(img, body, (int(205 * s), int(145 * s)), 0, 0, 360, 1064, -1)  # muscle
        for side in (-1, 1):  # lungs with vessels
            centre = (int(c + side * 95 * s), int(c - 5 * s))
            cv2.ellipse(img, centre, (int(75 * s), int(105 * s)), 0, 0, 360, 170, -1)
            for _ in range(45):
                x = centre[0] + rng.normal(0, 35 * s)
                y = centre[1] + rng.normal(0, 55 * s)
                r = max(1, int(rng.uniform(1, 4.5) * s))
                cv2.circle(img, (int(x), int(y)), r, float(rng.uniform(900, 1100)), -1)
                if rng.random() < 0.5:  # a branch
                    x2, y2 = x + rng.normal(0, 20 * s), y + rng.normal(0, 20 * s)
                    cv2.line(img, (int(x), int(y)), (int(x2), int(y2)), 1000.0,
                             max(1, r - 1))  # fmt: skip
        cv2.circle(img, (int(c), int(c - 20 * s)), int(28 * s), 1150, -1)  # heart / aorta
        cv2.circle(img, (int(c + 15 * s), int(c + 40 * s)), int(14 * s), 1200, -1)
        cv2.circle(img, (int(c), int(c + 115 * s)), int(26 * s), 1900, -1)  # vertebra
        cv2.circle(img, (int(c), int(c + 115 * s)), int(17 * s), 1350, -1)
        for k in range(-4, 5):  # ribs: thin bright arcs
            angle = 90 + k * 20
            x = c + 200 * s * np.cos(np.radians(angle)) * 0.93
            y = c + 10 * s + 145 * s * np.sin(np.radians(angle)) * 0.93
            cv2.ellipse(img, (int(x), int(y)), (int(9 * s), int(4 * s)), float(angle), 0,
                        360, 1800.0, -1)  # fmt: skip
        cv2.ellipse(img, (int(c), int(c + 200 * s)), (int(240 * s), int(30 * s)), 0, 180,
                    360, 600.0, max(1, int(4 * s)))  # table  # fmt: skip
        noise = 12
    blurred: np.ndarray = cv2.GaussianBlur(img, (0, 0), 1.0)
    blurred += rng.normal(0, noise, img.shape).astype(np.float32)
    return np.clip(blurred, 0, 4095).astype(np.uint16)


def burn_text(
    image: np.ndarray, text: str, x: int, y: int, *, height: int = 16, level: int = 255
) -> None:
    """Draw ``text`` into an 8-bit grey or RGB image, in place (Pillow's default font)."""
    from PIL import Image, ImageDraw, ImageFont

    canvas = Image.new("L", (image.shape[1], image.shape[0]), 0)
    ImageDraw.Draw(canvas).text((x, y), text, fill=255, font=ImageFont.load_default(height))
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    if image.ndim == 3:
        ink = ink[..., np.newaxis]
    image[...] = np.round(image * (1 - ink) + level * ink).astype(np.uint8)


def make_burned_in_ultrasound(
    patient: Patient,
    accession: str,
    study_date: str,
    instance: int,
    *,
    frames: int = 1,
    color: bool = False,
    rows: int = 384,
    columns: int = 512,
    seed: int = 0,
) -> Dataset:
    """An ultrasound image with the patient's name, id and the study date burned in: a banner
    above the imaging region (outside SequenceOfUltrasoundRegions) and the id inside it, so
    that masking the region's outside is not enough. No BurnedInAnnotation YES: the grey
    cine has none, the colour image says NO (header flags are not to be trusted)."""
    ds = make_image(patient, accession, study_date, "US", 1, instance, seed=seed)
    last, _, first = patient.name.partition("^")
    date = f"{study_date[4:6]}/{study_date[6:8]}/{study_date[:4]}"
    picture = ultrasound_picture(rows, columns, seed + instance)
    if color:
        picture = np.repeat(picture[..., np.newaxis], 3, axis=-1)
        picture[rows // 3 : rows // 3 + 20, columns // 2 - 30 : columns // 2 + 30] = (200, 40, 40)
    burn_text(picture, f"{last}, {first.split('^')[0]}", 8, 6, height=16)
    burn_text(picture, patient.mrn, 8, 26, height=16)
    burn_text(picture, f"{date} 08:35:12", columns - 170, 6, height=14)
    burn_text(picture, "MI 0.9  TIS 0.4", columns - 140, 26, height=12, level=200)
    burn_text(picture, f"ID {patient.mrn}", 40, rows - 60, height=14, level=230)
    region = Dataset()
    region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
    region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 46
    region.RegionLocationMaxX1, region.RegionLocationMaxY1 = columns - 1, rows - 1
    ds.SequenceOfUltrasoundRegions = Sequence([region])
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.StudyDescription = "US ABDOMEN"
    ds.SeriesDescription = "ABDOMEN"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if color:
        ds.BurnedInAnnotation = "NO"
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    if frames > 1:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = US_MULTIFRAME
        ds.NumberOfFrames = frames
        ds.FrameTime = 40.0
        ds.FrameIncrementPointer = 0x00181063
        rng = np.random.default_rng(seed)
        stack = []
        for _ in range(frames):  # the anatomy moves, the text does not
            moved = picture.copy()
            fan = ultrasound_picture(rows, columns, int(rng.integers(1 << 30)))
            below = slice(50, rows - 70)
            moved[below] = np.maximum(moved[below] // 2, fan[below] // 2)
            stack.append(moved)
        picture = np.stack(stack)
    ds.PixelData = np.ascontiguousarray(picture).tobytes()
    return ds


def write_burned_in_ultrasound(
    folder: Path,
    patient: Patient = PATIENTS[2],
    accession: str = "ACC10009",
    study_date: str = "20240307",
    *,
    frames: int = 8,
) -> list[Path]:
    """An ultrasound study with burned-in name, id and date: one grey multi-frame cine and
    one RGB image (for the pixel stage's demo and tests). Returns the file paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for instance, (count, color) in enumerate(((frames, False), (1, True)), 1):
        ds = make_burned_in_ultrasound(
            patient, accession, study_date, instance, frames=count, color=color
        )
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def make_screen_capture(
    patient: Patient,
    accession: str,
    study_date: str,
    *,
    rows: int = 384,
    columns: int = 512,
    frames: int = 1,
    report_on: tuple[int, ...] = (0,),
) -> Dataset:
    """A CT dose report saved as a screen capture (secondary capture, modality OT): the
    patient's name, id and date among a dozen lines of text that cover a large share of the
    picture. Masking that much text would hide whatever the screen shows, so the pixel
    stage holds it for a person to decide (``pixel_mask_max_share``). ``frames`` > 1: a
    screen recording of that many frames, the report on the frames ``report_on`` (0-based)
    only, the others the empty screen (a reviewer's frame strip has something to show)."""
    ds = make_image(patient, accession, study_date, "OT", 1, 1)
    last, _, first = patient.name.partition("^")
    date = f"{study_date[4:6]}/{study_date[6:8]}/{study_date[:4]}"
    picture = np.full((rows, columns), 24, dtype=np.uint8)
    lines = (
        "CT DOSE REPORT",
        f"{last}, {first.split('^')[0]}",
        f"ID {patient.mrn}   {date} 09:12:40",
        "Series  Scan      CTDIvol  DLP",
        "1       Scout     0.12     1.5",
        "2       Helical   11.40    412.8",
        "3       Helical   11.38    409.9",
        "Total DLP 824.2 mGy*cm",
        "Phantom 32 cm body",
        "Operator RT on duty",
    )
    for i, line in enumerate(lines):
        burn_text(picture, line, 16, 14 + i * 34, height=22, level=235)
    # not SECONDARY: deid's default blacklist drops a secondary capture of modality OT unseen
    ds.ImageType = ["DERIVED", "PRIMARY", "SCREEN SAVE"]
    ds.ConversionType = "WSD"
    ds.StudyDescription = "CT ABDOMEN DOSE"
    ds.SeriesDescription = "DOSE REPORT"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if frames > 1:
        empty = np.full((rows, columns), 24, dtype=np.uint8)
        picture = np.stack([picture if f in report_on else empty for f in range(frames)])
        ds.NumberOfFrames = frames
    ds.PixelData = picture.tobytes()
    return ds


def write_screen_capture(
    folder: Path,
    patient: Patient,
    accession: str,
    study_date: str,
    *,
    frames: int = 1,
    report_on: tuple[int, ...] = (0,),
) -> list[Path]:
    """A study of one dose-report screen capture (held for review in the demo); ``frames``
    and ``report_on`` as :func:`make_screen_capture`."""
    folder.mkdir(parents=True, exist_ok=True)
    ds = make_screen_capture(patient, accession, study_date, frames=frames, report_on=report_on)
    path = folder / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return [path]


def make_bench_corpus(root: Path, studies: int, images: int, size: int = 512) -> int:
    """CT studies of ``images`` 512x512 16-bit files each; returns total bytes."""
    total = 0
    for n in range(studies):
        patient = PATIENTS[n % len(PATIENTS)]
        acc = f"BENCH{n:05d}"
        for p in write_study(
            root / acc, patient, acc, "20240115", "CT", 1, images, size=size, seed=n
        ):
            total += p.stat().st_size
    return total


def main(argv: list[str] | None = None) -> int:
    """``sendit-sample DIR``: write the demo input folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--size", type=int, default=64, help="image rows/columns")
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    args = parser.parse_args(argv)
    if args.output.exists() and args.force:
        shutil.rmtree(args.output)
    for name, what in make_demo_input(args.output, args.size).items():
        print(f"{os.path.join(str(args.output), name)}: expect {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
