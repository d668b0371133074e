"""sendit settings: defaults, validation, and the input-folder list (one DAG per folder).

Settings are plain JSON (an Airflow Variable ``sendit_settings``); names follow sendit's
config.py in lower case so a sendit user recognises them. Validation happens before any batch
is touched, and every problem is reported in one readable message.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sendit_ops.core.errors import ConfigError

SETTINGS_VARIABLE = "sendit_settings"
INPUT_FOLDERS_VARIABLE = "sendit_input_folders"
SECRET_KEY_VARIABLE = "sendit_secret_key"
PROVIDERS = ("local", "dasher")
# burned-in text: "ocr" finds, masks and verifies text in every image that may carry it;
# "recipe" masks only the deid graylist / ultrasound-region boxes (and still verifies with
# OCR when an engine is installed); "off" refuses every image that may carry text
PIXEL_CLEANING = ("ocr", "recipe", "off")
OCR_ENGINES = ("rapidocr",)
# which images the pixel stage looks at: "all" screens every frame of every image for text
# (header risk only makes it read harder); "header" looks only at images whose header says
# they may carry text (the weaker behaviour before issue 22, recorded where it is used)
PIXEL_SCREENING = ("all", "header")
# where OCR runs: "auto" uses CUDA when onnxruntime-gpu's provider loads, else the CPU
PIXEL_DEVICES = ("auto", "cpu", "cuda")
# when an image is held back (pixels not verified clean, undecodable): hold its whole study
# for review ("study"), or deliver the rest of the study without it ("image")
PIXEL_HOLD = ("study", "image")
# PS3.15 Annex E options (CID 7050) on top of the Basic Application Level Confidentiality
# Profile; the defaults suit research use (docs/configuration.md says what each keeps)
DEID_OPTIONS = (
    "retain_longitudinal_modified_dates",
    "retain_longitudinal_full_dates",
    "retain_patient_characteristics",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_uids",
    "retain_safe_private",
    "clean_descriptors",
    "clean_structured_content",
    "clean_graphics",
)
DEFAULT_DEID_OPTIONS = (
    "retain_longitudinal_modified_dates",
    "retain_patient_characteristics",
    "clean_descriptors",
)
# the text attributes kept under Clean Descriptors (cleaned of identifying information, see
# docs/deid_profile.md): the descriptions a research team searches by; every other attribute
# the option would clean (comments, histories, reasons, diagnoses) gets the Basic Profile's
# action (removed) unless the site lists it here; "all" keeps every one the option allows
DEFAULT_CLEAN_DESCRIPTOR_ATTRIBUTES = (
    "StudyDescription", "SeriesDescription", "ProtocolName", "AcquisitionProtocolDescription",
    "PerformedProcedureStepDescription", "RequestedProcedureDescription",
    "ScheduledProcedureStepDescription", "RequestAttributesSequence",
    "ClinicalTrialSeriesDescription",
)  # fmt: skip
# technical tokens that may stay burned into an ultrasound image after cleaning
DEFAULT_PIXEL_ALLOW_LIST = (
    "MI", "TIS", "TIB", "TIC", "CM", "MM", "HZ", "KHZ", "MHZ", "DB", "FPS", "GN", "DR",
    "FR", "ST", "S", "MS", "CM/S", "M/S", "%", "2D", "3D", "4D", "M", "B", "C", "D", "PW",
    "CW", "THI", "HR", "BPM", "PRF", "WF", "G", "P", "R", "L", "A", "F",
)  # fmt: skip
# "steps": one task per step and chunk (filter, pseudonyms, headers, package);
# "fused": one task per chunk runs the four steps (fewer task instances for small studies)
TASK_LAYOUTS = ("steps", "fused")


def default_home() -> Path:
    """Root for sendit's local state when nothing is configured (``$SENDIT_HOME`` or ~/sendit)."""
    return Path(os.environ.get("SENDIT_HOME", Path.home() / "sendit"))


@dataclass(frozen=True)
class Settings:
    """Every run-time setting with its default. See docs/configuration.md."""

    # where things live
    work_root: str = field(default_factory=lambda: str(default_home() / "work"))
    outbox: str = field(default_factory=lambda: str(default_home() / "outbox"))
    # pseudonyms (sendit: ANONYMIZE_RESTFUL=True -> "dasher")
    pseudonym_provider: str = "local"
    dasher_conn_id: str = "dasher_default"
    dasher_study: str | None = None  # default: lower-cased collection, as sendit did
    dasher_pool: str = "default_pool"
    entity_id: str = "PatientID"
    item_id: str = "AccessionNumber"
    entity_id_source: str = "Stanford MRN"  # sendit CUSTOM_ENTITY_ID
    item_id_source: str = "DCM Accession #"
    # filters
    anonymize_pixels: bool = False  # sendit 2017's flag; kept for old settings (see pixel_cleaning)
    study_deid: str | None = None
    modality_allowlist: tuple[str, ...] = ()  # sendit production: ("CT", "MR")
    image_type_required: tuple[str, ...] = ()  # sendit production: ("AXIAL",)
    # anonymization
    recipe: str | None = None  # a user deid recipe; default: the one shipped in recipes/
    deid_options: tuple[str, ...] = DEFAULT_DEID_OPTIONS
    clean_descriptor_attributes: tuple[str, ...] = DEFAULT_CLEAN_DESCRIPTOR_ATTRIBUTES
    # pixels (burned-in text)
    pixel_cleaning: str = "ocr"
    pixel_allow_list: tuple[str, ...] = DEFAULT_PIXEL_ALLOW_LIST
    ocr_engine: str = "rapidocr"
    pixel_hold: str = "study"
    pixel_screening: str = "all"
    pixel_device: str = "auto"
    # threads that look at the frames of one image and at the images of a batch (0: the
    # cores, at most 4; 1: one after the other); they share the OCR models (ocr.engine)
    pixel_threads: int = 0
    # an image whose text mask would cover more than this share of its area is held
    pixel_mask_max_share: float = 0.10
    gzip_level: int = 1  # ISA-L level 1: ~15x zlib level 1 on CT data, same size (performance.md)
    # storage (sendit: SEND_TO_GOOGLE, GOOGLE_CLOUD_STORAGE, GOOGLE_STORAGE_COLLECTION, ...)
    send_to_google: bool = False
    google_cloud_storage: str | None = None
    google_storage_collection: str = "DEMO"
    google_project_name: str | None = None
    bigquery_table: str = "dicom"
    bigquery_location: str = "US"
    gcp_conn_id: str = "google_cloud_default"
    # how long one delivery try lets the Google client libraries retry a call (unreachable,
    # 429, 5xx) before it fails with TransientError for Airflow's retry; None: the libraries'
    # own deadlines (Cloud Storage 120 s, BigQuery 600 s)
    google_retry_seconds: int | None = None
    # operations
    chunk_size: int = 25
    max_batches_in_flight: int = 50  # 2 chunks per step at once (one per core)
    task_layout: str = "steps"
    watch_poll_seconds: int = 10
    keep_work_files: bool = False
    fail_run_on_batch_error: bool = True
    # a study with a corrupt or truncated file: deliver the other images (with a warning)
    # instead of stopping the batch (off: a research team gets complete studies or none)
    deliver_incomplete_studies: bool = False
    # discovery: follow symlinks that lead outside the input folder (off: they are refused)
    follow_external_symlinks: bool = False
    # the ledger's database: an SQLAlchemy URL; default: SQLite in the work root
    ledger_url: str | None = None

    @property
    def chunks_in_flight(self) -> int:
        """How many chunks of one step run at once."""
        return max(1, self.max_batches_in_flight // max(self.chunk_size, 1))

    @property
    def collection(self) -> str:
        """The storage collection (GCS prefix, BigQuery dataset)."""
        return self.google_storage_collection

    @property
    def study_name(self) -> str:
        """The DASHER study name: explicit, else the lower-cased collection (sendit's rule)."""
        return self.dasher_study or self.google_storage_collection.lower()


_BOOL = {
    "anonymize_pixels",
    "send_to_google",
    "keep_work_files",
    "fail_run_on_batch_error",
    "follow_external_symlinks",
    "deliver_incomplete_studies",
}
_INT = {
    "gzip_level": (0, 9),
    "chunk_size": (1, 1000),
    "max_batches_in_flight": (1, 10000),
    "watch_poll_seconds": (1, 3600),
    "pixel_threads": (0, 4),
    "google_retry_seconds": (1, 3600),
}
_OPTIONAL = {"google_retry_seconds"}  # null: the default (the libraries' own deadlines)
_FLOAT = {"pixel_mask_max_share": (0.0, 1.0)}
_TUPLE = {
    "modality_allowlist",
    "image_type_required",
    "pixel_allow_list",
    "deid_options",
    "clean_descriptor_attributes",
}
_LOWER_TUPLE = {"deid_options"}
_KEYWORD_TUPLE = {"clean_descriptor_attributes"}
_KEYWORD_RE = re.compile(r"^(?:[A-Z][A-Za-z0-9]{1,63}|all)$")
_COLLECTION_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_SENDIT_ALIASES = {"custom_entity_id": "entity_id_source"}


def _coerce(name: str, value: Any, problems: list[str]) -> Any:
    if name in _BOOL:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
            return value.lower() in {"true", "yes", "1"}
        problems.append(f"'{name}' must be true or false (got {value!r})")
        return None
    if value is None and name in _OPTIONAL:
        return None
    if name in _INT:
        lo, hi = _INT[name]
        try:
            number = int(value)
        except (TypeError, ValueError):
            problems.append(f"'{name}' must be a whole number (got {value!r})")
            return None
        if not lo <= number <= hi:
            problems.append(f"'{name}' must be between {lo} and {hi} (got {number})")
        return number
    if name in _FLOAT:
        low, high = _FLOAT[name]
        try:
            real = float(value)
        except (TypeError, ValueError):
            problems.append(f"'{name}' must be a number (got {value!r})")
            return None
        if not low <= real <= high:
            problems.append(f"'{name}' must be between {low} and {high} (got {real})")
        return real
    if name in _TUPLE:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [v for v in re.split(r"[,\s]+", value) if v]
        if not isinstance(value, list | tuple):
            problems.append(f"'{name}' must be a list of strings (got {value!r})")
            return ()
        if name in _LOWER_TUPLE:
            return tuple(str(v).strip().lower() for v in value)
        if name in _KEYWORD_TUPLE:  # DICOM keywords keep their case; "all" in any case
            return tuple(
                "all" if str(v).strip().lower() == "all" else str(v).strip() for v in value
            )
        return tuple(str(v).upper() for v in value)
    if value is not None and not isinstance(value, str):
        problems.append(f"'{name}' must be a string (got {value!r})")
    return value


def load_settings(*layers: dict[str, Any] | None) -> Settings:
    """Merge setting layers (later wins) over the defaults and validate them all at once.

    Raises ConfigError listing every problem found.
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        merged.update(layer or {})
    known = {f.name for f in fields(Settings)}
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, value in merged.items():
        name = key.lower()
        if name == "anonymize_restful":
            flag = _coerce("send_to_google", value, problems)  # reuse bool parsing
            values["pseudonym_provider"] = "dasher" if flag else "local"
            continue
        name = _SENDIT_ALIASES.get(name, name)
        if name not in known:
            problems.append(f"unknown setting '{key}' (known: {', '.join(sorted(known))})")
            continue
        values[name] = _coerce(name, value, problems)
    settings = replace(Settings(), **{k: v for k, v in values.items() if v is not None})
    if settings.pseudonym_provider not in PROVIDERS:
        problems.append(
            f"'pseudonym_provider' must be one of {', '.join(PROVIDERS)} "
            f"(got {settings.pseudonym_provider!r})"
        )
    if settings.task_layout not in TASK_LAYOUTS:
        problems.append(
            f"'task_layout' must be one of {', '.join(TASK_LAYOUTS)} (got {settings.task_layout!r})"
        )
    for name, allowed in (
        ("pixel_cleaning", PIXEL_CLEANING),
        ("ocr_engine", OCR_ENGINES),
        ("pixel_hold", PIXEL_HOLD),
        ("pixel_screening", PIXEL_SCREENING),
        ("pixel_device", PIXEL_DEVICES),
    ):
        if getattr(settings, name) not in allowed:
            problems.append(
                f"'{name}' must be one of {', '.join(allowed)} (got {getattr(settings, name)!r})"
            )
    unknown = [o for o in settings.deid_options if o not in DEID_OPTIONS]
    if unknown:
        problems.append(
            f"unknown 'deid_options' {', '.join(unknown)} (known: {', '.join(DEID_OPTIONS)})"
        )
    if {"retain_longitudinal_modified_dates", "retain_longitudinal_full_dates"} <= set(
        settings.deid_options
    ):
        problems.append(
            "'deid_options' can hold retain_longitudinal_full_dates or "
            "retain_longitudinal_modified_dates, not both"
        )
    odd = [k for k in settings.clean_descriptor_attributes if not _KEYWORD_RE.match(k)]
    if odd:
        problems.append(
            f"'clean_descriptor_attributes' holds {', '.join(map(repr, odd))}: list DICOM "
            'keywords such as StudyDescription, or "all"'
        )
    if not _COLLECTION_RE.match(settings.google_storage_collection or ""):
        problems.append(
            "'google_storage_collection' must be letters, digits or underscores "
            "(it names a BigQuery dataset), e.g. IRB12345"
        )
    if settings.send_to_google:
        for needed in ("google_cloud_storage", "google_project_name"):
            if not getattr(settings, needed):
                problems.append(f"'send_to_google' is true but '{needed}' is not set")
    if settings.recipe and not Path(settings.recipe).is_file():
        problems.append(f"'recipe' file not found: {settings.recipe}")
    if problems:
        raise ConfigError("sendit settings are invalid: " + "; ".join(problems))
    return settings


def run_overrides(params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The settings a run's trigger params choose (``provider``, ``delivery``); the value
    ``"settings"`` (the form's default) leaves the setting as configured."""
    params = params or {}
    overrides: dict[str, Any] = {}
    if params.get("provider") in PROVIDERS:
        overrides["pseudonym_provider"] = params["provider"]
    if params.get("delivery") == "outbox":
        overrides["send_to_google"] = False
    elif params.get("delivery") == "google":
        overrides["send_to_google"] = True
    return overrides


def resolve_settings(
    variable: str | Mapping[str, Any] | None,
    folder: InputFolder | None = None,
    params: Mapping[str, Any] | None = None,
) -> Settings:
    """THE way sendit's settings are resolved, wherever they are needed (DAG factory, tasks,
    CLI, dashboard): defaults < the ``sendit_settings`` Variable (``variable``: its JSON text
    or an already parsed object) < the input folder's own ``settings`` < the run's trigger
    params. Validated as a whole: raises one ConfigError listing every problem.

    Reading the Variable is the caller's part (Airflow has one channel per process kind:
    task, DAG processor, API server; see sendit_ops.airflow.config)."""
    base = (
        parse_json_setting(variable, SETTINGS_VARIABLE)
        if isinstance(variable, str) or variable is None
        else variable
    )
    if base is not None and not isinstance(base, Mapping):
        raise ConfigError(f"Variable '{SETTINGS_VARIABLE}' must be a JSON object")
    return load_settings(
        dict(base or {}), folder.settings if folder else None, run_overrides(params)
    )


def parse_json_setting(raw: str | None, name: str) -> Any:
    """Parse a JSON Variable value, turning syntax errors into a ConfigError naming the Variable."""
    if raw is None or raw == "":
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at position {exc.pos}"
        raise ConfigError(f"Variable '{name}' is not valid JSON: {where}") from None


@dataclass(frozen=True)
class InputFolder:
    """One watched input folder; each becomes one DAG."""

    path: str
    name: str
    schedule: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def dag_id(self) -> str:
        """The DAG id for this folder: ``sendit_<name>``."""
        return "sendit_" + self.name


_NAME_RE = re.compile(r"[^A-Za-z0-9_]+")


def parse_input_folders(raw: Any) -> list[InputFolder]:
    """Read the input-folder list.

    Accepted shapes: a list of paths (``["/data/1_0", "/data/1_1"]``), or a list of objects
    ``{"path": ..., "name": ..., "schedule": ..., "settings": {...}}``.
    """
    if raw is None:
        return []
    if isinstance(raw, str | dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ConfigError(f"Variable '{INPUT_FOLDERS_VARIABLE}' must be a JSON list")
    folders: list[InputFolder] = []
    seen: set[str] = set()
    for entry in raw:
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or not entry.get("path"):
            raise ConfigError(
                f"each entry of '{INPUT_FOLDERS_VARIABLE}' needs a 'path' (got {entry!r})"
            )
        path = str(entry["path"])
        name = _NAME_RE.sub("_", str(entry.get("name") or Path(path).name)).strip("_")
        if not name:
            raise ConfigError(f"cannot derive a DAG name from input folder {path!r}")
        if name in seen:
            raise ConfigError(f"two input folders share the name {name!r}; give one a 'name'")
        seen.add(name)
        settings = entry.get("settings") or {}
        if not isinstance(settings, dict):
            raise ConfigError(f"'settings' of input folder {name!r} must be an object")
        folders.append(InputFolder(path, name, entry.get("schedule"), settings))
    return folders
