"""A batch's status follows from its files: the least advanced file decides, failures end in error."""

from __future__ import annotations

import uuid

from shared.db import Executor, batches


def decide(file_states: list[str], ok_rows: int, failed_rows: int = 0) -> tuple[str, str | None] | None:
    """(status, error) for a batch whose rows are split into files; None = nothing to change yet."""
    if not file_states:
        if ok_rows:
            return None
        if failed_rows:
            return "error", "no conversion of this batch could be uploaded; see errors"
        return "completed", None  # every row was a duplicate of one sent before: nothing left to send
    if any(state in ("new", "uploading") for state in file_states):
        return "pending", None
    if "uploaded" in file_states:
        return "uploaded", None
    if "processing" in file_states:
        return "processing", None
    failed = file_states.count("failed")
    if failed:
        return "error", f"{failed} of {len(file_states)} Metrika uploads failed; see errors"
    return "completed", None


async def refresh(db: Executor, batch_id: uuid.UUID) -> None:
    """Bring the batch's status along with its files; call it in the transaction that changed a file."""
    decision = decide(await batches.file_states(db, batch_id), *await batches.row_counts(db, batch_id))
    if decision is not None:
        await batches.set_status_from_files(db, batch_id, *decision)
