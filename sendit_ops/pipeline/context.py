"""What the steps of one run share: settings, the key, and what is parsed once per process.

The steps (``pipeline.steps``) take a ``StepContext`` and a batch; they never see the
ledger. ``pipeline.batch.Pipeline`` is a ``StepContext`` that also keeps the batches'
bookkeeping, so a task builds one object and the steps reuse its caches (recipes, profile,
UID remapper) across the batches it runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from sendit_ops.core.errors import ProviderError
from sendit_ops.core.progress import ProgressLog
from sendit_ops.core.settings import Settings
from sendit_ops.dicom.annex_e import Profile
from sendit_ops.dicom.anonymize import load_profile, load_recipe
from sendit_ops.dicom.filters import FilterRules, load_filter_recipe
from sendit_ops.dicom.identifiers import Needles
from sendit_ops.dicom.leak_scan import LeakScanner
from sendit_ops.dicom.recipe_engine import CompiledRecipe
from sendit_ops.dicom.recipe_variables import uid_remapper
from sendit_ops.pseudonyms.providers import LocalKeyedProvider, PseudonymProvider


@dataclass
class StepContext:
    """Settings, key and parsed recipes (each cached on first use). ``provider``: the
    pseudonym provider a task was given (the DASHER client); None builds the local keyed
    one from the key."""

    settings: Settings
    secret_key: bytes
    # keyword-only: a subclass adds positional fields after these two
    provider: PseudonymProvider | None = field(default=None, kw_only=True)
    # the running step's progress log (a long batch reports its images to it)
    progress: ProgressLog | None = field(default=None, init=False, repr=False, compare=False)

    @cached_property
    def filter_rules(self) -> FilterRules:
        """Filter recipes, parsed once."""
        s = self.settings
        return FilterRules(
            load_filter_recipe(s.study_deid),
            s.modality_allowlist,
            s.image_type_required,
            pixel_cleaning=s.pixel_cleaning,
        )

    @cached_property
    def recipe(self) -> CompiledRecipe:
        """The site's header recipe (deid syntax), parsed once; applied after the profile."""
        return load_recipe(self.settings.recipe)

    @cached_property
    def profile(self) -> Profile:
        """The Annex E profile with the configured options, compiled once per process."""
        return load_profile(self.settings.deid_options, self.settings.clean_descriptor_attributes)

    def scanner(self, needles: Needles) -> LeakScanner:
        """The leak check of one batch: its original values, less what an option keeps on
        purpose (full dates, UIDs, institution names)."""
        return LeakScanner(needles, kept=self.profile.kept_needles)

    @cached_property
    def pseudonym_source(self) -> str:
        """Which pseudonyms this run gives (provider and what its answers depend on: the
        local provider a fingerprint of the secret key, DASHER the connection and study).
        Recorded per batch: a run with another source would deliver a second copy of a
        study under new ids, so discover refuses it unless re-delivery is asked for."""
        s = self.settings
        if s.pseudonym_provider == "local":
            digest = hashlib.sha256(b"sendit-key-id:" + self.secret_key).hexdigest()[:12]
            return "local:" + digest
        return f"dasher:{s.dasher_conn_id}/{s.study_name}"

    @cached_property
    def remap(self) -> Callable[[str], str]:
        """The keyed UID remapper (one cache per task)."""
        return uid_remapper(self.secret_key)

    def pseudonym_provider(self) -> PseudonymProvider:
        """The provider the pseudonymize step asks: the one given, else (local provider
        configured) the keyed one; DASHER without a client is a setup error."""
        if self.provider is None:
            if self.settings.pseudonym_provider != "local":
                raise ProviderError("no DASHER client was given to this step")
            self.provider = LocalKeyedProvider(self.secret_key)
        return self.provider
