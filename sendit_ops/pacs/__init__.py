"""Query/retrieve from a PACS and a DICOM receiver, without Airflow.

The layer sits beside the pipeline: it writes finished study folders into an input folder
(``<key>.tmp`` while being written, renamed when complete) and the per-folder DAG takes them
from there unchanged. It imports only ``dicom`` and ``core``; ``pipeline`` and ``airflow``
may import it. See docs/pacs.md.
"""
