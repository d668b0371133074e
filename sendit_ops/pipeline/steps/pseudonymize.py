"""Step 2, pseudonymize: stage FILTERED -> PSEUDONYMIZED, one provider request per batch."""

from __future__ import annotations

from dataclasses import replace

from sendit_ops.core.lifecycle import Stage
from sendit_ops.core.records import BatchRecord
from sendit_ops.pipeline.context import StepContext
from sendit_ops.pipeline.work_files import BatchFiles
from sendit_ops.pseudonyms.providers import build_request, parse_response


def pseudonymize_batch(ctx: StepContext, record: BatchRecord, files: BatchFiles) -> None:
    """Ask the provider for the study's pseudonyms; keep them (``pseudonym.json``) and
    record them, with where they came from, on the batch."""
    identity = files.read_study().identity
    answer = ctx.pseudonym_provider().lookup(ctx.settings.study_name, build_request([identity]))
    pseudonym = parse_response(answer, identity)
    files.write_pseudonym(pseudonym)
    record.outputs = replace(
        record.outputs,
        stage=Stage.PSEUDONYMIZED,
        provider=ctx.settings.pseudonym_provider,
        pseudonym_source=ctx.pseudonym_source,
        entity_suid=pseudonym.entity_suid,
        item_suid=pseudonym.item_suid,
    )
