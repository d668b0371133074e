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
                "hook-class-name": "sendit_ops.hooks.dasher_hook.DasherHook",
                "connection-type": "dasher",
            }
        ],
        "versions": ["0.1.0"],
    }
