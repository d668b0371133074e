"""Airflow provider metadata for sendit_ops (registers the DASHER and PACS connection types)."""

from __future__ import annotations


def get_provider_info() -> dict:
    """Return the provider description Airflow reads through the entry point."""
    return {
        "package-name": "sendit-ops",
        "name": "sendit",
        "description": "sendit: de-identify DICOM studies and deliver them to Google Cloud.",
        "connection-types": [
            {
                "hook-class-name": "sendit_ops.airflow.dasher_hook.DasherHook",
                "hook-name": "DASHER (Stanford identifiers)",
                "connection-type": "dasher",
                "conn-fields": {
                    "refresh_token": {
                        "label": "Refresh token",
                        "description": "DASHER refresh token (sendit's .stanford "
                        "'refreshToken'); rotated tokens are kept by sendit.",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "token_uri": {
                        "label": "Token URI",
                        "description": "Where the refresh token is exchanged ('token_uri').",
                        "schema": {"type": ["string", "null"]},
                    },
                    "api_version": {
                        "label": "API version",
                        "description": "Path segment before /uid/<study>.",
                        "schema": {"type": ["string", "null"], "default": "v1"},
                    },
                    "timeout": {
                        "label": "Read timeout (s)",
                        "schema": {"type": ["integer", "null"], "default": 30},
                    },
                    "max_attempts": {
                        "label": "Attempts per call",
                        "description": "Retries on timeouts, 429 and 5xx, with backoff.",
                        "schema": {"type": ["integer", "null"], "default": 5},
                    },
                    "max_total_seconds": {
                        "label": "Retry budget (s)",
                        "schema": {"type": ["integer", "null"], "default": 60},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {
                        "host": "DASHER base URL",
                        "login": "Client id",
                        "password": "Access token",
                    },
                    "placeholders": {"host": "https://dasher.example.org/api"},
                },
            },
            {
                "hook-class-name": "sendit_ops.airflow.pacs_hook.PacsHook",
                "hook-name": "DICOM PACS (C-FIND/C-GET/C-MOVE)",
                "connection-type": "dicom_pacs",
                "conn-fields": {
                    "method": {
                        "label": "Retrieve method",
                        "description": "c-get: the PACS sends back on sendit's association; "
                        "c-move: the PACS connects to sendit's storage SCP (it must know the "
                        "move AE title, host and port).",
                        "schema": {"type": ["string", "null"], "enum": ["c-get", "c-move"]},
                    },
                    "move_ae": {
                        "label": "Move destination AE title",
                        "description": "C-MOVE only; default: the calling AE title.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "move_port": {
                        "label": "Move destination port",
                        "description": "C-MOVE only: the port sendit's storage SCP listens on "
                        "during a move (as registered in the PACS).",
                        "schema": {"type": ["integer", "null"], "default": 11113},
                    },
                    "tls": {
                        "label": "TLS",
                        "schema": {"type": ["boolean", "null"], "default": False},
                    },
                    "tls_ca_file": {
                        "label": "TLS CA file",
                        "schema": {"type": ["string", "null"]},
                    },
                    "tls_cert_file": {
                        "label": "TLS client certificate",
                        "schema": {"type": ["string", "null"]},
                    },
                    "tls_key_file": {
                        "label": "TLS client key",
                        "schema": {"type": ["string", "null"]},
                    },
                    "max_find_results": {
                        "label": "C-FIND result cap",
                        "description": "The PACS's cap on one query's answers, if known "
                        "(date queries are split below it).",
                        "schema": {"type": ["integer", "null"]},
                    },
                    "timeout": {
                        "label": "Timeout (s)",
                        "description": "Network, association and DIMSE timeouts.",
                        "schema": {"type": ["integer", "null"], "default": 60},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["password", "extra"],
                    "relabeling": {
                        "host": "PACS host",
                        "port": "PACS port",
                        "schema": "Called AE title (the PACS)",
                        "login": "Calling AE title (sendit)",
                    },
                    "placeholders": {"host": "pacs.example.org", "port": "104"},
                },
            },
            {
                "hook-class-name": "sendit_ops.airflow.pacs_hook.DicomwebHook",
                "hook-name": "DICOMweb (QIDO-RS/WADO-RS)",
                "connection-type": "dicomweb",
                "conn-fields": {
                    "max_find_results": {
                        "label": "QIDO result cap",
                        "description": "The server's cap on one query's answers (Orthanc: "
                        "LimitFindResults); date queries are split below it.",
                        "schema": {"type": ["integer", "null"]},
                    },
                    "timeout": {
                        "label": "Timeout (s)",
                        "schema": {"type": ["integer", "null"], "default": 60},
                    },
                    "tls_ca_file": {
                        "label": "TLS CA file",
                        "schema": {"type": ["string", "null"]},
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "extra"],
                    "relabeling": {
                        "host": "DICOMweb base URL",
                        "login": "User (basic auth)",
                        "password": "Password, or a bearer token without a user",
                    },
                    "placeholders": {"host": "https://pacs.example.org/dicom-web"},
                },
            },
        ],
        "versions": ["0.1.0"],
    }
