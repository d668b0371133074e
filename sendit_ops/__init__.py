"""sendit_ops: de-identify DICOM studies and deliver them to Google Cloud, on Airflow.

Each sub-package is a layer (docs/architecture.md): ``core``, ``pseudonyms``, ``dicom``,
``packaging``, ``delivery``, ``pipeline`` import no Airflow code, so they can be used and
tested without a running Airflow; ``airflow`` holds everything that does. ``make lint``
enforces both (import-linter contracts in pyproject.toml).
"""

__version__ = "0.1.0"


def quiet_known_deprecations() -> None:
    """deid 0.4.13 imports ``get_expected_length`` from pydicom's deprecated
        ``pixel_data_handlers`` when ``deid.dicom`` is first imported; pydicom 3 then warns *and*
        logs it once per process: a scary line in every demo run and task log that no sendit user
        can act on. Only that message is filtered (cheap: neither pydicom nor deid is imported
        here, so DAG parsing stays fast).

    Importing the package changes nothing: the entry points call this (``sendit``'s main, the
    DAG factory, the task preload) before deid can be imported."""
    import logging
    import warnings

    message = "The 'pydicom.pixel_data_handlers' module will be removed"
    warnings.filterwarnings("ignore", message=message, category=DeprecationWarning)
    logging.getLogger("pydicom").addFilter(lambda record: message not in record.getMessage())
