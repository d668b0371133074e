"""Exceptions with messages meant for a radiology IT admin (never carrying patient values)."""

from __future__ import annotations

import errno


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
