"""Names in other character sets and written differently in free text: every form is found by
the leak check and removed by Clean Descriptors' redact (one matcher serves both).

Datasets are written to bytes with their SpecificCharacterSet and read back, so pydicom's
decoding really runs (ISO 2022 escape sequences included) before the needles are collected.
"""

from __future__ import annotations

import io

import pydicom
import pytest
from pydicom.data import get_charset_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from sendit_ops.dicom.identifiers import IdentifierMatcher, collect_needles
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.packaging.archive import header_bytes

pytestmark = pytest.mark.unit

JAPANESE = "Yamada^Tarou=山田^太郎=やまだ^たろう"
KOREAN = "Hong^Gildong=洪^吉洞=홍^길동"
FREE_TEXT = ("StudyDescription", "SeriesDescription", "ImageComments")

# (character set, patient name, escape bytes the encoded file must hold, free-text forms)
CASES = [
    (
        "ISO_IR 100",
        "MÜLLER^JOSÉ",
        "MÜLLER".encode("latin-1"),
        ["CT for Jose Muller", "jose muller", "MULLER", "Müller, José", "Jose Mueller"],
    ),
    (
        "ISO_IR 192",
        "MÜLLER^JOSÉ",
        "MÜLLER".encode(),
        ["jose muller", "JOSE MULLER CT", "José Müller"],
    ),
    (
        "ISO_IR 192",
        JAPANESE,
        "山田".encode(),
        [
            "山田太郎 胸部CT",
            "山田 太郎",
            "山田 CT",
            "たろう やまだ",
            "ヤマダ タロウ",
            "Tarou YAMADA",
        ],
    ),
    (
        ["", "ISO 2022 IR 87"],
        JAPANESE,
        b"\x1b$B",
        ["山田太郎 胸部CT", "山田 太郎", "山田 CT", "たろう やまだ", "胸部CT 太郎", "yamada tarou"],
    ),
    (
        ["", "ISO 2022 IR 149"],
        KOREAN,
        b"\x1b$)C",
        ["홍길동 CT", "길동 홍", "洪吉洞", "洪 CT", "Gildong Hong", "CT 길동님"],
    ),
]
IDS = ["latin1-muller", "utf8-muller", "utf8-yamada", "ir87-yamada", "ir149-hong"]


def _round_trip(
    charset: str | list[str], name: str, texts: dict[str, str]
) -> tuple[Dataset, bytes]:
    """A dataset with this character set, written to bytes and read back (decoded); an
    original when ``name`` is given, else an output (other UIDs, dates)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    uid = "1.2.3.4.5.6.7" if name else "2.25.1234"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = uid
    ds.SpecificCharacterSet = charset
    if name:
        ds.PatientName = name
        ds.PatientID = "12-345-678"
        ds.StudyDate = "20240115"
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    for keyword, value in texts.items():
        setattr(ds, keyword, value)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return pydicom.dcmread(io.BytesIO(data)), data


@pytest.mark.parametrize(("charset", "name", "encoded", "forms"), CASES, ids=IDS)
def test_every_written_form_of_the_name_is_caught_and_redacted(charset, name, encoded, forms):
    original, data = _round_trip(charset, name, {})
    assert encoded in data  # the name really went through this character set
    assert str(original.PatientName) == name  # ... and was decoded on reading
    scanner = LeakScanner(collect_needles(original))
    for form in forms:
        # written into each kept free-text element of an output header
        out, _ = _round_trip(charset, "", dict.fromkeys(FREE_TEXT, form))
        places = scanner.scan_dataset(out)
        assert [p.split()[-1] for p in places] == list(FREE_TEXT), form
        assert not any(form in p for p in places)  # places named, never the value
        cleaned = scanner.redact(form)
        assert "[removed]" in cleaned
        assert not scanner.hits(cleaned), form


@pytest.mark.parametrize(("charset", "name", "encoded", "forms"), CASES, ids=IDS)
def test_redact_keeps_the_rest_of_the_text(charset, name, encoded, forms):
    original, _ = _round_trip(charset, name, {})
    scanner = LeakScanner(collect_needles(original))
    text = f"CT chest w/o contrast; {forms[0]}; follow-up 3 months"
    cleaned = scanner.redact(text)
    assert cleaned.startswith("CT chest w/o contrast; ")
    assert cleaned.endswith("; follow-up 3 months")
    assert not scanner.hits(cleaned)


@pytest.mark.parametrize(("charset", "name", "encoded", "forms"), CASES, ids=IDS)
def test_raw_header_bytes_are_searched_in_the_study_character_set(charset, name, encoded, forms):
    """The archive check reads each member's raw header bytes: a name encoded as ISO 2022
    (escape sequences, JIS/KS X 1001 bytes) or UTF-8 must be found there too."""
    original, _ = _round_trip(charset, name, {})
    scanner = LeakScanner(collect_needles(original))
    for form in forms:
        _, data = _round_trip(charset, "", {"StudyDescription": form})
        assert scanner.hits_bytes(header_bytes(data)), form
    _, clean = _round_trip(charset, "", {"StudyDescription": "CT CHEST"})
    assert not scanner.hits_bytes(header_bytes(clean))


def test_cjk_names_need_no_word_boundaries_but_latin_ones_do():
    original, _ = _round_trip(["", "ISO 2022 IR 87"], JAPANESE, {})
    matcher = IdentifierMatcher(collect_needles(original))
    assert matcher.hits("患者山田太郎様")  # inside a run of kanji
    assert matcher.hits("山田")  # a 2-kanji part alone
    assert not matcher.hits("胸部CT 造影")
    assert not matcher.hits("YAMADAX")  # a Latin part needs its word boundaries
    korean, _ = _round_trip(["", "ISO 2022 IR 149"], KOREAN, {})
    matcher = IdentifierMatcher(collect_needles(korean))
    assert matcher.hits("洪")  # one hanja is a whole surname
    assert not matcher.hits("홍보 CT")  # one hangul syllable alone is not a needle
    assert matcher.redact("홍길동 CT") == "[removed] CT"  # ... but goes with the name


@pytest.mark.parametrize(
    ("file", "forms"),
    [
        ("chrH31.dcm", ["山田太郎 胸部CT", "山田 CT", "たろう やまだ", "ﾔﾏﾀﾞ ﾀﾛｳ", "Tarou Yamada"]),
        ("chrH32.dcm", ["ヤマダ タロウ", "山田 CT", "やまだたろう"]),
        ("chrJapMulti.dcm", ["たろう やまだ", "やまだたろう"]),
        ("chrI2.dcm", ["홍길동", "洪吉洞", "gildong hong"]),
        ("chrX1.dcm", ["王小東", "xiaodong wang", "Wang Xiaodong"]),
        ("chrGerm.dcm", ["Rudiger Aneas", "ANEAS", "rüdiger"]),
        ("chrFren.dcm", ["Jerome Buc", "JEROME"]),
        ("chrGreek.dcm", ["ΔΙΟΝΥΣΙΟΣ", "Διονύσιος"]),
        ("chrRuss.dcm", ["{upper}"]),
        ("chrHbrw.dcm", ["{given} {family}"]),
    ],
)
def test_pydicom_character_set_files(file: str, forms: list[str]):
    """pydicom's own character-set test files (decoded by pydicom with their charsets)."""
    ds = pydicom.dcmread(get_charset_files(file)[0])
    scanner = LeakScanner(collect_needles(ds))
    family, _, given = str(ds.PatientName).partition("^")
    for form in forms:
        form = form.format(upper=family.upper(), family=family, given=given)
        assert scanner.hits(f"CT {form} follow-up"), form
        assert not scanner.hits(scanner.redact(f"CT {form} follow-up")), form
    assert not scanner.hits("CT CHEST follow-up 3 months")
