"""Everything here runs in a worker process.

Plain synchronous functions over numpy and pyarrow. Nothing here imports
asyncio or `ingest.aio`; a test parses these modules to keep it so. The one
entry point the service calls is `task.process`, a top-level function that
takes a `jobs.Job` and returns a `jobs.Outcome`.
"""
