"""The errors a worker finds in its input.

Raised in a worker process and returned to the service as a `jobs.Failure`,
never pickled as an exception.
"""

from __future__ import annotations

FIXED_TYPES = (
    " (a file read in blocks keeps the column types of its first block;"
    " raise [pipeline] memory_mb to read it whole)"
)


class DecodeError(Exception):
    """Raised when the bytes are not a valid file of the format their name claims."""

    def __init__(self, message: str, line: int | None = None, offset: int | None = None):
        super().__init__(message)
        self.line = line
        self.offset = offset
