"""ingest: files dropped into a folder become analysis-ready Parquet, exactly once."""

# The one place the version is written (pyproject.toml reads it from here). A literal, not
# importlib.metadata: that import costs the service and every worker 50 ms or more at start.
__version__ = "0.1.0"
