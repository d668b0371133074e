"""Airflow provider metadata for sendit_ops (registers the DASHER connection type)."""

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
            }
        ],
        "versions": ["0.1.0"],
    }
