"""A gzip'd file decompressed in a worker no further than the service measured it.

Runs in a worker process. The service decompressed the file once, keeping
nothing, to learn what it becomes in memory and to charge the byte budget with
that (`footprint`); it passes the count on in `Job.in_memory`. Bytes that
decompress to more than that were rewritten in place after they were measured,
and are refused rather than trusted: a thousandfold expansion must not happen
in a worker because a file changed under the service.
"""

from __future__ import annotations

from ..inflate import GzipError, Inflater
from ..jobs import Job
from .decode import DecodeError


class TooLarge(Exception):
    """Raised when a file becomes more in memory than the service measured it to."""


def plain_bytes(job: Job) -> bytes:
    """The job's bytes decompressed, no more than `job.in_memory` less their own length.
    Raises DecodeError if they are not a complete gzip stream, TooLarge if they expand past
    the measure."""
    limit = job.in_memory - len(job.data)
    inflater = Inflater()
    inflater.feed(job.data)
    try:
        plain = inflater.read(limit + 1)
        if len(plain) > limit:
            raise TooLarge(
                f"it decompresses to more than the {limit} bytes it was measured at before it"
                " was read (was it rewritten in place?); drop it again to ingest it"
            )
        inflater.close()
    except GzipError as exc:
        raise DecodeError(str(exc), offset=exc.offset) from None
    return plain


def measured(job: Job) -> bool:
    """Whether the job is a gzip'd file whose plain size the service measured."""
    return job.in_memory > 0 and job.source_file.lower().endswith(".gz")
