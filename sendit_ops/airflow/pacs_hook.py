"""PACS connections: a DIMSE PACS (type ``dicom_pacs``) or a DICOMweb endpoint (type
``dicomweb``) as Airflow Connections, turned into the ``pacs.model.PacsConnection`` the
query/retrieve layer uses.

``dicom_pacs``: host, port; login = sendit's calling AE title, schema = the PACS's called AE
title; extras ``method`` (c-get | c-move), ``move_ae``, ``move_port`` (sendit's storage SCP
for C-MOVE), ``tls`` with ``tls_ca_file`` / ``tls_cert_file`` / ``tls_key_file``,
``max_find_results``, ``timeout``.
``dicomweb``: host = the DICOMweb base URL, login / password (basic auth; a password without
login is sent as a bearer token); extras ``max_find_results``, ``timeout``, ``tls_ca_file``.
The form fields are declared in ``provider_info``.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseHook, Connection

from sendit_ops.core.errors import ConfigError, Failure, TransientError, classify
from sendit_ops.pacs.model import PacsConnection

HELP = (
    "create it in Admin > Connections (type 'DICOM PACS (C-FIND/C-GET/C-MOVE)' or "
    "'DICOMweb (QIDO-RS/WADO-RS)'), or e.g. `airflow connections add pacs_radiology "
    "--conn-type dicom_pacs --conn-host pacs.example.org --conn-port 104 --conn-schema "
    'PACSAE --conn-login SENDIT --conn-extra \'{"method": "c-get"}\'` (docs/pacs.md)'
)
_EXTRAS = (
    "move_ae",
    "move_port",
    "tls_ca_file",
    "tls_cert_file",
    "tls_key_file",
    "max_find_results",
    "timeout",
    "tls",
)


class PacsHook(BaseHook):
    """A PACS (DIMSE or DICOMweb) from an Airflow Connection."""

    conn_name_attr = "pacs_conn_id"
    default_conn_name = "pacs_default"
    conn_type = "dicom_pacs"
    hook_name = "DICOM PACS (C-FIND/C-GET/C-MOVE)"

    def __init__(self, pacs_conn_id: str = default_conn_name, **kwargs: Any):
        super().__init__(**kwargs)
        self.pacs_conn_id = pacs_conn_id

    def _connection(self) -> Connection:
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return self.get_connection(self.pacs_conn_id)
        except AirflowNotFoundException:
            raise ConfigError(
                f"the PACS connection '{self.pacs_conn_id}' does not exist: {HELP}"
            ) from None
        except Exception as exc:
            if classify(exc) is Failure.TRANSIENT:
                raise TransientError(
                    f"the PACS connection '{self.pacs_conn_id}' cannot be read now "
                    f"({type(exc).__name__}); the task is retried"
                ) from None
            raise

    def get_pacs(self, name: str) -> PacsConnection:
        """The connection as a PacsConnection named ``name`` (validated: ConfigError)."""
        conn = self._connection()
        raw = conn.extra_dejson or {}
        # the form stores its fields by name; older forms prefixed them extra__<type>__
        prefix = f"extra__{conn.conn_type}__"
        extra = {k.removeprefix(prefix): v for k, v in raw.items() if v not in (None, "")}
        values: dict[str, Any] = {k: extra[k] for k in _EXTRAS if k in extra}
        if conn.conn_type == "dicomweb":
            host = conn.host or ""
            if host and "://" not in host:
                host = f"https://{host}"
            if conn.port and host and f":{conn.port}" not in host.split("/", 3)[2]:
                scheme, rest = host.split("://", 1)
                netloc, _, path = rest.partition("/")
                host = f"{scheme}://{netloc}:{conn.port}/{path}".rstrip("/")
            if conn.schema and not host.rstrip("/").endswith(conn.schema.strip("/")):
                host = f"{host.rstrip('/')}/{conn.schema.strip('/')}"
            values.update(
                method="dicomweb",
                dicomweb_url=host,
                username=conn.login or "",
                password=conn.password or "",
            )
        else:
            values.update(
                host=conn.host or "",
                port=conn.port or 104,
                called_ae=conn.schema or "ANY-SCP",
                calling_ae=conn.login or "SENDIT",
                method=str(extra.get("method", "c-get")).lower(),
            )
        try:
            return PacsConnection.from_dict(name, values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"the PACS connection '{self.pacs_conn_id}' has an invalid field "
                f"({type(exc).__name__}): {HELP}"
            ) from None


class DicomwebHook(PacsHook):
    """The same hook, registered for the ``dicomweb`` connection type (its own form)."""

    conn_type = "dicomweb"
    hook_name = "DICOMweb (QIDO-RS/WADO-RS)"
