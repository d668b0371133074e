"""Identifying information in free text that the header does not name (issue 23).

``find_phi(text)`` finds names of any person, addresses and institutions (with a facility
word in ``patterns``, without one in ``institutions``), phone and fax
numbers, e-mail addresses, URLs, ids, ages over 89 and dates; ``policy.clean_text`` replaces
them by typed placeholders (``[name]``, ``[date]``...) or shifts the dates. The Clean
Descriptors option runs it on every kept text attribute after the study's own identifiers
are replaced (``dicom.anonymize``). Measured on ``tests/data/free_text_phi.txt``; figures and
the choice of libraries are in docs/deid_profile.md.
"""

from sendit_ops.dicom.free_text.detector import find_phi, resolve
from sendit_ops.dicom.free_text.model import Finding, Kind

__all__ = ["Finding", "Kind", "find_phi", "resolve"]
