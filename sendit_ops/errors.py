"""Exceptions with messages meant for a radiology IT admin (never carrying patient values)."""

from __future__ import annotations


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
