"""DIMSE query/retrieve with pynetdicom: C-FIND at study level, C-GET, and C-MOVE to a
storage SCP that this process runs for the length of the move (as the old ``dcmqr -cmove``
did).

Errors are sorted for the caller: the PACS unreachable, an association refused or dropped,
a timeout -> ``TransientError`` (retried); a PACS that does not know sendit's move
destination -> ``ConfigError`` (fails at once, with what to fix). Messages name AE titles,
hosts and status codes, never a patient value.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.events import EventHandlerType
from pynetdicom.pdu_primitives import SCP_SCU_RoleSelectionNegotiation
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import SOPClass, uid_to_sop_class
from pynetdicom.transport import ThreadedAssociationServer

from sendit_ops.core.errors import ConfigError, SenditError, TransientError
from sendit_ops.pacs.model import PacsConnection

log = logging.getLogger("sendit")

# pynetdicom creates its SOP class names at import time (in its module's globals()), out of
# a type checker's sight: the same objects, looked up by UID
StudyRootQueryRetrieveInformationModelFind: SOPClass = uid_to_sop_class(
    "1.2.840.10008.5.1.4.1.2.2.1"
)
StudyRootQueryRetrieveInformationModelGet: SOPClass = uid_to_sop_class(
    "1.2.840.10008.5.1.4.1.2.2.3"
)
StudyRootQueryRetrieveInformationModelMove: SOPClass = uid_to_sop_class(
    "1.2.840.10008.5.1.4.1.2.2.2"
)

# what sendit accepts on a C-GET or C-MOVE: uncompressed, and the common lossless and lossy
# encodings as stored, so the PACS need not transcode (and cannot degrade) an image
TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless SV1
    "1.2.840.10008.1.2.4.57",  # JPEG Lossless
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.80",  # JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near Lossless
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
    "1.2.840.10008.1.2.5",  # RLE Lossless
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still met)
]
STUDY_KEYS = (
    "StudyInstanceUID",
    "AccessionNumber",
    "StudyDate",
    "NumberOfStudyRelatedInstances",
    "ModalitiesInStudy",
    "SOPClassesInStudy",
)
MAX_CONTEXTS = 128  # presentation contexts in one association (PS3.8)

# status codes (PS3.4 C.4)
_PENDING = (0xFF00, 0xFF01)
_CANCEL = 0xFE00
_MOVE_DESTINATION_UNKNOWN = 0xA801
_OUT_OF_RESOURCES = (0xA700, 0xA701, 0xA702)


class PacsError(SenditError):
    """The PACS answered with a failure that retrying will not fix."""


@dataclass
class FindAnswer:
    """The matches of one C-FIND, and whether the PACS cut them short (a result cap)."""

    matches: list[Dataset]
    truncated: bool


InstanceSink = Callable[[Dataset, bytes], int]  # (dataset, Part-10 bytes) -> bytes written


@dataclass
class TransferCounts:
    """What one retrieval (C-GET, C-MOVE or WADO-RS) of a study did, instance by instance:
    counted by the storage handler while the PACS sends."""

    stored: int = 0
    bytes: int = 0
    refused: int = 0  # not an instance of the requested study
    errors: int = 0  # could not be written (a full disk, a bad file)
    error: str = ""  # the type of the last such error (never its message: it may hold a path)


def storage_syntaxes(contexts: list[PresentationContext]) -> list[str]:
    """The abstract syntaxes (SOP class UIDs) of pynetdicom's storage context lists (always
    set there; typed optional because a context being built has none yet)."""
    return [cx.abstract_syntax for cx in contexts if cx.abstract_syntax is not None]


def start_server(
    ae: AE, address: tuple[str, int], handlers: list[EventHandlerType]
) -> ThreadedAssociationServer:
    """Start ``ae``'s SCP in the background (pynetdicom returns the server only when not
    blocking, hence its optional type)."""
    server = ae.start_server(address, block=False, evt_handlers=handlers)
    if server is None:
        raise RuntimeError("pynetdicom returned no server for a non-blocking start")
    return server


def _tls(conn: PacsConnection) -> tuple[ssl.SSLContext, str] | None:
    if not conn.tls:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=conn.tls_ca_file or None)
    if conn.tls_cert_file:
        ctx.load_cert_chain(conn.tls_cert_file, conn.tls_key_file or None)
    return ctx, conn.host


def _ae(conn: PacsConnection) -> AE:
    ae = AE(ae_title=conn.calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = conn.timeout
    ae.connection_timeout = min(conn.timeout, 30)
    return ae


@contextlib.contextmanager
def association(
    conn: PacsConnection,
    ae: AE,
    handlers: list[EventHandlerType] | None = None,
    roles: list[SCP_SCU_RoleSelectionNegotiation] | None = None,
) -> Iterator[Association]:
    """An association with the PACS, released (or aborted) on the way out."""
    assoc = ae.associate(
        conn.host,
        conn.port,
        ae_title=conn.called_ae,
        ext_neg=list(roles) if roles else None,  # a list of its wider item type (_UI)
        evt_handlers=handlers or None,
        tls_args=_tls(conn),
    )
    if not assoc.is_established:
        if assoc.is_rejected:
            raise TransientError(
                f"PACS {conn.name} ({conn.called_ae} at {conn.host}:{conn.port}) rejected the "
                f"association from {conn.calling_ae}: check that it knows this AE title"
            )
        raise TransientError(
            f"PACS {conn.name}: no association with {conn.called_ae} at "
            f"{conn.host}:{conn.port} (unreachable, refused or timed out)"
        )
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()
        else:
            assoc.abort()


def _lost(conn: PacsConnection, what: str) -> TransientError:
    return TransientError(
        f"PACS {conn.name}: the association was lost during {what} (PACS stopped, network "
        "dropped, or no answer within the timeout)"
    )


class FindSession:
    """C-FINDs over one association (opened on first use, reopened after a failure)."""

    def __init__(self, conn: PacsConnection):
        self.conn = conn
        self._stack = contextlib.ExitStack()
        self._assoc: Association | None = None

    def __enter__(self) -> FindSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _association(self) -> Association:
        if self._assoc is None or not self._assoc.is_established:
            ae = _ae(self.conn)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
            self._stack.close()
            self._stack = contextlib.ExitStack()
            self._assoc = self._stack.enter_context(association(self.conn, ae))
        return self._assoc

    def find(self, **match: str) -> FindAnswer:
        """Study-level C-FIND with these matching keys (others returned empty)."""
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        for k in STUDY_KEYS:
            setattr(query, k, "")
        for k, v in match.items():
            setattr(query, k, v)
        assoc = self._association()
        matches: list[Dataset] = []
        truncated = False
        for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind
        ):
            if not status or "Status" not in status:
                self._assoc = None
                raise _lost(self.conn, "a C-FIND")
            code = int(status.Status)
            if code in _PENDING:
                if identifier is not None:
                    matches.append(identifier)
            elif code == _CANCEL or code in _OUT_OF_RESOURCES:
                truncated = True  # Orthanc: LimitFindResults reached; others: A700
            elif code != 0x0000:
                raise PacsError(f"PACS {self.conn.name}: C-FIND failed with status 0x{code:04X}")
        cap = self.conn.max_find_results
        if cap and len(matches) >= cap:
            truncated = True
        return FindAnswer(matches, truncated)


def _storage_requests(
    ae: AE, sop_classes: tuple[str, ...] = ()
) -> list[SCP_SCU_RoleSelectionNegotiation]:
    """The storage contexts of a C-GET (the PACS sends back on this association, so sendit
    proposes what it accepts, with the SCP role).

    A PACS picks one accepted context per image and transcodes to its transfer syntax when
    that is not the stored one (measured with Orthanc: with one context per SOP class it
    decompressed a JPEG baseline cine to 110 MB, and refused JPEG 2000 it could not
    transcode). So for the SOP classes the study holds (C-FIND SOPClassesInStudy) each
    transfer syntax gets a context of its own, and the PACS finds the stored one; the
    classes beyond what 127 contexts hold, or every storage class when the PACS did not
    say, get one context with all the transfer syntaxes.
    """
    roles: list[SCP_SCU_RoleSelectionNegotiation] = []
    used = 1  # the Get context
    per_class = len(TRANSFER_SYNTAXES)
    exact = list(dict.fromkeys(sop_classes))[: (MAX_CONTEXTS - 1) // per_class]
    for uid in exact:
        for ts in TRANSFER_SYNTAXES:
            ae.add_requested_context(uid, [ts])
        roles.append(build_role(uid, scp_role=True))
        used += per_class
    rest = [uid for uid in dict.fromkeys(sop_classes) if uid not in exact]
    if not sop_classes:
        rest = storage_syntaxes(StoragePresentationContexts)
    for uid in rest[: MAX_CONTEXTS - used]:
        ae.add_requested_context(uid, TRANSFER_SYNTAXES)
        roles.append(build_role(uid, scp_role=True))
    return roles


def _store_handler(sink: InstanceSink, counter: TransferCounts) -> Callable[[evt.Event], int]:
    def handle(event: evt.Event) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            counter.bytes += sink(ds, event.encoded_dataset(include_meta=True))
            counter.stored += 1
            return 0x0000
        except _Refused:
            counter.refused += 1
            return 0xA900  # not an instance of the requested study
        except Exception as exc:  # a full disk, a bad file: the PACS sees a failed sub-op
            counter.errors += 1
            counter.error = type(exc).__name__
            return 0xA700

    return handle


class _Refused(Exception):
    """An instance that does not belong to the study being retrieved."""


def refuse() -> None:
    raise _Refused


def _retrieve_identifier(study_uid: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    return ds


def _check_final(conn: PacsConnection, what: str, status: Dataset | None) -> None:
    if not status or "Status" not in status:
        raise _lost(conn, what)
    code = int(status.Status)
    if code == _MOVE_DESTINATION_UNKNOWN:
        raise ConfigError(
            f"PACS {conn.name} does not know the move destination {conn.destination_ae!r}: "
            f"register that AE title there with this host and port {conn.move_port}, or "
            "retrieve with c-get or dicomweb"
        )
    if code in _OUT_OF_RESOURCES:
        raise TransientError(f"PACS {conn.name}: {what} refused, out of resources (0x{code:04X})")
    if code not in (0x0000, 0xB000, *_PENDING) and code != _CANCEL:
        raise PacsError(f"PACS {conn.name}: {what} failed with status 0x{code:04X}")


def c_get(
    conn: PacsConnection, study_uid: str, sink: InstanceSink, sop_classes: tuple[str, ...] = ()
) -> TransferCounts:
    """Fetch a study by C-GET; each instance goes to ``sink``. Returns counters."""
    ae = _ae(conn)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    roles = _storage_requests(ae, sop_classes)
    counter = TransferCounts()
    handlers: list[EventHandlerType] = [(evt.EVT_C_STORE, _store_handler(sink, counter))]
    with association(conn, ae, handlers=handlers, roles=roles) as assoc:
        last: Dataset | None = None
        for status, _ in assoc.send_c_get(
            _retrieve_identifier(study_uid), StudyRootQueryRetrieveInformationModelGet
        ):
            last = status
            if not status or "Status" not in status:
                break
        _check_final(conn, "a C-GET", last)
    return counter


# one storage SCP per move port on this machine at a time: C-MOVE tasks of the same PACS
# take turns (the PACS knows one host:port for sendit's AE)
_SCP_LOCK = threading.Lock()


@contextlib.contextmanager
def _move_port_lock(lock_dir: Path, port: int) -> Iterator[None]:
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _SCP_LOCK, open(lock_dir / f"move-{port}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def c_move(
    conn: PacsConnection,
    study_uid: str,
    sink: InstanceSink,
    lock_dir: Path,
    bind: str = "",
) -> TransferCounts:
    """Fetch a study by C-MOVE to sendit's storage SCP, started here on ``move_port`` for
    the length of the move."""
    from pynetdicom import AllStoragePresentationContexts

    counter = TransferCounts()
    with _move_port_lock(lock_dir, conn.move_port):
        scp = AE(ae_title=conn.destination_ae)
        scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = conn.timeout
        for uid in storage_syntaxes(AllStoragePresentationContexts):
            scp.add_supported_context(uid, TRANSFER_SYNTAXES)
        try:
            server = start_server(
                scp,
                (bind, conn.move_port),
                [(evt.EVT_C_STORE, _store_handler(sink, counter))],
            )
        except OSError as exc:
            raise TransientError(
                f"sendit's storage SCP cannot listen on port {conn.move_port} "
                f"({exc.strerror or type(exc).__name__}): another program holds it"
            ) from None
        try:
            ae = _ae(conn)
            ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
            with association(conn, ae) as assoc:
                last: Dataset | None = None
                for status, _ in assoc.send_c_move(
                    _retrieve_identifier(study_uid),
                    conn.destination_ae,
                    StudyRootQueryRetrieveInformationModelMove,
                ):
                    last = status
                    if not status or "Status" not in status:
                        break
                _check_final(conn, "a C-MOVE", last)
        finally:
            server.shutdown()
    return counter
