"""A hypothesis state machine against a real `ingest run`: drop, re-drop, append, delete, kill.

Each example gets a fresh project folder and a real service in a subprocess. The rules
act on the drop folder and on the service's processes at full speed, racing the
service; the model records, for every version of every file it dropped, its bytes
(hence its sha256), its row count, and whether it *must* be accounted for or may
*either* be ingested or not (it was deleted or overwritten while the service may or
may not have read it yet).

At teardown the live service must empty the drop folder, stop on SIGTERM with exit 0,
and `ingest once` drains whatever is left. Then ledger, outputs and quarantine together
must account for every version exactly once, keyed by (source_file, source_sha256),
since a new version under an old name is a new file and the old one's rows stay.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import IO, ClassVar

import duckdb
import psutil
import pyarrow.parquet as pq
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from ..conftest import Folder, wait_for

HEADER = b"timestamp,ch0,ch1\n"
FEATURE_COLUMNS = {"ch0", "ch1"}  # `timestamp` is the time column: no features
RETRIES = 2  # [pipeline] retries, as configured below
# Files stay below one page, so that a single append is never seen half-written.
MAX_FILE_BYTES = 3500
DRAIN_TIMEOUT_S = 30.0

FAST = settings(max_examples=5, stateful_step_count=12, deadline=None)
SLOW = settings(max_examples=25, stateful_step_count=25, deadline=None)

Key = tuple[str, str]  # (source_file, source_sha256)


def _rows(seq: int, count: int) -> bytes:
    """`count` CSV rows, unique to `seq`: floats always with a decimal point, never missing."""
    rng = random.Random(seq)
    base = 1_700_000_000_000 + seq * 1_000_000
    return "".join(
        f"{base + 10 * i},{rng.uniform(0, 20):.3f},{rng.uniform(-5, 5):.3f}\n"
        for i in range(count)
    ).encode()


def _bad(seq: int) -> bytes:
    """A ragged CSV: line 3 has one field too many."""
    return f"a,b\n1,2\n3,4,5\n6,{seq}\n".encode()


@dataclass
class Version:
    """One content we put under one name."""

    name: str
    data: bytes
    rows: int
    good: bool
    must: bool = True  # False: "either" ingested (or quarantined) or absent

    @property
    def sha(self) -> str:
        return sha256(self.data).hexdigest()

    @property
    def key(self) -> Key:
        return (self.name, self.sha)


@dataclass(frozen=True)
class LedgerRow:
    state: str
    rows: int | None
    duplicate_of: str | None
    error: str | None


class DropFolderMachine(RuleBasedStateMachine):
    """The drop folder, the service's processes, and a model of what must come out."""

    base: ClassVar[Path | None] = None  # set by the test: every example folder goes below it

    goods = Bundle("goods")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="example-", dir=self.base))
        self.folder = Folder(self.root)
        self.folder.drop.mkdir()
        self.folder.write_config(
            watch={"settle_ms": 0, "rescan_s": 1, "on_success": "archive"},
            pipeline={"workers": 2, "retries": RETRIES},
            output={"flush_s": 0.1},
        )
        self.seq = 0
        self.versions: list[Version] = []
        self.latest: dict[str, Version] = {}  # what we last put at drop/<name>
        self.worker_kills = 0
        self.seen: dict[int, psutil.Process] = {}  # every process of every service started
        self.log = self.root / "service.log"
        self._log_fh: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._start()

    # ---- the service ------------------------------------------------------

    def _start(self) -> None:
        self._log_fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run", "--config", str(self.folder.config)],
            cwd=self.root, stdout=self._log_fh, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._remember(psutil.Process(self.proc.pid))

    def _remember(self, proc: psutil.Process) -> None:
        self.seen.setdefault(proc.pid, proc)

    def _service(self) -> subprocess.Popen[bytes]:
        assert self.proc is not None
        return self.proc

    def _family(self) -> list[psutil.Process]:
        """The service and every process below it: resource tracker, forkserver, workers."""
        try:
            top = psutil.Process(self._service().pid)
            family = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        for proc in family:
            self._remember(proc)
        return family

    def _workers(self) -> list[psutil.Process]:
        """Pool workers: forked by the forkserver, so grandchildren of the service."""
        pid = self._service().pid
        workers = []
        for proc in self._family():
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.pid != pid and proc.ppid() != pid:
                    workers.append(proc)
        return sorted(workers, key=lambda p: p.pid)

    def _close_log(self) -> None:
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def _tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text[-lines:])

    # ---- writing into the drop folder ---------------------------------------

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _put(self, name: str, data: bytes) -> None:
        """How a careful writer delivers: a hidden temp name, then a rename into place."""
        temp = self.folder.drop / f".{name}.tmp"
        temp.write_bytes(data)
        os.replace(temp, self.folder.drop / name)

    def _add(self, version: Version) -> Version:
        self.versions.append(version)
        self.latest[version.name] = version
        return version

    def _new_good(self, prefix: str, rows: int) -> Version:
        seq = self._next()
        version = Version(f"{prefix}{seq:03d}.csv", HEADER + _rows(seq, rows), rows + 1, good=True)
        self._put(version.name, version.data)
        return self._add(version)

    def _append_in_place(self, name: str, extra: bytes) -> bool | None:
        """Append `extra` in one write to drop/<name> if it is there.

        None: it was not there (already archived or deleted). True: after the write the
        file was still in the drop folder, so the service must see the new version.
        False: the service moved it away around our write; we cannot tell when.
        """
        path = self.folder.drop / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            return None
        try:
            assert os.write(fd, extra) == len(extra)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        try:
            return os.stat(path).st_ino == inode
        except FileNotFoundError:
            return False

    # ---- rules --------------------------------------------------------------

    @rule(target=goods, rows=st.integers(1, 30))
    def drop_good(self, rows: int) -> str:
        return self._new_good("g", rows).name

    @rule()
    def drop_bad(self) -> None:
        seq = self._next()
        version = self._add(Version(f"b{seq:03d}.csv", _bad(seq), 0, good=False))
        self._put(version.name, version.data)

    @rule(target=goods, name=goods)
    def redrop_same_bytes_under_a_new_name(self, name: str) -> str:
        """A duplicate: no new rows, whichever of the two names ends up holding them."""
        original = self.latest[name]
        seq = self._next()
        version = self._add(Version(f"d{seq:03d}.csv", original.data, original.rows, good=True))
        self._put(version.name, version.data)
        return version.name

    @rule(name=goods, rows=st.integers(1, 30))
    def redrop_new_content_under_the_same_name(self, name: str, rows: int) -> None:
        """A new version. The old one keeps its rows if it was committed before the swap."""
        old = self.latest[name]
        seq = self._next()
        data = HEADER + _rows(seq, rows)
        if len(data) == len(old.data):
            # (path, size, mtime_ns) is the file's identity; within one mtime tick only the
            # size tells the versions apart, so keep the sizes different.
            rows += 1
            data = HEADER + _rows(seq, rows)
        if (self.folder.drop / name).exists():
            old.must = False  # replaced: read and committed first, or never
        self._add(Version(name, data, rows, good=True))
        self._put(name, data)

    @rule(target=goods, name=goods, rows=st.integers(1, 5))
    def append_to_a_file(self, name: str, rows: int) -> MultipleResults[str]:
        """Append rows to drop/<name>; if it is gone, to a new file being written in place."""
        old = self.latest[name]
        extra = _rows(self._next(), rows)
        if len(old.data) + len(extra) <= MAX_FILE_BYTES:
            landed = self._append_in_place(name, extra)
            if landed is not None:
                old.must = False  # appended to: committed before the append, or never
                self._add(Version(name, old.data + extra, old.rows + rows, True, must=landed))
                return multiple()
        # Nothing to append to: a writer that creates a file in place and then appends.
        first = self._new_good("w", rows)
        first.must = False  # the service may or may not read it before the append
        landed = self._append_in_place(first.name, extra)
        if landed is not None:
            self._add(Version(first.name, first.data + extra, 2 * rows, True, must=landed))
            if not landed:
                first.must = False
        else:
            first.must = True  # moved away before our append: so it was committed
        return multiple(first.name)

    @rule(name=goods)
    def delete_a_file(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.folder.drop / name).unlink()
            self.latest[name].must = False  # deleted: ingested if the service got it first

    @rule(target=goods, rows=st.integers(1, 30), delay_ms=st.sampled_from([0, 2, 10, 40]))
    def drop_a_file_then_delete_it(self, rows: int, delay_ms: int) -> str:
        """Delete a file just dropped, racing the service for it."""
        version = self._new_good("r", rows)
        time.sleep(delay_ms / 1000)
        with contextlib.suppress(FileNotFoundError):
            (self.folder.drop / version.name).unlink()
            version.must = False
        return version.name

    @rule(which=st.integers(0, 3))
    def kill_a_worker(self, which: int) -> None:
        workers = self._workers()
        if not workers:
            return  # the pool is being (re)built
        victim = workers[which % len(workers)]
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.kill()
            self.worker_kills += 1
            with contextlib.suppress(psutil.TimeoutExpired):
                victim.wait(5)

    @rule()
    def kill_9_the_service_and_restart_it(self) -> None:
        family = self._family()
        service = self._service()
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        self._close_log()
        _, alive = psutil.wait_procs(family, timeout=15)
        assert not alive, f"processes outlived the service killed with -9: {alive}"
        self._start()

    @rule(ms=st.sampled_from([50, 250, 750]))
    def pause(self, ms: int) -> None:
        """Let the service catch up, so that later rules meet files in other states."""
        time.sleep(ms / 1000)

    @invariant()
    def the_service_is_up(self) -> None:
        code = self._service().poll()
        assert code is None, f"the service exited by itself with {code}:\n{self._tail()}"

    # ---- teardown -------------------------------------------------------------

    def teardown(self) -> None:
        failing = sys.exc_info()[1] is not None  # a rule failed: report that, just clean up
        passed = False
        try:
            if not failing:
                self._stop_and_drain()
                self._check()
                passed = True
        finally:
            leftovers = self._cleanup()
            if passed:
                shutil.rmtree(self.root, ignore_errors=True)
        if not failing:
            assert not leftovers, f"processes outlived the example: {leftovers}"

    def _stop_and_drain(self) -> None:
        drop = self.folder.drop

        def done() -> bool:
            assert self._service().poll() is None, f"the service died:\n{self._tail()}"
            return not any(p.is_file() for p in drop.rglob("*"))

        try:
            wait_for(done, DRAIN_TIMEOUT_S, "the running service to empty the drop folder")
        except AssertionError as exc:
            left = sorted(p.name for p in drop.rglob("*"))
            raise AssertionError(f"{exc}; still there: {left}\n{self._tail()}") from None
        family = self._family()
        service = self._service()
        service.send_signal(signal.SIGTERM)
        try:
            code = service.wait(60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"SIGTERM did not stop the service:\n{self._tail()}") from None
        self._close_log()
        assert code == 0, f"SIGTERM: exit {code}\n{self._tail()}"
        _, alive = psutil.wait_procs(family, timeout=15)
        assert not alive, f"processes outlived the service stopped by SIGTERM: {alive}"
        once = self.folder.ingest("once")
        assert once.returncode in (0, 3), once.stderr

    def _cleanup(self) -> list[str]:
        """Kill whatever is still running; return what had to be killed."""
        self._close_log()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        mine = list(self.seen.values())
        for proc in psutil.process_iter(["cmdline"]):
            if str(self.root) in " ".join(proc.info["cmdline"] or ()):
                mine.append(proc)
        leftovers = []
        for proc in mine:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                    leftovers.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
                    proc.kill()
        psutil.wait_procs(mine, timeout=10)
        return leftovers

    # ---- the invariant ------------------------------------------------------------

    def _query(self, table: str, sql: str) -> list[tuple[object, ...]]:
        """`sql` over the `t` view of one dataset, read as a reader would; [] if empty."""
        if not list((self.folder.output / table).rglob("*.parquet")):
            return []
        glob = (self.folder.output / table / "**" / "*.parquet").as_posix()
        con = duckdb.connect()
        try:
            con.execute(
                f"CREATE VIEW t AS SELECT * FROM read_parquet('{glob}',"
                " hive_partitioning = true, union_by_name = true)"
            )
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def _observe(self) -> Observed:
        model: dict[Key, Version] = {}
        for version in self.versions:
            assert version.key not in model, f"the model reused {version.key}"
            model[version.key] = version
        records = {
            (str(f), str(s)): int(n)  # type: ignore[call-overload]
            for f, s, n in self._query(
                "records", "SELECT source_file, source_sha256, count(*) FROM t GROUP BY ALL"
            )
        }
        features = self._query(
            "features",
            'SELECT source_file, source_sha256, source_column, "window", count(*) FROM t'
            " GROUP BY ALL",
        )
        path = self.folder.output / "_ingest" / "ledger.sqlite"
        with contextlib.closing(sqlite3.connect(path)) as db:
            files = db.execute(
                "SELECT path, sha256, state, rows, duplicate_of, error FROM files"
            ).fetchall()
            pending = db.execute("SELECT count(*) FROM parts WHERE state = 'pending'").fetchone()
            parts = db.execute("SELECT paths FROM parts WHERE state = 'committed'").fetchall()
        ledger: dict[Key, list[LedgerRow]] = defaultdict(list)
        for name, digest, state, rows, duplicate_of, error in files:
            ledger[(name, digest)].append(LedgerRow(state, rows, duplicate_of, error))
        context = (
            f"\nfolder {self.root}\nworker kills {self.worker_kills}; model"
            " (name:sha:rows, ? = either, ! = bad): "
            + ", ".join(
                f"{v.name}:{v.sha[:8]}:{v.rows}{'' if v.must else '?'}{'' if v.good else '!'}"
                for v in self.versions
            )
            + f"\nservice log:\n{self._tail()}"
        )
        return Observed(
            model, records, features, dict(ledger), pending[0],
            {p for (paths,) in parts for p in json.loads(paths)}, context,
        )

    def _check(self) -> None:
        seen = self._observe()
        self._check_rows(seen)
        self._check_same_content(seen)
        self._check_quarantine(seen)
        self._check_features(seen)
        self._check_parts(seen)
        self._check_status(seen)

    def _check_rows(self, seen: Observed) -> None:
        """Every row of every version exactly once, nothing unknown, and the ledger agrees."""
        model, records, state, context = seen.model, seen.records, seen.state, seen.context
        unknown = (set(records) | set(seen.ledger)) - set(model)
        assert not unknown, f"content that was never dropped (a torn read?): {unknown}{context}"
        twice = {k: v for k, v in seen.ledger.items() if len(v) > 1}
        assert not twice, f"an input is in the ledger twice: {twice}{context}"
        for key, count in records.items():
            assert count == model[key].rows, f"{key}: {count} rows, want {model[key].rows}{context}"
            assert state.get(key) == LedgerRow("ingested", count, None, None), (
                f"{key} has rows but the ledger says {state.get(key)}{context}"
            )
        for key, entry in state.items():
            version = model[key]
            if entry.state == "ingested":
                assert key in records, f"{key} is ingested in the ledger, not in records{context}"
            elif entry.state == "duplicate":
                assert version.good and key not in records, f"{key}: {entry}{context}"
            else:
                assert entry.state == "quarantined" and key not in records, f"{key}: {entry}"
                # Innocent files in flight share each breakage of the pool with the guilty.
                poison = entry.error == "WorkerCrashed" and self.worker_kills > RETRIES
                assert not version.good or poison, f"good {key} quarantined: {entry}{context}"
        for version in self.versions:
            if version.must:
                assert version.key in state, f"{version.key} is not in the ledger{context}"

    def _check_same_content(self, seen: Observed) -> None:
        """Same bytes under several names: one name holds the rows, the others are duplicates."""
        by_content: dict[str, list[Version]] = defaultdict(list)
        for version in self.versions:
            if version.good:
                by_content[version.sha].append(version)
        for digest, members in by_content.items():
            holders = [key for key in seen.records if key[1] == digest]
            assert len(holders) <= 1, f"the same content ingested twice: {holders}{seen.context}"
            entries = {m.key: seen.state[m.key] for m in members if m.key in seen.state}
            poisoned = {k for k, e in entries.items() if e.state == "quarantined"}
            duplicates = [e for e in entries.values() if e.state == "duplicate"]
            if duplicates or any(m.must and m.key not in poisoned for m in members):
                names = [m.name for m in members]
                assert holders, f"content {digest[:8]} of {names} is nowhere{seen.context}"
            for entry in duplicates:
                assert entry.duplicate_of == holders[0][0], f"{entry}: {holders}{seen.context}"

    def _check_quarantine(self, seen: Observed) -> None:
        """Bad files quarantined; a report per quarantined input, beside the input itself."""
        for version in self.versions:
            entry = seen.state.get(version.key)
            if not version.good and entry is not None:
                assert entry.state == "quarantined", f"{version.key}: {entry}{seen.context}"
        reports = {}
        for report in self.folder.quarantine.rglob("*.error.json"):
            body = json.loads(report.read_text())
            reports[(body["file"], body["sha256"])] = report
        quarantined = {k for k, e in seen.state.items() if e.state == "quarantined"}
        assert set(reports) == quarantined, f"reports {set(reports) ^ quarantined}{seen.context}"
        for key in quarantined:
            if seen.model[key].must:
                report = reports[key]
                held = report.with_name(report.name.removesuffix(".error.json"))
                assert held.read_bytes() == seen.model[key].data, f"{held}: {key}{seen.context}"

    def _check_features(self, seen: Observed) -> None:
        """One row per (version, numeric column), for exactly the versions with rows."""
        twice = [row for row in seen.features if row[-1] != 1]
        assert not twice, f"duplicate feature rows: {twice[:5]}{seen.context}"
        columns: dict[Key, set[str]] = defaultdict(set)
        for f, s, column, window, _ in seen.features:
            assert window is None
            columns[(str(f), str(s))].add(str(column))
        assert set(columns) == set(seen.records), f"{set(columns) ^ set(seen.records)}"
        assert all(c == FEATURE_COLUMNS for c in columns.values()), f"{columns}{seen.context}"

    def _check_parts(self, seen: Observed) -> None:
        """None pending, no temp or orphan visible, every visible part whole; drop/ empty."""
        assert seen.pending == 0
        output = self.folder.output
        visible = set()
        for table in ("records", "features"):
            for path in (output / table).rglob("*"):
                if path.is_file():
                    assert path.suffix == ".parquet", f"stray file {path}"
                    pq.read_metadata(path)
                    visible.add(path.relative_to(output).as_posix())
        assert visible == seen.committed, f"visible vs committed: {visible ^ seen.committed}"
        assert not list((output / "_ingest" / "tmp").iterdir())
        assert not list(self.folder.drop.rglob("*")), "the drop folder is not empty"

    def _check_status(self, seen: Observed) -> None:
        """`ingest status` agrees with the ledger."""
        status = self.folder.ingest("status", "--json")
        assert status.returncode == 0, status.stderr
        reported = json.loads(status.stdout)
        counts = Counter(e.state for e in seen.state.values())
        want = {s: counts[s] for s in ("ingested", "duplicate", "quarantined")}
        assert reported["counts"] == want, f"{reported}{seen.context}"
        assert reported["backlog"] == 0


@dataclass
class Observed:
    """What the folder holds after the drain, with the model it is checked against."""

    model: dict[Key, Version]
    records: dict[Key, int]  # rows per version
    features: list[tuple[object, ...]]  # (file, sha, column, window, count)
    ledger: dict[Key, list[LedgerRow]]
    pending: int
    committed: set[str]  # part paths below output/
    context: str  # for failure messages: the model and the service's log

    @property
    def state(self) -> dict[Key, LedgerRow]:
        return {key: entries[0] for key, entries in self.ledger.items()}



def _run(base: Path, how: settings) -> None:
    DropFolderMachine.base = base
    try:
        run_state_machine_as_test(DropFolderMachine, settings=how)
    finally:
        DropFolderMachine.base = None
    leftovers = [
        proc for proc in psutil.process_iter(["cmdline"])
        if str(base) in " ".join(proc.info["cmdline"] or ())
    ]
    assert not leftovers, f"processes left running: {leftovers}"


@pytest.mark.timeout(900)  # a pass takes well under a minute; shrinking a failure takes longer
def test_ledger_outputs_and_quarantine_account_for_every_file_exactly_once(
    tmp_path: Path,
) -> None:
    _run(tmp_path, FAST)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_ledger_outputs_and_quarantine_account_for_every_file_exactly_once_long(
    tmp_path: Path,
) -> None:
    _run(tmp_path, SLOW)
