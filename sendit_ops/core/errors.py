"""Exceptions with messages meant for a radiology IT admin (never carrying patient values)."""

from __future__ import annotations

import errno
from collections.abc import Iterable
from enum import StrEnum
from typing import Protocol


class SenditError(Exception):
    """Base class: the message is safe to log (no PHI) and says what to do."""


class ConfigError(SenditError):
    """A setting is missing or invalid; nothing was processed."""


class BatchError(SenditError):
    """One batch cannot continue; it goes to ERROR with this reason, other batches go on."""


class ProviderError(BatchError):
    """The pseudonym provider failed or gave a doubtful answer for a batch."""


class LeakError(BatchError):
    """An original identifier was found in what would leave the machine."""


class DeliveryError(BatchError):
    """Delivery of one batch failed permanently (conflict, integrity, refusal)."""


class RunNeedsAttention(SenditError):
    """The run finished but some batches are in ERROR: a person must look at them."""


class NoSpaceError(BatchError):
    """A disk filled up (ENOSPC) while a batch was written: says which disk and roughly how
    much room the batch needs, which is what an admin must know to free space."""

    def __init__(self, where: str, need_bytes: int) -> None:
        self.where = where
        self.need_mb = max(1, -(-int(need_bytes) // 1_000_000))
        super().__init__(
            f"no space left on the {where} (need ~{self.need_mb:,} MB); free space there, "
            "then rerun the batch"
        )


def is_no_space(exc: BaseException | None) -> bool:
    """True when a disk was full (ENOSPC), also when a library wrapped that error in one of
    its own (pydicom raises ``OSError("With tag (7FE0,0010) got exception: ...")`` without
    an errno, the disk-full error as its cause)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class TransientError(SenditError):
    """A service sendit talks to (Cloud Storage, BigQuery, DASHER, Airflow's API) could not
    be reached or answered "try later". Nothing about the batches is wrong: the task raises
    it so Airflow's retries run the same work again later; batches not delivered yet stay
    where they were (DONEPROCESSING), so the retry delivers them, once."""


class Failure(StrEnum):
    """What an exception means for the run (see ``classify``)."""

    TRANSIENT = "transient"  # the same call may work later: let Airflow retry the task
    CONFIG = "config"  # a person must fix a setting, a credential or a permission
    PERMANENT = "permanent"  # this item cannot go as it is: its batch goes to ERROR


# HTTP answers meaning "not now": a timeout, a rate limit, a server or gateway in trouble
RETRYABLE_HTTP = frozenset({408, 429, 500, 502, 503, 504})
# HTTP answers meaning "not with this setup": credentials, permissions, a missing bucket
CONFIG_HTTP = frozenset({401, 403, 404})
# OS-level network failures that are not ConnectionError / TimeoutError subclasses
_NETWORK_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EHOSTDOWN, errno.ETIMEDOUT}
)


class ErrorClassifier(Protocol):
    """What a vendor adapter knows about its library's exceptions: the Failure an exception
    means, or None when it is not one of that library's (the next rule decides)."""

    def __call__(self, exc: BaseException) -> Failure | None: ...


def classify(exc: BaseException, vendors: Iterable[ErrorClassifier] = ()) -> Failure:
    """Whether ``exc`` is worth a retry (TRANSIENT), needs a person to fix the setup
    (CONFIG), or condemns only the item at hand (PERMANENT).

    Why it matters: Airflow retries a failed task (2 retries, exponential delay from 20 s),
    but sendit turns ConfigError into "fail now, do not retry" because a retry cannot fix a
    wrong setting. Counting an unreachable service as a configuration error (as sendit once
    did) gave up on deliveries a minute later would have done; counting a wrong bucket as
    transient would retry in vain and bury the message. The rules, first match wins:

    - sendit's own errors say what they are (TransientError, ConfigError, a BatchError);
    - a full disk (ENOSPC) is the batch's problem: it names the disk and the space needed;
    - the ``vendors``' classifiers, in order: each adapter (the Google target, the DASHER
      client and hook) knows its own library's exceptions, so this module imports none;
    - an HTTP status (an exception with ``.code`` or ``.response.status_code``): 408, 429
      and 5xx are transient, and so is a 400 "due to concurrent update" (BigQuery: two
      MERGE statements on one table; the loser succeeds when run again); 401/403/404 are
      configuration (credentials, permissions, a bucket or dataset that does not exist),
      other 4xx permanent (the request itself is refused);
    - the standard library's network failures (connection refused/reset/aborted, timeouts,
      unreachable hosts, a cut HTTP response) are transient;
    - anything else is permanent: the caller words it for the batch (or, where a client is
      being built, as a configuration error).
    """
    if isinstance(exc, TransientError):
        return Failure.TRANSIENT
    if isinstance(exc, ConfigError):
        return Failure.CONFIG
    if isinstance(exc, SenditError) or is_no_space(exc):
        return Failure.PERMANENT
    for vendor in vendors:
        found = vendor(exc)
        if found is not None:
            return found
    status = http_status(exc)
    if status is not None:
        return failure_of_status(status, exc)
    if _network_failure(exc):
        return Failure.TRANSIENT
    return Failure.PERMANENT


def failure_of_status(status: int, exc: BaseException) -> Failure:
    """The meaning of an HTTP error status (see ``classify``)."""
    if status in RETRYABLE_HTTP or status >= 500 or _lost_a_race(exc):
        return Failure.TRANSIENT
    return Failure.CONFIG if status in CONFIG_HTTP else Failure.PERMANENT


def http_status(exc: BaseException) -> int | None:
    """The HTTP status an error answer carries (``.response.status_code``: requests,
    httpx), else None (a vendor's classifier reads its own kinds of answers)."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) and 100 <= status < 600 else None


def _lost_a_race(exc: BaseException) -> bool:
    """BigQuery aborts a DML statement that raced another on the same table with a 400
    ("Transaction is aborted due to concurrent update", "Could not serialize access to
    table ... due to concurrent update"). The text is only inspected, never logged."""
    return "concurrent update" in str(exc).lower()


def _network_failure(exc: BaseException) -> bool:
    import http.client

    kinds: tuple[type[BaseException], ...] = (
        ConnectionError,  # refused, reset, aborted, broken pipe (RemoteDisconnected too)
        TimeoutError,  # socket.timeout
        http.client.HTTPException,  # IncompleteRead, BadStatusLine: a cut response
    )
    if isinstance(exc, kinds):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS
