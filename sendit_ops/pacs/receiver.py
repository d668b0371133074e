"""sendit's DICOM receiver: a C-STORE SCP that modalities or a PACS send studies to.

- Only configured calling AE titles are accepted (others: A-ASSOCIATE-RJ, "calling AE
  title not recognised"); with ``allowed_hosts`` (addresses or networks) the peer's
  address must match too (others are aborted).
- Each instance is written atomically into ``<input>/<key>.tmp/`` (key: a keyed hash of the
  sender's AE title and the Study Instance UID; file: a keyed hash of the SOP Instance UID,
  so a resent instance replaces itself).
- A study's folder is closed (renamed to ``<key>``, which the folder DAG picks up) once no
  instance arrived for ``stable_age`` seconds, as Orthanc does.
- Nothing is lost on a restart: every stored instance is a whole file on disk before the
  sender hears "success"; at start the receiver reopens the ``.tmp`` folders it owns
  (removing half-written ``.part`` files) and closes them on the same quiet-time rule from
  their files' times. A sender that saw the connection drop sends again; the copies land
  on the same names.

It runs as a long-lived service (``sendit receive``, the ``receiver`` compose service,
``make receiver``), never inside an Airflow task.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import uid_to_sop_class
from pynetdicom.transport import ThreadedAssociationServer

from sendit_ops.core.errors import ConfigError
from sendit_ops.pacs.dimse import TRANSFER_SYNTAXES, start_server, storage_syntaxes
from sendit_ops.pacs.keys import instance_name, received_study_key
from sendit_ops.pacs.model import check_ae
from sendit_ops.pacs.study_folder import TMP_SUFFIX, StudyFolder

log = logging.getLogger("sendit")

RECEIVED_PREFIX = "r"  # the receiver owns the folders whose key starts with it
# pynetdicom creates its SOP class names at import time, out of a type checker's sight
Verification = uid_to_sop_class("1.2.840.10008.1.1")


@dataclass(frozen=True)
class ReceiverConfig:
    """Where studies go and who may send them."""

    incoming: Path
    port: int = 11112
    ae_title: str = "SENDIT"
    allowed_aes: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()  # addresses or networks; empty: any host
    stable_age: float = 60.0
    bind: str = "0.0.0.0"
    poll_seconds: float = 1.0
    timeout: float = 60.0

    def __post_init__(self) -> None:
        check_ae(self.ae_title, "receiver AE title")
        if not self.allowed_aes:
            raise ConfigError(
                "the receiver accepts only configured senders: give their calling AE titles "
                "(--allow-ae CT01 --allow-ae PACS, or SENDIT_RECEIVER_ALLOWED_AES)"
            )
        for ae in self.allowed_aes:
            check_ae(ae, "allowed calling AE title")
        for host in self.allowed_hosts:
            try:
                ipaddress.ip_network(host, strict=False)
            except ValueError:
                raise ConfigError(
                    f"allowed host {host!r} is not an IP address or network (e.g. 10.0.0.0/8)"
                ) from None
        if self.stable_age <= 0:
            raise ConfigError("stable_age: the quiet time is a positive number of seconds")
        if not 0 <= self.port < 65536:
            raise ConfigError(f"port {self.port} is not a TCP port")


class Receiver:
    """The C-STORE SCP and the thread that closes quiet studies."""

    def __init__(self, config: ReceiverConfig, secret_key: bytes):
        self.config = config
        self.secret_key = secret_key
        self.networks = [ipaddress.ip_network(h, strict=False) for h in config.allowed_hosts]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server: ThreadedAssociationServer | None = None
        self._closer: threading.Thread | None = None
        self.stored = 0
        self.closed = 0
        self.port = config.port

    # ---- folders
    def _owned_tmp(self) -> list[StudyFolder]:
        if not self.config.incoming.is_dir():
            return []
        return [
            StudyFolder(self.config.incoming, p.name[: -len(TMP_SUFFIX)])
            for p in sorted(self.config.incoming.iterdir())
            if p.is_dir() and p.name.startswith(RECEIVED_PREFIX) and p.name.endswith(TMP_SUFFIX)
        ]

    def recover(self) -> int:
        """Reopen the studies a previous run left open; return how many."""
        folders = self._owned_tmp()
        for folder in folders:
            folder.open()
        if folders:
            log.info("receiver: reopened %d unfinished stud(ies)", len(folders))
        return len(folders)

    def close_stable(self, now: float | None = None) -> int:
        """Close every study quiet for ``stable_age`` seconds; return how many."""
        now = time.time() if now is None else now
        closed = 0
        with self._lock:
            for folder in self._owned_tmp():
                if folder.count() and now - folder.newest_write() >= self.config.stable_age:
                    name = self._free_name(folder.name)
                    os.rename(folder.tmp, folder.incoming / name)
                    closed += 1
                    log.info("receiver: study %s closed, %d instance(s)", name, folder.count())
        self.closed += closed
        return closed

    def _free_name(self, name: str) -> str:
        """The final name; a study sent again after its folder was closed gets ``-2`` etc."""
        n, candidate = 1, name
        while (self.config.incoming / candidate).exists():
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    # ---- DICOM
    def _allowed_host(self, address: str) -> bool:
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    def _on_requested(self, event: evt.Event) -> None:
        address = event.assoc.requestor.address
        if not self._allowed_host(address):
            log.warning("receiver: association from a host not allowed; aborted")
            event.assoc.abort()

    def _on_store(self, event: evt.Event) -> int:
        calling = event.assoc.requestor.ae_title.strip()
        try:
            ds = event.dataset
            study_uid = str(ds.get("StudyInstanceUID", "") or "")
            sop_uid = str(ds.get("SOPInstanceUID", "") or "")
            if not study_uid or not sop_uid:
                return 0xA900  # no study or instance UID: cannot be filed
            data = event.encoded_dataset(include_meta=True)
            key = received_study_key(self.secret_key, calling, study_uid)
            with self._lock:  # not while the closer renames this folder
                folder = StudyFolder(self.config.incoming, key)
                folder.tmp.mkdir(parents=True, exist_ok=True)
                folder.write(instance_name(self.secret_key, sop_uid), data)
            self.stored += 1
            return 0x0000
        except OSError as exc:
            log.error("receiver: an instance could not be written (%s)", exc.strerror)
            return 0xA700  # out of resources: the sender keeps it and retries
        except Exception as exc:
            log.error("receiver: an instance could not be read (%s)", type(exc).__name__)
            return 0xC000

    def start(self) -> Receiver:
        self.config.incoming.mkdir(parents=True, exist_ok=True)
        self.recover()
        ae = AE(ae_title=self.config.ae_title)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.config.timeout
        ae.require_calling_aet = list(self.config.allowed_aes)
        ae.maximum_associations = 20
        ae.add_supported_context(Verification)
        for uid in storage_syntaxes(AllStoragePresentationContexts):
            ae.add_supported_context(uid, TRANSFER_SYNTAXES)
        self._server = start_server(
            ae,
            (self.config.bind, self.config.port),
            [
                (evt.EVT_C_STORE, self._on_store),
                (evt.EVT_REQUESTED, self._on_requested),
            ],
        )
        self.port = self._server.server_address[1]
        self._closer = threading.Thread(target=self._close_loop, name="closer", daemon=True)
        self._closer.start()
        log.info(
            "receiver: %s listening on port %d, %d allowed AE title(s), quiet time %.0f s",
            self.config.ae_title,
            self.port,
            len(self.config.allowed_aes),
            self.config.stable_age,
        )
        return self

    def _close_loop(self) -> None:
        while not self._stop.wait(self.config.poll_seconds):
            try:
                self.close_stable()
            except OSError as exc:
                log.error("receiver: closing studies failed (%s); will retry", exc.strerror)

    def stop(self) -> None:
        """Stop listening; open studies stay ``.tmp`` for the next start."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
        if self._closer is not None:
            self._closer.join(5)

    def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        done.wait()
        self.stop()


def _split(raw: str | None) -> list[str]:
    return [v for v in (raw or "").replace(",", " ").split() if v]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The receiver's options (``sendit receive``); each has an environment fallback."""
    env = os.environ.get
    parser.add_argument(
        "--input",
        default=env("SENDIT_RECEIVER_INPUT"),
        help="the input folder studies are written to (a sendit input folder)",
    )
    parser.add_argument("--port", type=int, default=int(env("SENDIT_RECEIVER_PORT", "11112")))
    parser.add_argument("--ae-title", default=env("SENDIT_RECEIVER_AE", "SENDIT"))
    parser.add_argument(
        "--allow-ae",
        action="append",
        default=None,
        help="a calling AE title allowed to send (repeat; required)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=None,
        help="an address or network allowed to send (repeat; default any)",
    )
    parser.add_argument(
        "--stable-age",
        type=float,
        default=float(env("SENDIT_RECEIVER_STABLE_AGE", "60")),
        help="seconds without a new instance before a study is closed",
    )
    parser.add_argument("--bind", default=env("SENDIT_RECEIVER_BIND", "0.0.0.0"))


def config_from_args(args: argparse.Namespace) -> ReceiverConfig:
    if not args.input:
        raise ConfigError("the receiver needs --input (or SENDIT_RECEIVER_INPUT)")
    aes = args.allow_ae or _split(os.environ.get("SENDIT_RECEIVER_ALLOWED_AES"))
    hosts = args.allow_host or _split(os.environ.get("SENDIT_RECEIVER_ALLOWED_HOSTS"))
    return ReceiverConfig(
        incoming=Path(args.input),
        port=args.port,
        ae_title=args.ae_title,
        allowed_aes=tuple(aes),
        allowed_hosts=tuple(hosts),
        stable_age=args.stable_age,
        bind=args.bind,
    )
