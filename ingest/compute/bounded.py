"""A compressed file decoded in a worker no further than the service measured it.

Runs in a worker process. Before a compressed file is read, the service finds
what it becomes in memory (`footprint`), charges the byte budget with that,
and passes it on in `Job.in_memory`. A gzip'd file is decompressed no further;
an .npz, Parquet or Arrow file is measured again from its headers. Bytes that
become more than they were measured to were rewritten in place after they were
measured, and are refused rather than trusted: a thousandfold expansion must
not happen in a worker because a file changed under the service.
"""

from __future__ import annotations

import pyarrow as pa

from ..dialect import Dialect
from ..footprint import measured, of_bytes
from ..inflate import MEASURE_BYTES, GzipError, Inflater, inner_name
from ..jobs import Job, TableSpec
from .decode import DecodeError, decode, decode_file
from .names import known_columns, read_as_text

_REWRITTEN = "was it rewritten in place?); drop it again to ingest it"


class TooLarge(Exception):
    """Raised when a file becomes more in memory than the service measured it to."""


def bounded(job: Job) -> bool:
    """Whether the job is a compressed file the service measured."""
    return job.in_memory > 0 and measured(job.source_file)


def check_npy(job: Job, memory_mb: int) -> None:
    """Raise TooLarge if an .npy's header says its array, as a table holds it, takes more
    than memory_mb: a header of a few bytes can claim 30 million values of no width, each
    a Python object on its way to the table. The service charged it its size on disk:
    its header is read here, off the service's process, before numpy allocates a thing."""
    if memory_mb and job.source_file.lower().endswith(".npy"):
        found = of_bytes(job.source_file, job.data).bytes
        if found > memory_mb * 1024 * 1024:
            raise TooLarge(
                f"its header says it takes {found} bytes in memory, more than"
                f" memory_mb = {memory_mb} holds"
            )


def decode_bounded(job: Job, spec: TableSpec) -> tuple[pa.Table, Dialect | None]:
    """Decode a measured job of the table `spec`, and the dialect a CSV was read with, as
    `decode_file` does. Raises DecodeError, or TooLarge if it grew past its measure."""
    name = job.source_file
    if name.lower().endswith(".gz"):
        return decode_file(
            inner_name(name), plain_bytes(job), spec.csv, spec.dialect, read_as_text(spec, name),
            known_columns(spec.schema),
        )
    found = of_bytes(name, job.data)
    if found.unbounded or found.bytes > job.in_memory:
        raise TooLarge(
            f"its headers now say it takes {found.bytes} bytes in memory, more than the"
            f" {job.in_memory} it was measured at before it was read ({_REWRITTEN}"
        )
    return decode(name, job.data), None


def plain_bytes(job: Job) -> bytes:
    """A gzip'd job's bytes decompressed, no more than `job.in_memory` less their own length.
    Raises DecodeError if they are not a complete gzip stream, TooLarge if they expand past
    the measure."""
    limit = job.in_memory - len(job.data)
    inflater = Inflater()
    inflater.feed(job.data)
    try:
        plain = inflater.read(limit + 1)
        if len(plain) > limit:
            # Measuring stops at bytes that are not gzip, and zlib keeps nothing of the call
            # that finds them: up to MEASURE_BYTES before them went uncounted. Bytes found
            # bad within that are what the file is; only past it was the file rewritten.
            inflater.read(MEASURE_BYTES)
            if inflater.error is not None:
                raise inflater.error
            raise TooLarge(
                f"it decompresses to more than the {limit} bytes it was measured at before it"
                f" was read ({_REWRITTEN}"
            )
        inflater.close()
    except GzipError as exc:
        raise DecodeError(str(exc), offset=exc.offset) from None
    return plain
