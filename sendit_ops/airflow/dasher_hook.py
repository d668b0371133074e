"""DasherHook: the DASHER client configured from an Airflow Connection (type ``dasher``).

Connection fields: host = DASHER base URL, login = client id, password = access token;
extras ``refresh_token``, ``token_uri``, ``api_version`` (default v1), ``timeout``,
``max_attempts``, ``max_total_seconds``. Rotated tokens are kept in the Variable
``sendit_dasher_token_<conn_id>`` (masked: its name contains "token"), tied to the
Connection's refresh token, so the next task and the next run use them; putting new
credentials in the Connection starts over from those.

Refresh tokens are single-use: a refresh runs under the ledger's named lock
``dasher-token-<conn_id>`` (PostgreSQL advisory lock, or a lock file beside an SQLite
ledger), so workers whose access token expired together refresh once; the others read the
rotated tokens inside the lock. A Variable alone has no lock.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from airflow.sdk import BaseHook, Variable
from airflow.sdk.log import mask_secret

from sendit_ops.core.errors import ConfigError, Failure, ProviderError, TransientError, classify
from sendit_ops.pseudonyms.dasher_client import (
    DasherClient,
    RefreshLock,
    RetryPolicy,
    Tokens,
)

CONNECTION_HELP = (
    "create it in Admin > Connections (type 'DASHER'), or "
    "`airflow connections add dasher_default --conn-type dasher --conn-host https://… "
    '--conn-password <access token> --conn-extra \'{"refresh_token": "…", '
    '"token_uri": "https://…/token"}\'`, or import sendit\'s .stanford file with '
    '`export AIRFLOW_CONN_DASHER_DEFAULT="$(sendit import-stanford <file>)"` (docs/dasher.md)'
)


def airflow_api_failure(exc: BaseException) -> Failure | None:
    """The Task SDK talks to Airflow's API with httpx: its transport errors are transient
    (an ErrorClassifier, ``core.errors.classify``)."""
    import httpx

    return Failure.TRANSIENT if isinstance(exc, httpx.TransportError) else None


def token_variable(conn_id: str) -> str:
    """The Variable holding the rotated tokens of a connection."""
    return f"sendit_dasher_token_{conn_id}"


class VariableTokenStore:
    """Rotated tokens in an Airflow Variable, valid while the Connection's refresh token is
    the one they were rotated from (a new Connection value resets them)."""

    def __init__(self, conn_id: str, initial: Tokens):
        self.key = token_variable(conn_id)
        self.initial = initial
        self.seed = hashlib.sha256(initial.refresh_token.encode()).hexdigest()[:16]

    def load(self) -> Tokens:
        """The newest tokens: the stored rotation, else the Connection's."""
        raw = Variable.get(self.key, default=None)
        if raw:
            try:
                data = json.loads(raw)
                if data.get("seed") == self.seed:
                    tokens = Tokens(**data["tokens"])
                    mask_secret(tokens.access_token)
                    mask_secret(tokens.refresh_token)
                    return tokens
            except (ValueError, TypeError, KeyError):
                pass
        return self.initial

    def save(self, tokens: Tokens) -> None:
        """Keep rotated tokens for the next task and run."""
        mask_secret(tokens.access_token)
        mask_secret(tokens.refresh_token)
        Variable.set(
            self.key,
            json.dumps({"seed": self.seed, "tokens": asdict(tokens)}),
            description="DASHER tokens rotated by sendit (do not edit)",
        )


class DasherHook(BaseHook):
    """Pseudonyms from DASHER, configured from a Connection.

    The connection form (fields, labels, help) is declared in ``sendit_ops.airflow.provider_info``.
    """

    conn_name_attr = "dasher_conn_id"
    default_conn_name = "dasher_default"
    conn_type = "dasher"
    hook_name = "DASHER (Stanford identifiers)"

    def __init__(
        self,
        dasher_conn_id: str = default_conn_name,
        ledger_url: str | None = None,
        **kwargs: Any,
    ):
        """``ledger_url``: the ledger whose named lock serialises token refreshes (the
        pipeline's; without it, refreshes in several processes at once may collide)."""
        super().__init__(**kwargs)
        self.dasher_conn_id = dasher_conn_id
        self.ledger_url = ledger_url
        self._client: DasherClient | None = None

    def _connection(self):
        """The Connection; a missing or unreadable one is a ConfigError (an admin must add or
        fix it), but Airflow's API not answering now is TransientError (the task's retry
        reads it: failing at once would give up on a connection that exists)."""
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            return self.get_connection(self.dasher_conn_id)
        except AirflowNotFoundException:
            raise ConfigError(
                f"the DASHER connection '{self.dasher_conn_id}' does not exist: {CONNECTION_HELP}"
            ) from None
        except Exception as exc:
            if classify(exc, (airflow_api_failure,)) is Failure.TRANSIENT:
                raise TransientError(
                    f"the DASHER connection '{self.dasher_conn_id}' cannot be read now "
                    f"({type(exc).__name__}); the task is retried"
                ) from None
            raise ConfigError(
                f"the DASHER connection '{self.dasher_conn_id}' cannot be read "
                f"({type(exc).__name__}): {CONNECTION_HELP}"
            ) from None

    def get_client(self) -> DasherClient:
        """A DasherClient for the connection (validated: what is wrong with the connection's
        fields is a ConfigError, never a batch's ProviderError, since no retry and no other
        batch can fix it)."""
        if self._client is not None:
            return self._client
        try:
            self._client = self._build_client()
        except ProviderError as exc:  # e.g. a host that is not an http(s) URL
            raise ConfigError(
                f"the DASHER connection '{self.dasher_conn_id}' is invalid ({exc}): "
                f"{CONNECTION_HELP}"
            ) from None
        except (ValueError, TypeError) as exc:  # e.g. "timeout": "soon"
            raise ConfigError(
                f"the DASHER connection '{self.dasher_conn_id}' has an invalid extra "
                f"({type(exc).__name__}): {CONNECTION_HELP}"
            ) from None
        return self._client

    def _build_client(self) -> DasherClient:
        conn = self._connection()
        extra = conn.extra_dejson or {}
        missing = [
            name
            for name, value in (
                ("host", conn.host),
                ("password", conn.password),
                ("refresh_token", extra.get("refresh_token")),
                ("token_uri", extra.get("token_uri")),
            )
            if not value
        ]
        if missing:
            raise ConfigError(
                f"the DASHER connection '{self.dasher_conn_id}' lacks "
                f"{', '.join(missing)}: {CONNECTION_HELP}"
            )
        host = conn.host if "://" in conn.host else f"https://{conn.host}"
        if conn.port and f":{conn.port}" not in host:
            host = f"{host}:{conn.port}"
        initial = Tokens(
            conn.password, extra["refresh_token"], extra["token_uri"], conn.login or ""
        )
        policy = RetryPolicy(
            max_attempts=int(extra.get("max_attempts", 5)),
            max_total_seconds=float(extra.get("max_total_seconds", 60)),
            timeout=(5.0, float(extra.get("timeout", 30))),
        )
        return DasherClient(
            host,
            VariableTokenStore(self.dasher_conn_id, initial),
            api_version=str(extra.get("api_version", "v1")),
            policy=policy,
            refresh_lock=self._refresh_lock(),
        )

    def _refresh_lock(self) -> RefreshLock | None:
        if not self.ledger_url:
            return None
        from sendit_ops.core.ledger.named_lock import named_lock

        url, name = self.ledger_url, f"dasher-token-{self.dasher_conn_id}"
        return lambda: named_lock(url, name)

    def check_configured(self) -> None:
        """Raise ConfigError when the connection is missing or incomplete."""
        self.get_client()

    def lookup(self, study: str, request: dict[str, Any]) -> dict[str, Any]:
        """DASHER's answer for a request body (see pseudonyms.dasher_client.DasherClient)."""
        return self.get_client().lookup(study, request)
