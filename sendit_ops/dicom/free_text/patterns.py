"""Identifying information that has a shape: e-mail addresses, URLs, dates, phone and fax
numbers, record numbers and other ids, ages over 89, street addresses and institutions.

Each detector is a function ``text -> list[Finding]``. Labels ("tel", "MRN", "Fallnummer",
"тел.", "電話") are read in English, German, French, Spanish, Italian, Greek, Russian and
Japanese; unlabelled numbers count by their shape (a phone number as ``phonenumbers`` reads
it, a long digit run as an id). Everything is matched on the text as written; the names of
months are matched case-insensitively.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import phonenumbers

from sendit_ops.dicom.free_text.institutions import NOT_A_PLACE
from sendit_ops.dicom.free_text.model import Finding, Kind

_I = re.IGNORECASE

# ---- e-mail, URL ---------------------------------------------------------------------------

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"(?:\b(?:https?|ftp)://|\bwww\.)[^\s<>\"]+", _I)


def emails(text: str) -> list[Finding]:
    """E-mail addresses."""
    return [Finding(m.start(), m.end(), Kind.EMAIL) for m in _EMAIL.finditer(text)]


def urls(text: str) -> list[Finding]:
    """URLs (any: a link in a patient's record names the record)."""
    out = []
    for m in _URL.finditer(text):
        end = m.end()
        while end > m.start() and text[end - 1] in ".,;:)]}'":
            end -= 1
        out.append(Finding(m.start(), end, Kind.URL))
    return out


# ---- dates -------------------------------------------------------------------------------

_MONTH_WORDS = (
    (
        "january jan januar janvier janv enero ene gennaio januari январь января янв ιανο "
        "υαρίου ιανουάριος ιαν"
    ),
    (
        "february feb februar februari février fevrier févr fevr febrero febbraio февраль "
        "февраля фев φεβρουαρίου φεβρουάριος φεβ"
    ),
    ("march mar märz maerz marz mars marzo maart март марта μαρτίου μάρτιος μαρ"),
    ("april apr avril avr abril aprile апрель апреля апр απριλίου απρίλιος"),
    ("may mai mayo maggio mei май мая μαΐου μάιος"),
    ("june jun juni juin junio giugno июнь июня ιουνίου ιούνιος"),
    ("july jul juli juillet juil julio luglio июль июля ιουλίου ιούλιος"),
    ("august aug august août aout agosto augustus август августа αυγούστου αύγουστος"),
    (
        "september sep sept septembre septiembre settembre сентябрь сентября сен σεπτεμβρ "
        "ίου σεπτέμβριος"
    ),
    ("october oct oktober octobre octubre ottobre okt октябрь октября окт οκτωβρίου οκ τώβριος"),
    ("november nov novembre noviembre ноябрь ноября ноя νοεμβρίου νοέμβριος"),
    (
        "december dec dezember décembre decembre diciembre dicembre dez декабрь декабря д "
        "ек δεκεμβρίου δεκέμβριος"
    ),
)

MONTHS: dict[str, int] = {w: n for n, ws in enumerate(_MONTH_WORDS, 1) for w in ws.split()}
_MON = "(?:" + "|".join(sorted(map(re.escape, MONTHS), key=len, reverse=True)) + r")\.?"
_Y4 = r"(?:1[89]\d\d|20\d\d)"
_DAY = r"(?:0?[1-9]|[12]\d|3[01])"
_ORD = r"(?:st|nd|rd|th|er|e|º|°)?"
_B = r"(?<![\w.])"  # not inside a word or a decimal number
_E = r"(?![\w]|\.\d)"
_DATE_FORMS = [
    # 2021-11-02, 2021/11/02, 2021.11.02, 20211102
    rf"{_B}(?P<iy>{_Y4})(?P<is>[-/.])(?P<im>0?[1-9]|1[0-2])(?P=is)(?P<id>{_DAY}){_E}",
    rf"{_B}(?P<cy>{_Y4})(?P<cm>0[1-9]|1[0-2])(?P<cd>0[1-9]|[12]\d|3[01]){_E}",
    # 14.03.2019, 03/14/2019, 5/6/23, 12-03-2021
    rf"{_B}(?P<n1>\d{{1,2}})(?P<ns>[-/.])(?P<n2>\d{{1,2}})(?P=ns)(?P<ny>{_Y4}|\d\d){_E}",
    # 3 March 2021, 3. Mai 2022, 1st of May 2021, 4 de marzo de 2022, 12 Jan 2020, 24-MAY-02
    rf"{_B}(?P<td>{_DAY}){_ORD}\.?(?:[\s-]+(?:of|de|del)\s+|[\s-]*)(?P<tm>{_MON})(?:,?(?:\s+de)?[\s-]*(?P<ty>{_Y4}|\d\d(?![\d:])))?{_E}",
    # June 3, 2022; May 9th, 2021; Feb 28 2023; August 14th
    rf"(?<!\w)(?P<wm>{_MON})\s*(?P<wd>{_DAY}){_ORD}(?:,?\s*(?P<wy>{_Y4}))?{_E}",
    # March 2018, janvier 2020, 10/2021
    rf"(?<!\w)(?P<mm>{_MON})\s+(?P<my>{_Y4}){_E}",
    rf"{_B}(?P<pm>0?[1-9]|1[0-2])/(?P<py>{_Y4}){_E}",
    # 2021年3月15日, 2021년 3월 15일
    r"(?P<jy>\d{4})\s*[年년]\s*(?P<jm>\d{1,2})\s*[月월]\s*(?:(?P<jd>\d{1,2})\s*[日일])?",
]
_DATE = re.compile("|".join(_DATE_FORMS), _I)


def _year(text: str | None) -> int | None:
    if not text:
        return None
    y = int(text)
    return y if len(text) == 4 else (2000 + y if y < 50 else 1900 + y)


def _valid(y: int | None, m: int | None, d: int | None) -> tuple[int, int, int] | None:
    if y is None or m is None or d is None or not (1 <= m <= 12 and 1 <= d <= 31):
        return None
    import datetime

    try:
        datetime.date(y, m, d)
    except ValueError:
        return None
    return (y, m, d)


def _month(word: str | None) -> int | None:
    return MONTHS.get(word.lower().rstrip(".")) if word else None


def dates(text: str) -> list[Finding]:
    """Dates in numeric and written forms, with or without a year; a complete date carries
    its (year, month, day) for shifting. Day and month order of ``01/02/2020``: day first
    unless that is impossible (the study's own dates are matched in both orders elsewhere)."""
    out = []
    for m in _DATE.finditer(text):
        g = m.groupdict()
        ymd = None
        if g["iy"]:
            ymd = _valid(int(g["iy"]), int(g["im"]), int(g["id"]))
        elif g["cy"]:
            ymd = _valid(int(g["cy"]), int(g["cm"]), int(g["cd"]))
        elif g["n1"]:
            a, b, y = int(g["n1"]), int(g["n2"]), _year(g["ny"])
            if g["ns"] == "." and len(g["ny"]) == 2 and a > 12 and b > 12:
                continue  # a version or a measurement, not a date
            ymd = _valid(y, b, a) or _valid(y, a, b)
            if ymd is None:
                continue
        elif g["tm"]:
            ymd = _valid(_year(g["ty"]), _month(g["tm"]), int(g["td"]))
        elif g["wm"]:
            if g["wm"].lower() in ("may", "mar", "jun", "jul", "aug", "dec", "sep") and not (
                g["wy"] or g["wm"][:1].isupper()
            ):
                continue  # "may 5 mm": a verb, not a month
            ymd = _valid(_year(g["wy"]), _month(g["wm"]), int(g["wd"]))
        elif g["jy"]:
            ymd = _valid(int(g["jy"]), int(g["jm"]), int(g["jd"])) if g["jd"] else None
        out.append(Finding(m.start(), m.end(), Kind.DATE, ymd))
    return out


# ---- phone and fax numbers -----------------------------------------------------------------

_PHONE_LABEL = (
    r"(?:tel|tél|tele?phone|téléphone|telefon|teléfono|telefono|phone|ph|mobile|mobil|móvil|"
    r"cell|handy|portable|fax|telefax|pager|bleep|beeper|ext|extension|durchwahl|"
    r"τηλ|τηλέφωνο|κιν|тел|телефон|моб|факс|電話|携帯|連絡先|内線|ファックス|"
    r"appeler au|joignable au|llamar al|rückruf unter|unter|at)"
)
_PHONE_BODY = r"\+?\(?\d[\d\s().\-/]{1,18}\d"
_LABELLED_PHONE = re.compile(
    rf"(?<!\w){_PHONE_LABEL}\.?(?:\s*(?:no|nr|n°|#)\.?)?\s*[:.]?\s*(?P<p>{_PHONE_BODY}|\d{{3,6}})",
    _I,
)
_PHONE_SHAPES = re.compile(
    r"(?<![\w.+])(?:"
    r"\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}"  # +1 312 555 0123, +7 495 123-45-67
    r"|\(\d{3}\)\s?\d{3}[\s.-]\d{4}"  # (617) 555-0199
    r"|1-\d{3}-\d{3}-\d{4}"  # 1-800-555-0175
    r"|\d{3}[.-]\d{3}[.-]\d{4}"  # 555.301.2288
    r"|\d{3}\s\d{3}\s\d{4}"  # 555 867 5309
    r"|\d{3}\s\d{4}"  # 555 0199
    r"|\d{3}-\d{4}"  # 555-0142 (a local number)
    r"|0\d{1,4}[\s-]\d{2,4}(?:[\s-]\d{2,4}){1,3}"  # 030 1234567, 06 12 34 56 78, 03-1234-5678
    r")(?![\w]|[.,]\d)"
)
# regions whose numbers are read without a + prefix (phonenumbers' valid numbers)
_REGIONS = ("US", "GB", "DE", "FR", "ES", "IT", "GR", "RU", "JP")


def phones(text: str) -> list[Finding]:
    """Phone and fax numbers: after a label any digit run; without one, the shapes phone
    numbers are written in, and what ``phonenumbers`` finds valid for the regions above."""
    out = []
    for m in _LABELLED_PHONE.finditer(text):
        body = m.group("p")
        if sum(c.isdigit() for c in body) >= 3:
            end = m.start("p") + len(body.rstrip(" .-/("))
            if (
                m.group(0).lower().startswith(("at", "unter"))
                and sum(c.isdigit() for c in body) < 7
            ):
                continue  # "at 15:40", "unter 3 Tagen": a label only with a long number
            out.append(Finding(m.start("p"), end, Kind.PHONE))
    out += [Finding(m.start(), m.end(), Kind.PHONE) for m in _PHONE_SHAPES.finditer(text)]
    if sum(c.isdigit() for c in text) >= 8:
        for region in _REGIONS:
            for match in phonenumbers.PhoneNumberMatcher(
                text, region, leniency=phonenumbers.Leniency.VALID
            ):
                out.append(Finding(match.start, match.end, Kind.PHONE))
    return out


# ---- ids -----------------------------------------------------------------------------------

_ID_LABEL = (
    r"(?:mrn|mr\s?#|mr\s?no|med(?:ical)?\s+record(?:\s+(?:number|no))?|record|chart|"
    r"acc(?:ession)?(?:\s+(?:number|no|nr))?|acct|account|ssn|soc\.?\s?sec|nhs(?:\s+number)?|"
    r"medicare|medicaid|insurance(?:\s+(?:member\s+)?id)?|member\s+id|policy|claim(?:\s+no)?|"
    r"case|visit(?:\s+id)?|order(?:\s*#)?|requisition|encounter|id|ipp|nip|nir|nhc|dni|nie|"
    r"historia|número de historia|dossier|numéro de dossier|n°\s+de\s+sécurité\s+sociale|"
    r"sécurité sociale|fallnummer|fall-?nr|aktenzeichen|versichertennummer|mitgliedsnr|"
    r"auftragsnummer|patienten-id(?:\s+extern)?|pat\.?-?id|codice fiscale|tessera sanitaria|"
    r"αριθμός μητρώου|αμκα|μητρώου|номер истории болезни|номер|полис|снилс|"
    r"患者id|患者番号|カルテ番号|番号|film library number|library number)"
)
_ID_VALUE = r"#?[A-Z0-9\-/]*\d[A-Z0-9\-/]*(?:\s\d{1,4}){0,6}"
_LABELLED_ID = re.compile(
    rf"(?<!\w){_ID_LABEL}\.?\s*(?:number|no|nr|n°|#)?\.?\s*[:#]?\s*(?P<v>{_ID_VALUE})", _I
)
# a token holding a long digit run, or letters and digits mixed like a record number
_ID_TOKEN = re.compile(r"(?<![\w.#/-])#?[A-Za-z0-9][A-Za-z0-9-]*(?![\w]|[.,/]\d)")
_SSN = re.compile(r"(?<!\d)\d{3}-\d{2}-\d{4}(?!\d)")


def _id_like(token: str) -> bool:
    digits = sum(c.isdigit() for c in token)
    letters = sum(c.isalpha() for c in token)
    if digits >= 5:
        return True
    return digits >= 4 and letters >= 1 and len(token) >= 8


def ids(text: str) -> list[Finding]:
    """Record, account, accession, insurance and social security numbers: after a label any
    token with a digit; without one, a token with 5 or more digits (or letters and 4 digits,
    8 characters long). Dates and phone numbers found elsewhere win over this."""
    out = []
    for m in _LABELLED_ID.finditer(text):
        value = m.group("v").rstrip(" -/")
        out.append(Finding(m.start("v"), m.start("v") + len(value), Kind.ID))
    for m in _ID_TOKEN.finditer(text):
        if _id_like(m.group(0)):
            out.append(Finding(m.start(), m.end(), Kind.ID))
    out += [Finding(m.start(), m.end(), Kind.ID) for m in _SSN.finditer(text)]
    return out


# ---- ages over 89 --------------------------------------------------------------------------

_AGE = re.compile(
    r"(?<![\w.])(?P<a>\d{2,3})\s*(?:-|\s)?\s*(?:years?[\s-]*old|year-old|yrs?\b|y/?o\b|y\.o\.|"
    r"jahre?\b|j\.|jährig\w*|ans\b|años\b|anni\b|лет\b|года\b|год\b|ετών\b|χρονών\b|歳|才)"
    r"|(?<!\w)(?:age[d]?|alter|âge|edad|età|возраст|ηλικία)\s*:?\s*(?P<b>\d{2,3})(?!\d)",
    _I,
)


def ages(text: str) -> list[Finding]:
    """Ages over 89 (HIPAA: aggregated into one category), in years; the number only."""
    out = []
    for m in _AGE.finditer(text):
        group = "a" if m.group("a") else "b"
        if int(m.group(group)) > 89:
            out.append(Finding(m.start(group), m.end(group), Kind.AGE))
    return out


# ---- addresses and institutions ------------------------------------------------------------

_CAP = r"[A-ZÀ-ÖØ-Þ][\w'’.-]*"
_STREET_EN = (
    r"(?:street|st|road|rd|avenue|ave|av|lane|ln|drive|dr|boulevard|blvd|way|court|ct|place|"
    r"pl|terrace|close|crescent|highway|hwy|parkway|pkwy|square|sq|row|walk|grove)"
)
_UNIT = r"(?:,?\s*(?:apt|apartment|suite|ste|unit|flat|#)\.?\s*[\w-]+)?"
_ADDRESS_FORMS = [
    # 12 Elm Street, 4410 Brookside Avenue, Apt 3B, 221B Baker Street
    rf"(?<!\w)\d{{1,5}}[A-Za-z]?\s+(?:{_CAP}\s+){{0,3}}{_CAP}\s+{_STREET_EN}\b\.?{_UNIT}",
    # Lindenstraße 14, Hauptstr. 5, Gartenweg 7, Am Mühlbach 23a
    r"(?<!\w)[A-ZÄÖÜ][\wäöüß-]*(?:straße|strasse|str\.|weg|gasse|allee|platz|ring|damm|ufer|"
    r"steig|pfad|chaussee)\s*\d{1,4}\s?[a-z]?\b",
    r"(?<!\w)(?:Am|An der|An den|Im|In der|Auf dem|Auf der|Zum|Zur|Unter den)\s+"
    r"[A-ZÄÖÜ][\wäöüß-]+\s+\d{1,4}\s?[a-z]?\b",
    # 8 rue des Lilas, 24 avenue Victor Hugo, 12 boulevard Haussmann
    r"(?<!\w)\d{1,4}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|chemin|place|allée|"
    r"impasse|quai|route|cours|square)\s+(?:(?:de la|de l'|des|du|de|d'|la|le)\s*)?"
    rf"{_CAP}(?:[\s-]+{_CAP}){{0,3}}",
    # Calle Mayor 15, Avenida de la Constitución 42, Via Roma 21, Οδός Ερμού 25, ул. Ленина, д. 12
    r"(?<!\w)(?:calle|c/|avenida|avda\.|plaza|paseo|camino|carrer|carretera|ronda|via|viale|"
    r"piazza|corso|vicolo|largo|rua|οδός|οδ\.|λεωφόρος|λεωφ\.|ул\.|улица|пр\.|проспект|пер\.|"
    r"переулок|шоссе)\s+(?:(?:de la|de los|de las|del|de|di|della)\s+)?"
    r"[\wÀ-ÿ.'-]+(?:\s+[\wÀ-ÿ.'-]+){0,3}?,?\s*(?:д\.\s*|n[º°o]\.?\s*)?\d{1,4}[a-zA-Z]?\b",
    # PO Box 4471
    r"(?<!\w)P\.?\s?O\.?\s+Box\s+\d+",
    # Springfield, IL 62704; Bedford MA 01730; Austin TX 78765
    rf"(?<!\w){_CAP}(?:\s{_CAP})?,?\s+[A-Z]{{2}}\s+\d{{5}}(?:-\d{{4}})?\b",
    # 80331 München, 69002 Lyon, 41001 Sevilla (5-digit postcode and a town)
    r"(?<![\w.,])\d{5}\s+[A-ZÄÖÜÀ-Þ][a-zäöüßà-ÿ]+(?:[\s-][A-ZÄÖÜ][a-zäöüß]+)?",
    # London NW1 6XE (UK postcode)
    rf"(?<!\w)(?:{_CAP},?\s+)?[A-Z]{{1,2}}\d[A-Z\d]?\s\d[A-Z]{{2}}\b",
    # 東京都港区芝公園4-2-8, 大阪市北区梅田1-1-3
    r"(?:[\u4e00-\u9fff]{1,3}[都道府県])?[\u4e00-\u9fff]{1,4}[市区町村郡]"
    r"[\u4e00-\u9fff\u3040-\u30ff]*[0-9０-９]+(?:[-－ー丁目番地号の][0-9０-９]*)*",
]
_ADDRESS = re.compile("|".join(f"(?:{f})" for f in _ADDRESS_FORMS), _I)
# _ADDRESS is case-insensitive for street words; the forms that rely on capitals are
# checked again case-sensitively
_ADDRESS_CASED = re.compile("|".join(f"(?:{f})" for f in _ADDRESS_FORMS[6:9]))

_FACILITY_WORDS = [
    "Hospital", "Clinic", "Medical Center", "Medical Centre", "Imaging Center", "Imaging Centre",
    "Health Center", "Health Centre", "Heart Institute", "Institute", "Infirmary",
    "Nursing Home", "Hospice", "Klinikum", "Klinik", "Krankenhaus", "Praxis", "Pflegeheim",
    "Spital", "Uniklinik", "Universitätsklinikum", "Universitätsklinik", "Uniklinikum",
    "Universitätsspital", "Kantonsspital", "Hôpital", "Hopital", "Clinique", "CHU", "CHR",
    "Centre Hospitalier", "Clínica", "Clinica", "Sanatorio", "Centro de Salud", "Ospedale",
    "Policlinico", "Casa di Cura", "Νοσοκομείο", "Κλινική", "Больница", "Поликлиника",
    "Клиника", "Госпиталь",
]  # fmt: skip
# capitalised (a named place), or all capitals; "the hospital" names no place
_FACILITY_WORDS_RE = (
    "(?:"
    + "|".join(
        sorted(
            {re.escape(w) for f in _FACILITY_WORDS for w in (f, f.upper())}, key=len, reverse=True
        )
    )
    + ")"
)
_FACILITY_LINK = (
    r"(?:am|an der|de la|de l'|del|de|di|du|des|St\.?|Saint|Sainte|San|Santa|Sant'|Santo)"
)
_SAINT = "(?:St|Saint|Sainte|San|Santa)"
_FACILITY = re.compile(
    # Mercy General Hospital, St. Elsewhere Clinic, Northside Imaging Center
    rf"(?<!\w)(?:(?:St\.?|Saint|San|Santa|Sainte|Mount|Mt\.?)\s+)?(?:{_CAP}\s+){{0,3}}{_CAP}\s+{_FACILITY_WORDS_RE}\b"
    # Hospital San Rafael, Klinikum Nord, Krankenhaus St. Georg, CHU de Nantes, Praxis am Markt
    rf"|(?<!\w){_FACILITY_WORDS_RE}\s+(?:{_FACILITY_LINK}\s+|{_SAINT}-)?{_CAP}(?:[\s-]{_CAP}){{0,2}}"
    # 東京大学病院
    r"|[\u4e00-\u9fff\u30a0-\u30ff]{2,10}(?:病院|医院|クリニック|診療所|医療センター)"
    # St. Mary's, Saint Luke's (a hospital by its saint)
    r"|(?<!\w)(?:St\.?|Saint)\s[A-Z][a-z]+['’]s\b"
    # Mount Sinai, Mt. Auburn, St Mary, Saint-Louis: a saint's or a mountain's name before a
    # capitalised word is a place (a hospital, a town) in a radiology text, never anatomy
    rf"|(?<![\w.])(?:St\.?|Saint|Sainte|Mount|Mt\.?|SAINTE?|MOUNT)[\s-]{_CAP}(?:-{_CAP})?"
    # l'Hôpital Lariboisière
    rf"|(?<!\w)l'(?:Hôpital|hôpital|Hopital)\s+{_CAP}",
)


_FACILITY_PARTS = frozenset(w.lower() for f in _FACILITY_WORDS for w in f.split())


def _facility_ok(text: str, m: re.Match[str]) -> bool:
    """A facility needs a capitalised name word that is not the facility word itself (not
    "Radiology" alone, not "the hospital")."""
    words = re.findall(r"[^\W\d_]+", m.group(0))
    if re.search(r"[\u3040-\u9fff]", m.group(0)):
        return True
    # a word naming the place: not only facility words, departments and "Outside", "Other"
    # ("Outside Hospital", "Heart Institute", "ENT Clinic" name no place)
    naming = [w for w in words if w.lower() not in _FACILITY_PARTS | NOT_A_PLACE]
    return len(words) >= 2 and bool(naming) and any(w[:1].isupper() for w in words[1:] + words[:1])


def addresses(text: str) -> list[Finding]:
    """Street addresses, postcodes with towns, PO boxes, Japanese addresses, and named
    hospitals, clinics and practices (another site locates the patient)."""
    out = []
    for m in _ADDRESS.finditer(text):
        if _ADDRESS_CASED.fullmatch(m.group(0)) is None and any(
            re.fullmatch(f, m.group(0), _I) for f in _ADDRESS_FORMS[6:9]
        ):
            continue  # a postcode form matched only because case was ignored
        out.append(Finding(m.start(), m.end(), Kind.ADDRESS))
    for m in _FACILITY.finditer(text):
        if _facility_ok(text, m):
            out.append(Finding(m.start(), m.end(), Kind.ADDRESS))
    return out


def all_patterns(text: str) -> Iterator[Finding]:
    """Every shaped finding of ``text`` (overlaps resolved by the caller)."""
    for detector in (emails, urls, dates, phones, ids, ages, addresses):
        yield from detector(text)
