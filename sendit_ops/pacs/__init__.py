"""Query/retrieve from a PACS and a DICOM receiver, without Airflow.

The layer sits beside the pipeline: it writes finished study folders into an input folder
(``<key>.tmp`` while being written, renamed when complete) and the per-folder DAG takes them
from there unchanged. It imports only ``dicom`` and ``core``; ``pipeline`` and ``airflow``
may import it. See docs/pacs.md.
"""

import logging

# The network libraries log what they send at DEBUG: pynetdicom dumps C-FIND identifiers
# (accession numbers, patient names), dicomweb-client and urllib3 the QIDO URLs with their
# query (AccessionNumber=...). Whatever level a deployment sets for the root logger, theirs
# stays at WARNING: task logs never carry a patient value.
for _name in ("pynetdicom", "dicomweb_client", "urllib3.connectionpool"):
    logging.getLogger(_name).setLevel(logging.WARNING)
