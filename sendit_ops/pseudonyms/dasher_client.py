"""DASHER, Stanford's identifier service: the client side of its contract.

``POST {base}/{version}/uid/{study}`` with a bearer token and a body of identifiers; a 401
means the access token expired: ``POST token_uri`` with the refresh token returns new access
and refresh tokens, which are kept (the old refresh token may be dead) through a TokenStore,
then the call is retried once. The refresh runs under a lock shared by every process using
the same tokens (``refresh_lock``: the ledger's named lock in Airflow), and re-reads the
tokens inside it: refresh tokens are single-use, so of several processes whose access token
expired together only the first refreshes, the others use what it stored. At most 1000 items
per entity per request: larger requests are split and the results reassembled. Timeouts,
connection errors, 429 and 5xx are retried (tenacity) with exponential backoff and jitter
(honouring Retry-After), bounded in attempts and total time; other 4xx are not retried.
Any failed or incomplete answer raises ProviderError, whose message never carries
identifiers or tokens.
"""

from __future__ import annotations

import fcntl
import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from copy import deepcopy
from dataclasses import asdict, dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
)

from sendit_ops.core.errors import ConfigError, Failure, ProviderError

log = logging.getLogger("sendit.dasher")
MAX_ITEMS_PER_ENTITY = 1000
RETRY_STATUS = {429, 500, 502, 503, 504}


def requests_failure(exc: BaseException) -> Failure | None:
    """The requests/urllib3 stack's network failures (the DASHER client's HTTP library,
    and Google's): transient. An ErrorClassifier (``core.errors.classify``)."""
    import urllib3

    kinds: tuple[type[BaseException], ...] = (
        requests.ConnectionError,
        requests.Timeout,
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.TimeoutError,
        urllib3.exceptions.NewConnectionError,
        urllib3.exceptions.MaxRetryError,
    )
    return Failure.TRANSIENT if isinstance(exc, kinds) else None


@dataclass(frozen=True)
class Tokens:
    """DASHER credentials: what sendit's ``.stanford`` JSON file held."""

    access_token: str
    refresh_token: str
    token_uri: str
    client_id: str = ""

    @classmethod
    def from_stanford_json(cls, data: dict[str, Any]) -> Tokens:
        """Read sendit's credentials file (``accessToken``, ``refreshToken``, ...)."""
        try:
            return cls(
                data["accessToken"],
                data["refreshToken"],
                data["token_uri"],
                data.get("client_id", ""),
            )
        except KeyError as exc:
            raise ProviderError(f"DASHER credentials lack '{exc.args[0]}'") from None


class TokenStore(Protocol):
    """Where rotated tokens are kept so the next task and the next run use them."""

    def load(self) -> Tokens:
        """The newest tokens."""
        ...

    def save(self, tokens: Tokens) -> None:
        """Keep rotated tokens."""
        ...


class FileTokenStore:
    """Tokens in a JSON file (mode 0600), locked while rotating; for the CLI and tests."""

    def __init__(self, path: str | Path, initial: Tokens | None = None):
        self.path = Path(path)
        if initial is not None and not self.path.exists():
            self.save(initial)

    def load(self) -> Tokens:
        """The newest tokens in the file."""
        return Tokens(**json.loads(self.path.read_text()))

    def save(self, tokens: Tokens) -> None:
        """Write tokens atomically."""
        from sendit_ops.core.atomic_files import write_atomic

        write_atomic(self.path, json.dumps(asdict(tokens)))

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise refreshes between processes sharing the file."""
        with open(self.path.with_name(self.path.name + ".lock"), "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield


STANFORD_FIELDS = {
    "accessToken": "the access token",
    "refreshToken": "the refresh token",
    "token_uri": "the URL where DASHER refreshes tokens",
}


def stanford_to_connection(data: dict[str, Any], base_url: str) -> dict[str, Any]:
    """Turn sendit's ``.stanford`` credentials JSON into an Airflow connection in Airflow's
    JSON form: the value of ``AIRFLOW_CONN_<CONN_ID>`` or of ``airflow connections add
    <conn_id> --conn-json``. It carries no ``conn_id`` (Airflow takes the id from the variable
    name or the command line, and refuses a JSON that names one). ``base_url``, if given,
    wins over the file's. A missing or empty field raises ConfigError naming it."""
    if not isinstance(data, dict):
        raise ConfigError("the DASHER credentials are not a JSON object")
    for field, meaning in STANFORD_FIELDS.items():
        if not isinstance(data.get(field), str) or not data[field].strip():
            raise ConfigError(f"the DASHER credentials lack '{field}' ({meaning})")
    tokens = Tokens.from_stanford_json(data)
    return {
        "conn_type": "dasher",
        "host": base_url or data.get("base_url") or "",
        "login": tokens.client_id,
        "password": tokens.access_token,
        "extra": {
            "refresh_token": tokens.refresh_token,
            "token_uri": tokens.token_uri,
            "api_version": "v1",
        },
    }


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop of one logical call."""

    max_attempts: int = 5
    max_total_seconds: float = 60.0
    base_delay: float = 0.5
    max_delay: float = 10.0
    timeout: tuple[float, float] = (5.0, 30.0)  # connect, read


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


class _Retryable(Exception):
    """A failure worth another attempt (unreachable, 429, 5xx); never leaves the client."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


RefreshLock = Callable[[], AbstractContextManager[None]]


class DasherClient:
    """Talks to DASHER for a base URL, with tokens from a TokenStore."""

    def __init__(
        self,
        base_url: str,
        store: TokenStore,
        *,
        api_version: str = "v1",
        policy: RetryPolicy | None = None,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        refresh_lock: RefreshLock | None = None,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ProviderError("the DASHER connection needs an http(s) URL as host")
        self.base_url = base_url.rstrip("/")
        self.store = store
        self.api_version = api_version.strip("/") or "v1"
        self.policy = policy or RetryPolicy()
        self.session = session or requests.Session()
        self._sleep = sleep
        # the store's own lock (a token file) unless the caller shares a wider one
        self.refresh_lock: RefreshLock = refresh_lock or getattr(store, "lock", None) or nullcontext

    # -- public ---------------------------------------------------------------------------

    def lookup(self, study: str, request: dict[str, Any]) -> dict[str, Any]:
        """Pseudonyms for a DASHER request body; splits entities with more than 1000 items."""
        results: list[dict[str, Any]] = []
        for part in split_request(request):
            body = self._call(study, part)
            results.extend(body["results"])
        merged = merge_results(results)
        check_complete(request, merged)
        return merged

    # -- internals ------------------------------------------------------------------------

    def _call(self, study: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/{self.api_version}/uid/{study}"
        policy = self.policy

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            hint = exc.wait if isinstance(exc, _Retryable) else None
            n = state.attempt_number
            delay = (
                hint
                if hint is not None
                else min(policy.max_delay, policy.base_delay * 2 ** (n - 1))
            )
            return delay + random.uniform(0, policy.base_delay)

        def give_up(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = exc.reason if isinstance(exc, _Retryable) else "DASHER failed"
            n = state.attempt_number
            if n >= policy.max_attempts:
                raise ProviderError(f"{reason}; gave up after {n} attempts")
            raise ProviderError(
                f"{reason}; gave up after {n} attempts "
                f"(retry budget of {policy.max_total_seconds:.0f} s spent)"
            )

        def log_retry(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            reason = exc.reason if isinstance(exc, _Retryable) else "DASHER failed"
            log.warning(
                "%s; retry %d in %.1f s", reason, state.attempt_number, state.upcoming_sleep
            )

        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            # stop_before_delay: no sleep may end past the budget (the next wait counts too)
            stop=stop_after_attempt(policy.max_attempts)
            | stop_before_delay(policy.max_total_seconds),
            wait=wait,
            sleep=self._sleep,
            before_sleep=log_retry,
            retry_error_callback=give_up,
        )
        refreshed = [False]
        return retrying(self._attempt, url, body, refreshed)

    def _attempt(self, url: str, body: dict[str, Any], refreshed: list[bool]) -> dict[str, Any]:
        """One call; a 401 refreshes the tokens once (per logical call) and calls again."""
        while True:
            tokens = self.store.load()
            try:
                response = self.session.post(
                    url,
                    json=body,
                    timeout=self.policy.timeout,
                    headers={"Authorization": f"Bearer {tokens.access_token}"},
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise _Retryable(f"DASHER unreachable ({type(exc).__name__})") from None
            if response.status_code != 401:
                break
            if refreshed[0]:
                raise ProviderError("DASHER refused the refreshed access token (401)")
            self._refresh(tokens)
            refreshed[0] = True
        if response.status_code in RETRY_STATUS:
            raise _Retryable(f"DASHER answered HTTP {response.status_code}", _retry_after(response))
        if response.status_code != 200:
            raise ProviderError(f"DASHER refused the request (HTTP {response.status_code})")
        try:
            answer = response.json()
        except ValueError:
            raise ProviderError("DASHER answer is not JSON (malformed response)") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
            raise ProviderError("DASHER answer has no 'results' (malformed response)")
        return answer

    def _refresh(self, used: Tokens) -> None:
        with self.refresh_lock():
            current = self.store.load()
            if current.access_token != used.access_token:
                return  # another process rotated the tokens meanwhile: use theirs
            try:
                response = self.session.post(
                    current.token_uri,
                    json={"refreshToken": current.refresh_token},
                    timeout=self.policy.timeout,
                )
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise ProviderError(f"DASHER token refresh failed ({type(exc).__name__})") from None
            if response.status_code != 200:
                raise ProviderError(
                    f"DASHER token refresh refused (HTTP {response.status_code}); the refresh "
                    "token may be expired: put new credentials in the DASHER connection"
                )
            try:
                data = response.json()
                rotated = Tokens(
                    data["accessToken"],
                    data.get("refreshToken") or current.refresh_token,
                    current.token_uri,
                    current.client_id,
                )
            except (ValueError, KeyError, TypeError):
                raise ProviderError("DASHER token refresh answer is malformed") from None
            self.store.save(rotated)
            log.info("DASHER access token refreshed and stored")


def split_request(request: dict[str, Any]) -> list[dict[str, Any]]:
    """Split a request so no entity carries more than 1000 items."""
    parts: list[list[dict[str, Any]]] = [[]]
    for entity in request.get("identifiers", []):
        items = entity.get("items", [])
        for start in range(0, max(len(items), 1), MAX_ITEMS_PER_ENTITY):
            piece = deepcopy({k: v for k, v in entity.items() if k != "items"})
            piece["items"] = items[start : start + MAX_ITEMS_PER_ENTITY]
            if start == 0:
                parts[-1].append(piece)
            else:
                parts.append([piece])
    return [{"identifiers": p} for p in parts if p]


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Reassemble split answers: one result per entity with all its items."""
    merged: dict[tuple[Any, Any], dict[str, Any]] = {}
    for entity in results:
        if not isinstance(entity, dict):
            raise ProviderError("DASHER answer has a malformed result")
        key = (entity.get("id_source"), entity.get("id"))
        if key in merged:
            merged[key]["items"].extend(entity.get("items") or [])
        else:
            merged[key] = {**entity, "items": list(entity.get("items") or [])}
    return {"results": list(merged.values())}


def check_complete(request: dict[str, Any], answer: dict[str, Any]) -> None:
    """Every entity and item sent must come back with a suid and a jitter."""
    got = {(e.get("id_source"), e.get("id")): e for e in answer["results"]}
    for entity in request.get("identifiers", []):
        result = got.get((entity["id_source"], entity["id"]))
        if result is None or not result.get("suid") or result.get("jitter") is None:
            raise ProviderError("DASHER answer lacks a patient that was sent (incomplete)")
        items = {
            (i.get("id_source"), i.get("id")): i
            for i in result.get("items") or []
            if isinstance(i, dict)
        }
        for item in entity.get("items", []):
            found = items.get((item["id_source"], item["id"]))
            if found is None or not found.get("suid") or found.get("jitter") is None:
                raise ProviderError("DASHER answer lacks a study that was sent (incomplete)")
