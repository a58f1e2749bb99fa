"""Above the boundary: everything here runs on the event loop, in the main process.

    watch ──> settle ──> read (aiofiles) ──> bounded queue ──> to_compute ══> worker
                                                                   │
                      ledger + part files (in a thread) <── commit ┘

Rules this package keeps:
- `to_compute` is the only module that calls `loop.run_in_executor`, and the
  service owns the one executor it uses.
- Blocking work (hashing big buffers, Parquet writes, SQLite, directory walks)
  goes to a thread with `asyncio.to_thread`; nothing over about 1 ms runs on the loop.
- Nothing here is imported by `ingest.compute`.
"""
