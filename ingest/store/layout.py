"""Where everything lives on disk: the drop folder, the dataset, the state folder.

Plain paths and names; no I/O beyond creating folders.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from ..logs import utf8

STATE_DIR = "_ingest"


def shown(name: str) -> str:
    """A file name as text that every table, the ledger, the logs and JSON can hold.

    Linux names are bytes; Python carries those that are not UTF-8 (a Latin-1 name from
    an old Windows share) as lone surrogates, which SQLite, Arrow and UTF-8 files refuse:
    one such name held up every commit. Each of those bytes is written as \\xNN instead;
    a name that is UTF-8 is unchanged. On disk the file keeps its own name: it is opened,
    archived and quarantined by it (`on_disk` gives it back from the text).
    """
    return utf8(name)


_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")


def on_disk(name: str) -> list[str]:
    """The names on disk that `shown` gives as `name`: itself, and, if it holds a \\xNN,
    the name with those bytes put back (a real name may hold a backslash)."""
    if "\\x" not in name:
        return [name]
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m[1], 16)]), name.encode())
    back = os.fsdecode(raw)
    return [name] if back == name or shown(back) != name else [name, back]


@dataclass(frozen=True)
class Layout:
    drop: Path
    output: Path
    quarantine: Path
    archive: Path
    delta: bool = False  # each table is also a Delta table (`[output] format = "delta"`)
    # Each table's open DeltaTable, kept fresh by `delta.commit`: the output's one writer
    # commits through them (`delta.open_table`). Not plain data: never sent to a worker.
    logs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, config: Config) -> Layout:
        p = config.paths
        return cls(p.drop, p.output, p.quarantine, p.archive, config.output.format == "delta")

    @property
    def state(self) -> Path:
        return self.output / STATE_DIR

    @property
    def tmp(self) -> Path:
        return self.state / "tmp"

    @property
    def orphans(self) -> Path:
        return self.state / "orphans"

    @property
    def ledger(self) -> Path:
        return self.state / "ledger.sqlite"

    def relative(self, path: str | Path) -> str:
        """The name a file has in the dataset: its path below the drop folder, "/"-separated,
        each byte of it that is not UTF-8 written as \\xNN (see `shown`)."""
        rel = self.below_drop(path)
        return rel if rel.isascii() else shown(rel)

    def below_drop(self, path: str | Path) -> str:
        """A file's path below the drop folder, "/"-separated, as it is on disk."""
        # Sliced off the text, not `relative_to`: called for every event and every file
        # a scan finds, where two pathlib parses cost 30 us a file.
        text, prefix = str(path), self._drop_prefix
        if text.startswith(prefix):
            return text[len(prefix):]
        return Path(path).relative_to(self.drop).as_posix()

    @functools.cached_property
    def _drop_prefix(self) -> str:
        return str(self.drop).rstrip("/") + "/"

    def relative_output(self, path: Path) -> str:
        return path.relative_to(self.output).as_posix()

    def part_path(self, table: str, day: str, name: str) -> Path:
        return self.output / table / f"ingest_date={day}" / name

    def tables(self, known: Iterable[str] = ()) -> list[str]:
        """The tables: those the ledger knows, and every folder of the output folder
        whose name does not start with "_" (the state folder, and what readers skip)."""
        found = set(known)
        if self.output.is_dir():
            found.update(
                p.name for p in self.output.iterdir() if p.is_dir() and not p.name.startswith("_")
            )
        return sorted(found)

    def stage(self, name: str) -> Path:
        """A staging folder for a compaction or rewrite: same filesystem as the tables."""
        return self.state / name

    def make_dirs(self) -> None:
        for folder in (self.drop, self.output, self.tmp, self.quarantine):
            folder.mkdir(parents=True, exist_ok=True)


def new_part_id() -> str:
    """Sortable by creation time, unique across processes and restarts."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(6)


def today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())
