"""A hypothesis state machine against a real `ingest run`: drop, re-drop, append, delete, kill.

Each example gets a fresh project folder and a real service in a subprocess. The rules
act on the drop folder and on the service's processes at full speed, racing the
service; the model records, for every version of every file it dropped, its bytes
(hence its sha256), its row count, and whether it *must* be accounted for or may
*either* be ingested or not (it was deleted or overwritten while the service may or
may not have read it yet).

After every step the service must be up, with no traceback in its log. At teardown
the live service must empty the drop folder, stop on SIGTERM with exit 0, and
`ingest once` drains whatever is left. Then ledger, outputs and quarantine together
must account for every version exactly once, keyed by (source_file, source_sha256),
since a new version under an old name is a new file and the old one's rows stay.

What the machine found is pinned down by the tests at the end of this file. While
such a bug is open the machine steps around it, each behind a switch (POOL_START_BUG,
ARCHIVE_RACE_BUG), so that it keeps checking everything else: it kills only workers of
a pool that is up, and restarts the service, as a supervisor would, if the pool bug
shows all the same; and it lets off a version archived unread right after its
predecessor's commit, but nothing else that goes missing. Its teardown's SIGTERM may
reach a service that is still starting (its pool, say), which must drain and exit 0.
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
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import IO, ClassVar

import duckdb
import psutil
import pyarrow.parquet as pq
import pytest
from hypothesis import Phase, settings
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

from ..conftest import Folder, retrying_read, wait_for

HEADER = b"timestamp,ch0,ch1\n"
FEATURE_COLUMNS = {"ch0", "ch1"}  # `timestamp` is the time column: no features
RETRIES = 2  # [pipeline] retries, as configured below
# Files stay below one page, so that a single append is never seen half-written.
MAX_FILE_BYTES = 3500
DRAIN_TIMEOUT_S = 30.0

# Open bugs the machine found, each pinned down by a strict xfail test at the end of this
# file. While one is open the machine steps around it, so that it keeps checking the rest.
# When its xfail test starts to pass, remove the mark and set its switch to False.
#
# test_a_worker_killed_while_its_pool_starts_does_not_stop_the_service: workers are killed
# only once the service watches and only if this old (their pool is, most likely, up); if
# the bug shows all the same, the service is restarted, as a supervisor would.
POOL_START_BUG = False
WORKER_MIN_AGE_S = 1.0 if POOL_START_BUG else 0.0
POOL_START_BUG_SIGNS = ("in _process_pool", "BrokenProcessPool")  # in the service's log
# test_a_version_that_lands_between_commit_and_archive_is_ingested: a version archived
# unread, right after its predecessor under the same name was committed, is let off.
ARCHIVE_RACE_BUG = False

# Each step acts on a live service, so an example costs seconds: no explain phase.
PHASES = (Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink)
FAST = settings(max_examples=3, stateful_step_count=12, deadline=None, phases=PHASES)
SLOW = settings(max_examples=25, stateful_step_count=25, deadline=None, phases=PHASES)

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
    must: bool = True  # False: "either" ingested or absent, the service may not have read it

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
    totals: ClassVar[Counter[str]] = Counter()  # over all examples, printed at the end

    goods = Bundle("goods")

    def __init__(self) -> None:
        super().__init__()
        self.root = Path(tempfile.mkdtemp(prefix="example-", dir=self.base))
        self.folder = _project(self.root)
        self.seq = 0
        self.versions: list[Version] = []
        self.latest: dict[str, Version] = {}  # what we last put at drop/<name>
        self.worker_kills = 0
        self.known_bug_restarts = 0
        self.log_start = 0  # where the latest service's lines begin in the log
        self.seen: dict[int, psutil.Process] = {}  # every process of every service started
        self.log = self.root / "service.log"
        self._log_fh: IO[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.totals["examples"] += 1
        self._start()

    # ---- the service ------------------------------------------------------

    def _start(self) -> None:
        self._log_fh = self.log.open("ab")
        self.log_start = self._log_fh.tell()
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

    def _latest_log(self) -> str:
        """What the latest service has logged."""
        with self.log.open("rb") as log:
            log.seek(self.log_start)
            return log.read().decode(errors="replace")

    def _trouble(self) -> str | None:
        """Why the latest service is not healthy: it exited by itself, or it logged a crash."""
        code = self._service().poll()
        if "Traceback (most recent call last)" in self._latest_log():
            return f"the service logged a traceback ({'up' if code is None else f'exit {code}'})"
        if code is not None:
            return f"the service exited by itself with {code}"
        return None

    def _healthy(self) -> str | None:
        """`_trouble()`, except that the known bug is survived by a restart."""
        trouble = self._trouble()
        log = self._latest_log()
        if trouble is not None and POOL_START_BUG and all(s in log for s in POOL_START_BUG_SIGNS):
            self.known_bug_restarts += 1
            self.totals["restarts for the pool start bug"] += 1
            self._restart()
            return None
        return trouble

    def _restart(self) -> None:
        """kill -9 the service if it is up, see all its processes go, and start it again."""
        self.totals["services killed with -9"] += 1
        family = self._family()
        service = self._service()
        service.send_signal(signal.SIGKILL)
        service.wait(10)
        self._close_log()
        _, alive = psutil.wait_procs(family, timeout=15)
        assert not alive, f"processes outlived the service killed with -9: {alive}"
        self._start()

    def _wait_started(self) -> None:
        """Until the latest service has logged its first line; it may still be starting."""
        wait_for(
            lambda: self._healthy() is not None or " at start-up" in self._latest_log(),
            60, "the service to log its first line",
        )
        self.the_service_is_up()

    def _tail(self, lines: int = 40) -> str:
        return "\n".join(self._latest_log().splitlines()[-lines:])

    # ---- writing into the drop folder ---------------------------------------

    def _next(self) -> int:
        self.seq += 1
        return self.seq

    def _put(self, name: str, data: bytes) -> None:
        _deliver(self.folder.drop, name, data)

    def _add(self, version: Version) -> Version:
        self.versions.append(version)
        self.totals["versions dropped"] += 1
        self.latest[version.name] = version
        return version

    def _new_good(self, prefix: str, rows: int) -> Version:
        seq = self._next()
        version = Version(f"{prefix}{seq:03d}.csv", HEADER + _rows(seq, rows), rows, good=True)
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
                # The bundle grows by one name either way: whether the file was still there
                # is the service's doing, and hypothesis needs the same draws on a replay.
                return multiple(name)
        # Nothing to append to: a writer that creates a file in place and then appends.
        first = self._new_good("w", rows)
        first.must = False  # the service may or may not read it before the append
        landed = self._append_in_place(first.name, extra)
        if landed is None:
            first.must = True  # moved away before our append: so it was committed
        else:
            self._add(Version(first.name, first.data + extra, 2 * rows, True, must=landed))
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
        """SIGKILL a pool worker, as soon as there is one (old enough, see WORKER_MIN_AGE_S)."""
        deadline = time.monotonic() + 2 * WORKER_MIN_AGE_S + 1.0
        while True:
            watching = " watching " in self._latest_log()
            workers = self._workers()
            if watching and not workers:
                return  # a broken pool is rebuilt only when the next file needs it
            if watching or not POOL_START_BUG:
                workers = [w for w in workers if _age(w) >= WORKER_MIN_AGE_S]
                if workers:
                    break
            if time.monotonic() > deadline:
                return
            time.sleep(0.002)
        victim = workers[which % len(workers)]
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.kill()
            self.worker_kills += 1
            self.totals["workers killed"] += 1
            with contextlib.suppress(psutil.TimeoutExpired):
                victim.wait(5)
        # Give a crash the time to show, so that it is blamed on this step, not a later one.
        deadline = time.monotonic() + 0.5
        while self._trouble() is None and time.monotonic() < deadline:
            time.sleep(0.02)

    @rule()
    def kill_9_the_service_and_restart_it(self) -> None:
        self.the_service_is_up()  # a crash since the last check is not to be hidden by the kill
        self._restart()

    @rule(ms=st.sampled_from([50, 250, 750]))
    def pause(self, ms: int) -> None:
        """Let the service catch up, so that later rules meet files in other states."""
        time.sleep(ms / 1000)

    @invariant()
    def the_service_is_up(self) -> None:
        trouble = self._healthy()
        assert trouble is None, f"{trouble}:\n{self._tail()}"

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
            return self._healthy() is not None or not any(p.is_file() for p in drop.rglob("*"))

        try:
            wait_for(done, DRAIN_TIMEOUT_S, "the running service to empty the drop folder")
        except AssertionError as exc:
            left = sorted(p.name for p in drop.rglob("*"))
            raise AssertionError(f"{exc}; still there: {left}\n{self._tail()}") from None
        self.the_service_is_up()
        # A SIGTERM in the first instants of a Python process, before any of the service's
        # code runs, kills it like any other program; from its first line on, it is ours.
        self._wait_started()
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
        # Workers and forkservers exit by themselves once their service is gone: let them.
        _, alive = psutil.wait_procs([*self.seen.values(), *_running_in(self.root)], timeout=10)
        leftovers = []
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                if proc.status() != psutil.STATUS_ZOMBIE:
                    leftovers.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
                    proc.kill()
        psutil.wait_procs(alive, timeout=10)
        return leftovers

    # ---- the invariant ------------------------------------------------------------

    def _query(self, table: str, sql: str) -> list[tuple[object, ...]]:
        return _query(self.folder, table, sql)

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
            # The catalog, not each commit's own list: `run` compacts a partition once it
            # holds more small parts than its bytes need, and the catalog follows the swap.
            parts = db.execute("SELECT path FROM part_files WHERE state = 'committed'").fetchall()
        ledger: dict[Key, list[LedgerRow]] = defaultdict(list)
        for name, digest, state, rows, duplicate_of, error in files:
            ledger[(name, digest)].append(LedgerRow(state, rows, duplicate_of, error))
        unread = self._let_off_archived_unread(ledger) if ARCHIVE_RACE_BUG else []
        self.totals["versions archived unread (archive race bug)"] += len(unread)
        context = (
            f"\nfolder {self.root}\nworker kills {self.worker_kills}, restarts for the known"
            f" bug {self.known_bug_restarts}, archived unread {sorted(unread)}; model"
            " (name:sha:rows, ? = either, ! = bad): "
            + ", ".join(
                f"{v.name}:{v.sha[:8]}:{v.rows}{'' if v.must else '?'}{'' if v.good else '!'}"
                for v in self.versions
            )
            + f"\nservice log:\n{self._tail()}"
        )
        return Observed(
            model, records, features, dict(ledger), pending[0],
            {path for (path,) in parts}, context,
        )

    def _let_off_archived_unread(self, ledger: dict[Key, list[LedgerRow]]) -> list[str]:
        """ARCHIVE_RACE_BUG: versions that must be ingested but were archived unread.

        The sign: nothing of the version is in the ledger, its bytes are in archive/ under
        its name, and the ledger holds its predecessor under that name as done; so it
        landed between that commit and the archive move, which took it for the old one.
        """
        archived = set()
        for path in self.folder.archive.rglob("*.csv"):
            archived.add((path.name, sha256(path.read_bytes()).hexdigest()))
        done = {name for (name, _), rows in ledger.items() if rows[0].state != "quarantined"}
        let_off = []
        for version in self.versions:
            stem = version.name.removesuffix(".csv")
            same_name = {n for n, digest in archived if digest == version.sha} & {
                n for n, _ in archived if n == version.name or n.startswith(f"{stem}-")
            }
            if version.must and version.key not in ledger and version.name in done and same_name:
                version.must = False
                let_off.append(f"{version.name}:{version.sha[:8]}")
        return let_off

    def _check(self) -> None:
        seen = self._observe()
        self.totals["versions checked as 'either'"] += sum(not v.must for v in self.versions)
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



def _query(folder: Folder, table: str, sql: str) -> list[tuple[object, ...]]:
    """`sql` over the `t` view of one dataset, read as a reader would; [] if empty."""
    return retrying_read(lambda: _query_once(folder, table, sql))


def _query_once(folder: Folder, table: str, sql: str) -> list[tuple[object, ...]]:
    if not list((folder.output / table).rglob("*.parquet")):
        return []
    glob = (folder.output / table / "**" / "*.parquet").as_posix()
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE VIEW t AS SELECT * FROM read_parquet('{glob}',"
            " hive_partitioning = true, union_by_name = true)"
        )
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _sha(data: bytes) -> str:
    return sha256(data).hexdigest()


def _deliver(drop: Path, name: str, data: bytes) -> None:
    """How a careful writer delivers: a hidden temp name, then a rename into place."""
    temp = drop / f".{name}.tmp"
    temp.write_bytes(data)
    os.replace(temp, drop / name)


def _age(proc: psutil.Process) -> float:
    try:
        return time.time() - float(proc.create_time())
    except psutil.NoSuchProcess:
        return -1.0


def _project(root: Path) -> Folder:
    folder = Folder(root)
    folder.drop.mkdir()
    folder.write_config(
        watch={"settle_ms": 0, "rescan_s": 1, "on_success": "archive"},
        pipeline={"workers": 2, "retries": RETRIES},
        output={"flush_s": 0.1},
    )
    return folder


def _running_in(root: Path) -> list[psutil.Process]:
    """Processes with `root` in their command line: the service, its forkserver and workers."""
    return [
        proc for proc in psutil.process_iter(["cmdline"])
        if str(root) in " ".join(proc.info["cmdline"] or ())
    ]


def _run(base: Path, how: settings) -> None:
    DropFolderMachine.base = base
    DropFolderMachine.totals.clear()
    try:
        run_state_machine_as_test(DropFolderMachine, settings=how)
    finally:
        DropFolderMachine.base = None
        print(dict(DropFolderMachine.totals))  # shown with -s or -rP
    leftovers = _running_in(base)
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


# ---- what the machine found, pinned down as plain tests ---------------------------------


@contextlib.contextmanager
def _serving(folder: Folder, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`ingest run` in a subprocess; at exit it and everything it started are killed."""
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ingest", "run", "--config", str(folder.config)],
            cwd=folder.root, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            _, alive = psutil.wait_procs(_running_in(folder.root), timeout=15)
            for leftover in alive:
                leftover.kill()


def _crashed(proc: subprocess.Popen[bytes], log: Path) -> str | None:
    text = log.read_text(errors="replace")
    if "Traceback (most recent call last)" in text or proc.poll() is not None:
        return f"exit {proc.poll()}:\n{text[-3000:]}"
    return None


def _kill_a_worker_as_soon_as_there_is_one(
    proc: subprocess.Popen[bytes], log: Path, spare: AbstractSet[int] = frozenset()
) -> int:
    """SIGKILL the first pool worker (not in `spare`) to appear; return its pid."""
    top = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in top.children(recursive=True):
                if child.ppid() != proc.pid and child.pid not in spare:
                    child.kill()
                    return int(child.pid)
        time.sleep(0.001)
    tree = {p.pid: p.ppid() for p in top.children(recursive=True)} if proc.poll() is None else {}
    raise AssertionError(
        f"no pool worker appeared (exit {proc.poll()}; processes {tree}; spared {set(spare)}):"
        f"\n{log.read_text(errors='replace')[-3000:]}"
    )


def _pool_workers(proc: subprocess.Popen[bytes]) -> list[int]:
    """The service's pool workers alive: its descendants that are not its own children
    (the forkserver, the resource tracker)."""
    found = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(proc.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.ppid() != proc.pid and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child.pid)
    return found


def test_sigterm_during_start_up_drains_and_exits_0(tmp_path: Path) -> None:
    """Hypothesis reduced it to this, when the teardown did not wait for "watching":

        state = DropFolderMachine()
        state.kill_a_worker(which=0)  # a no-op: no pool yet
        state.teardown()

    The teardown's SIGTERM reached the service while it was starting; it died of the
    signal (exit -15, nothing logged) instead of draining and exiting 0.
    """
    folder = _project(tmp_path)
    log = tmp_path / "service.log"
    with _serving(folder, log) as proc:
        # Well into start-up: the service's own code has opened the ledger.
        ledger = folder.output / "_ingest" / "ledger.sqlite"
        wait_for(lambda: ledger.exists() or proc.poll() is not None, 60, "the ledger")
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
    assert code == 0, f"exit {code}: {log.read_text()}"


@pytest.mark.parametrize(
    "when",
    [
        "start-up",
        "rebuild",
    ],
)
def test_a_worker_killed_while_its_pool_starts_does_not_stop_the_service(
    tmp_path: Path, when: str
) -> None:
    """Hypothesis's minimal failing sequence, with the machine's WORKER_MIN_AGE_S = 0:

        state = DropFolderMachine()
        state.kill_a_worker(which=0)
        state.the_service_is_up()  # AssertionError: the service logged a traceback
        state.teardown()

    A kill lands in the warm-up most of the time; five tries make a miss negligible.
    """
    folder = _project(tmp_path)
    for attempt in range(5):
        _kill_a_worker_while_the_pool_starts(folder, tmp_path / f"service-{attempt}.log", when)


def _kill_a_worker_while_the_pool_starts(folder: Folder, log: Path, when: str) -> None:
    with _serving(folder, log) as proc:
        if when == "start-up":
            _kill_a_worker_as_soon_as_there_is_one(proc, log)
        wait_for(
            lambda: _crashed(proc, log) is not None or " watching " in log.read_text(),
            60, "the service to start watching",
        )
        if when == "rebuild":
            # Break the pool, give it a file so that it is rebuilt, kill a new worker. The
            # pool is broken once its manager has heard of the death and ended the other
            # worker: a file given to it before then (the forkserver tells of a worker's
            # death in its own time) is processed by the other one, and no rebuild comes.
            spare = {_kill_a_worker_as_soon_as_there_is_one(proc, log)}
            wait_for(lambda: not _pool_workers(proc), 60, "the broken pool's workers to end")
            spare |= {p.pid for p in psutil.Process(proc.pid).children(recursive=True)}
            # Content unique to this attempt: a duplicate would need no worker at all.
            unique = 10_000 * (1 + sum(map(ord, log.stem)))
            _deliver(folder.drop, f"first-{log.stem}.csv", HEADER + _rows(unique, 3))
            _kill_a_worker_as_soon_as_there_is_one(proc, log, spare)
        _deliver(folder.drop, f"then-{log.stem}.csv", HEADER + _rows(1000 + len(log.stem), 3))
        wait_for(
            lambda: _crashed(proc, log) is not None or not list(folder.drop.glob("*.csv")),
            60, "the files to be ingested",
        )
        crash = _crashed(proc, log)
        assert crash is None, f"{log.stem}: {crash}"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_a_version_that_lands_between_commit_and_archive_is_ingested(tmp_path: Path) -> None:
    """The machine's failing example, as hypothesis printed it (less its invariant calls);
    the window is narrow, so it did not replay and could not be shrunk:

        state = DropFolderMachine()
        state.kill_9_the_service_and_restart_it()
        state.kill_a_worker(which=2)
        goods_0 = state.drop_good(rows=22)
        state.pause(ms=50)
        goods_1 = state.drop_good(rows=13)
        state.pause(ms=250)
        (goods_2,) = state.append_to_a_file(name=goods_1, rows=1)
        state.kill_9_the_service_and_restart_it()
        state.drop_bad()
        goods_3 = state.drop_good(rows=25)
        goods_4 = state.drop_a_file_then_delete_it(delay_ms=0, rows=19)
        state.kill_a_worker(which=2)
        state.teardown()  # ('g002.csv', <sha of the appended version>) is not in the ledger

    g002.csv was committed with 13 rows; the row appended right after went to archive/
    with it. Here: 300 files, and as soon as the first one is archived, a row is appended
    to each one still in the drop folder, last first, while the batch is being archived.
    """
    folder = _project(tmp_path)
    log = tmp_path / "service.log"
    landed: dict[str, bytes] = {}  # versions appended to while in the drop folder
    lost: list[str] = []
    with _serving(folder, log) as proc:
        wait_for(lambda: " watching " in log.read_text(), 60, "the service to start watching")
        for round_ in range(5):  # the window is narrow: a round may miss it, five hardly
            landed |= _append_while_archiving(folder, round_)
            wait_for(
                lambda: _crashed(proc, log) is not None or not list(folder.drop.glob("*.csv")),
                60, "the drop folder to empty",
            )
            assert _crashed(proc, log) is None, _crashed(proc, log)
            ingested = {
                (str(f), str(s)) for f, s in _query(
                    folder, "records", "SELECT DISTINCT source_file, source_sha256 FROM t"
                )
            }
            lost = sorted(n for n, d in landed.items() if (n, _sha(d)) not in ingested)
            if lost:
                break
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    assert landed, "no append landed in the drop folder"
    assert not lost, f"{len(lost)} of {len(landed)} appended versions never ingested: {lost[:5]}"


def _append_while_archiving(folder: Folder, round_: int) -> dict[str, bytes]:
    """Drop 300 files; once the first is archived, append a row to each still in drop/."""
    names = {f"r{round_}-f{i:03d}.csv": HEADER + _rows(1000 * round_ + i, 5) for i in range(300)}
    for name, data in names.items():
        _deliver(folder.drop, name, data)
    deadline = time.monotonic() + 60
    while len(os.listdir(folder.drop)) >= len(names) and time.monotonic() < deadline:
        time.sleep(0.0002)  # until the first of them is archived: its batch is committed
    landed = {}
    for i, (name, data) in reversed(list(enumerate(names.items()))):
        extra = _rows(100_000 + 1000 * round_ + i, 1)
        path = folder.drop / name
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        except FileNotFoundError:
            continue  # archived already
        try:
            os.write(fd, extra)
            inode = os.fstat(fd).st_ino
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path).st_ino == inode:
                landed[name] = data + extra
    return landed
