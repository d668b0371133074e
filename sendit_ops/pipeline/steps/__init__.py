"""The four batch steps, one module each: filter, pseudonymize, anonymize, package.

Each step is a function ``(context, record, files) -> None``: it reads what the step before
it wrote (``pipeline.work_files``, typed records), does its work, writes its own record for
the next step and updates the batch record (metrics, outputs, state). The bookkeeping around
a step (which batches it takes, errors, the ledger) is ``pipeline.batch.Pipeline``'s.
"""
