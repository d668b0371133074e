"""sendit_ops: de-identify DICOM studies and deliver them to Google Cloud, on Airflow.

The domain modules (everything outside ``operators``, ``hooks`` and ``dag_factory``) import
no Airflow code, so they can be used and tested without a running Airflow.
"""

__version__ = "0.1.0"
