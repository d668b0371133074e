"""DICOMweb query/retrieve with dicomweb-client: QIDO-RS to find studies, WADO-RS to fetch
them (one HTTP request per study, instances streamed as they arrive).

QIDO answers are paged (limit/offset). Some servers also cap a whole answer without saying
so (Orthanc's LimitFindResults applies to QIDO too, paging included): the connection's
``max_find_results`` names that cap, and ``query`` splits date ranges that reach it.

HTTP errors are sorted like the DIMSE ones: unreachable, 429 and
5xx -> ``TransientError``; 401/403 -> ``ConfigError`` (credentials).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from io import BytesIO

import requests
from dicomweb_client import DICOMwebClient
from pydicom import Dataset
from pydicom.filewriter import dcmwrite

from sendit_ops.core.errors import ConfigError, TransientError
from sendit_ops.pacs.dimse import InstanceSink, PacsError, TransferCounts, _Refused
from sendit_ops.pacs.model import PacsConnection

FIELDS = ["StudyInstanceUID", "AccessionNumber", "StudyDate", "NumberOfStudyRelatedInstances"]
PAGE = 100


def client(conn: PacsConnection) -> DICOMwebClient:
    session = requests.Session()
    if conn.username:
        session.auth = (conn.username, conn.password)
    elif conn.password:  # a bearer token in the password field
        session.headers["Authorization"] = f"Bearer {conn.password}"
    if conn.tls_ca_file:
        session.verify = conn.tls_ca_file
    if conn.tls_cert_file:
        session.cert = (
            (conn.tls_cert_file, conn.tls_key_file) if conn.tls_key_file else (conn.tls_cert_file)
        )
    return DICOMwebClient(url=conn.dicomweb_url, session=session, timeout=conn.timeout)


@contextlib.contextmanager
def _errors(conn: PacsConnection, what: str) -> Iterator[None]:
    try:
        yield
    except requests.HTTPError as exc:
        code = exc.response.status_code if exc.response is not None else 0
        if code in (401, 403):
            raise ConfigError(
                f"DICOMweb {conn.name}: {what} refused ({code}): check the connection's "
                "login / password or token"
            ) from None
        if code == 429 or code >= 500:
            raise TransientError(f"DICOMweb {conn.name}: {what} answered {code}") from None
        raise PacsError(f"DICOMweb {conn.name}: {what} answered {code}") from None
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError):
        raise TransientError(
            f"DICOMweb {conn.name}: {what} did not complete (server unreachable, stopped or "
            "too slow)"
        ) from None
    except requests.RequestException as exc:  # its message holds the URL, with the query
        raise PacsError(f"DICOMweb {conn.name}: {what} failed ({type(exc).__name__})") from None


def qido_studies(conn: PacsConnection, filters: dict[str, str]) -> list[Dataset]:
    """Every study matching ``filters`` (QIDO-RS, paged)."""
    web = client(conn)
    page = PAGE
    out: list[Dataset] = []
    with _errors(conn, "QIDO-RS"):
        while True:
            answer = web.search_for_studies(
                search_filters=filters, fields=FIELDS, limit=page, offset=len(out)
            )
            out += [Dataset.from_json(a) for a in answer]
            if len(answer) < page:
                return out


def wado_study(conn: PacsConnection, study_uid: str, sink: InstanceSink) -> TransferCounts:
    """Fetch a study by WADO-RS (as stored: no transcoding); each instance goes to ``sink``."""
    web = client(conn)
    counter = TransferCounts()
    with _errors(conn, "WADO-RS"):
        for ds in web.iter_study(study_uid, media_types=(("application/dicom", "*"),)):
            buf = BytesIO()
            dcmwrite(buf, ds, enforce_file_format=True)
            try:
                counter.bytes += sink(ds, buf.getvalue())
                counter.stored += 1
            except _Refused:
                counter.refused += 1
    return counter
