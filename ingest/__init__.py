"""ingest: files dropped into a folder become analysis-ready Parquet, exactly once."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ingest")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
