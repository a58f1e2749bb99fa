"""A job's bytes in hand, and their sha256: as they came, out of shared memory, or read
from the file's path.

Runs in a worker process. The service leaves a whole file's sha256 to the worker,
which touches every byte anyway; the claim on those bytes is taken when the result
comes back. With `[pipeline] send = "paths"` (the default of local workers) the
service does not read the file either: it sends the path and the size the file had
when it settled, and the worker reads it, if it is still a regular file. What the
worker reads must be the file the service saw: one that grew or shrank by then, or
is gone (or whose bytes do not match a sha256 the job carries), is not decoded. It
comes back as a `Failure` named in `jobs.NOT_AS_SEEN`, which the service resolves as
it would its own finding (changed, vanished, unreadable) for that file alone, never
as a quarantine; the commit's own check (size and mtime) would otherwise find it
changed with its whole task.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace

from .. import regular, shared
from ..files import mtime_ns
from ..jobs import Failure, Job


def message(exc: BaseException) -> str:
    """An exception's text, even from an exception whose __str__ is broken."""
    try:
        return str(exc) or repr(exc)
    except Exception:
        return f"{type(exc).__name__} (its message could not be read)"


def with_bytes(job: Job) -> Job | Failure:
    """The job with its bytes in `data` and its sha256, or why they could not be had."""
    if job.path is not None:
        return _read_path(job, job.path)
    if job.shared is not None:
        try:
            job = replace(
                job, data=shared.take(job.shared, job.offset, job.size), shared=None
            )
        except (OSError, MemoryError, ValueError) as exc:  # removed from /dev/shm underneath us
            return Failure(
                "InputLost",
                f"its bytes were gone from shared memory before a worker read them"
                f" ({message(exc)}); drop the file again to ingest it",
            )
    if not job.sha256:
        job = replace(job, sha256=hashlib.sha256(job.data).hexdigest())
    return job


def _read_path(job: Job, path: str) -> Job | Failure:
    try:
        # One byte past the expected size tells a grown file from a complete one without
        # reading all of a file appended to without end.
        with open(path, "rb", opener=regular.settled_opener) as fh:
            data = fh.read(job.size + 1)
            written = mtime_ns(os.fstat(fh.fileno()))  # after the read: a write during it too
    except FileNotFoundError:
        return Failure("InputVanished", f"{path} was gone when a worker went to read it")
    except regular.BeingWritten:
        return Failure("InputChanged", f"{regular.BEING_WRITTEN}, though it settled")
    except OSError as exc:
        return Failure("InputUnreadable", f"a worker could not read {path}: {message(exc)}")
    if len(data) > job.size:
        return Failure(
            "InputChanged", f"it grew past the {job.size} bytes it settled at before a worker"
            " read it",
        )
    if len(data) < job.size:
        return Failure(
            "InputChanged", f"a worker found {len(data)} bytes where it settled at {job.size}"
        )
    if job.mtime_ns is not None and written != job.mtime_ns:
        return Failure(
            "InputChanged", "it was written again after it settled, before a worker read it"
        )
    digest = hashlib.sha256(data).hexdigest()
    if job.sha256 and digest != job.sha256:
        return Failure("InputChanged", "a worker read other bytes than the service hashed")
    return replace(job, data=data, path=None, sha256=digest)


# Read a file to hash a few megabytes at a time: it may be far bigger than memory.
HASH_CHUNK_BYTES = 8 << 20


def sha256_of_path(path: str) -> tuple[str, int]:
    """The sha256 and length of a file too big to hold, read from its path: the hash pass
    of a streamed file, done by a worker that sees the drop folder, so that the service's
    own process does not hash every byte. Raises OSError as `open` and `read` do."""
    digest = hashlib.sha256()
    length = 0
    with open(path, "rb", buffering=0, opener=regular.settled_opener) as fh:
        buffer = bytearray(HASH_CHUNK_BYTES)
        view = memoryview(buffer)
        while got := fh.readinto(buffer):
            digest.update(view[:got])
            length += got
    return digest.hexdigest(), length
