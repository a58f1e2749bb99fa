"""The durable output: part files, the ledger, the disposal of inputs, start-up repair.

Everything here is synchronous and runs in a thread of the main process (or in a
command such as `ingest status`), never on the event loop and never in a worker.

The commit protocol for one batch, and what a crash after each step leaves
(`parts.publish`, repaired by `parts.reconcile` at start-up):

    write temps + fsync   crash: orphan temps, inputs unrecorded -> temps removed, re-read
    ledger: part pending  crash: pending part, nothing visible    -> part discarded, re-read
    rename + fsync dirs   crash: some parts visible but pending   -> parts deleted, re-read
    (Delta) log entry     crash: the log has it, ledger pending   -> finished from the log
    ledger: committed     crash: inputs still in the drop folder  -> known, only disposed of
    dispose of inputs     crash: archive/delete half done         -> finished at start-up

A part is visible to readers only once renamed, and counted only once committed.
A part the ledger does not hold as committed is not ours to keep: start-up moves
it to `_ingest/orphans/`.

Compaction and rewrites to a wider schema replace committed parts by swapping a
staged folder with the live one; their own crash table is `compact.py`'s docstring,
and start-up repairs them first (`swap.repair_swaps`, from `parts.reconcile`).

With `format = "delta"` every commit, compaction and rewrite is also one Delta commit
per table, made after the rename (or the swap) and before the ledger's commit; its
crash table is `delta.py`'s docstring, and `delta_repair.py` makes the ledger and each
log agree at start-up.
"""
