"""Files in flight: one record per file, from the settler's hand-off to its end.

Runs on the event loop; only the removal of a shared-memory segment goes to a thread.
While in flight, a file may hold:

    bytes of the memory budget    taken before it is read (a streamed file: 0, its blocks
                                  take their own); a drain waits for the files holding some
    a shared-memory segment       its bytes, for a local worker to read (send = "bytes")
    a place upstream              on its way to the queue or in it, in no task yet: the
                                  backlog a dispatcher shares out, and `once`'s "more coming"
    the claim on its sha256       a file with the same bytes waits until this one is done;
                                  taken once the sha256 is known: from the worker's result
                                  for a file read whole, before the blocks of a streamed one
    its place in the settler      busy: the settler hands the same name out again only
                                  once it is finished, so one record per name suffices

Each way out lets go of what it holds through one method, so none is missed (a busy
settler entry keeps `once` from ending; a place upstream left behind makes every task
wait flush_s for a file that is not coming; a claim left behind holds its waiters forever):

    resolved (committed, or needs no commit)  finish; offered again if it changed meanwhile
                                              (or a worker found it so: not_as_seen, and
                                              then handed out after a pause, `Settler.changed`)
    deferred (a drain, staging failed)        finish; not offered again
    duplicate of a committed file             let_go; resolved once the committer records it
    same bytes as a file in flight            let_go; finished (offered again) with that file
    streamed, or refused as too large         hand_over; resolved once committed

A file deleted before it settled, or settled once a drain began, was never in flight:
the settler reports the first (told and recorded as vanished), the intake lets the second go.
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path
from typing import Any

from ..files import DropFile
from ..jobs import LOOKED_AT_AGAIN, NOT_AS_SEEN, Failure
from ..metrics import Metrics
from ..selection import regular_file
from ..store.known import Known
from .budget import ByteBudget
from .commit import Aside
from .dispatch import Queued
from .outcomes import STAYS, Outcomes
from .recall import Recall
from .segments import IdleSegments
from .settle import Settler

# Fates the ledger holds, after which the file is disposed of as on_success says (with
# "keep", left where it is): the settler need not offer it again until it changes.
RECORDED_FATES = frozenset({"ingested", "duplicate", "quarantined", "skipped"})

Spawn = Callable[[Coroutine[Any, Any, None]], None]


@dataclass
class FileInFlight:
    """One file in flight and what it holds; changed only through `InFlight`."""

    file: DropFile
    held: int | None = None  # bytes taken from the budget; None: none to give back
    segment: SharedMemory | None = None
    upstream: bool = True
    claim: str | None = None  # the sha256 it holds: files with the same bytes wait for it


class InFlight:
    """Every file in flight, by its name in the drop folder. What the dispatcher
    (`dispatch.Upstream`) and the committer (its resolution) call back."""

    def __init__(
        self,
        budget: ByteBudget,
        settler: Settler,
        outcomes: Outcomes,
        metrics: Metrics,
        drop: Path,
        once: bool,
        draining: Callable[[], bool],
        spawn: Spawn,
        known: Known,
        recall: Recall,
        set_aside: Callable[[Aside], None],
    ):
        self.budget = budget
        self.settler = settler
        self.outcomes = outcomes
        self.metrics = metrics
        self.drop = drop
        self.once = once  # nothing comes once the settler is empty
        self.draining = draining
        self._spawn = spawn
        self.known = known  # what the ledger holds: a file's bytes committed already
        self.recall = recall
        self._set_aside = set_aside  # to the committer, which records it with the next flush
        self._files: dict[str, FileInFlight] = {}
        self.idle = IdleSegments(budget, spawn, draining)
        self._claims: dict[str, str] = {}  # sha256 -> name of the file holding it
        self._segment_users: dict[str, int] = {}  # segment name -> files holding it
        self._waiting: dict[str, list[DropFile]] = collections.defaultdict(list)
        # Kept as counts, not summed over the records: the dispatcher asks for every file.
        self._upstream = 0
        self._holding = 0

    @property
    def holding(self) -> int:
        """Files holding bytes of the budget (or a stream's place): what a drain waits for."""
        return self._holding

    def admit(self, file: DropFile) -> None:
        self._files[file.rel] = FileInFlight(file)
        self._upstream += 1

    def hold(self, rel: str, size: int) -> None:
        """Record `size` bytes, already taken from the budget (or 0), as the file's."""
        record = self._files[rel]
        if record.held is None:
            self._holding += 1
        record.held = size

    async def charge(self, rel: str, size: int) -> None:
        """Take what the file becomes in memory from the budget; waits until it fits."""
        await self.budget.acquire(size)
        self.hold(rel, size)

    def charge_now(self, rel: str, size: int) -> bool:
        """`charge`, if the bytes fit now; False (nothing taken) if it would wait."""
        if not self.budget.take_now(size):
            return False
        self.hold(rel, size)
        return True

    def keep_segment(self, rel: str, segment: SharedMemory) -> None:
        """The file's bytes are in `segment`, alone or beside those of the files read with
        it; a segment is removed once the last file holding it lets go."""
        self._files[rel].segment = segment
        self._segment_users[segment.name] = self._segment_users.get(segment.name, 0) + 1

    def segment(self, rel: str) -> SharedMemory | None:
        record = self._files.get(rel)
        return record.segment if record is not None else None

    def segments(self) -> list[SharedMemory]:
        """At shutdown, to be removed: those of files still in flight (left for the next
        run), and those kept for reuse."""
        held = {r.segment.name: r.segment for r in self._files.values() if r.segment is not None}
        return list(held.values()) + self.idle.clear()

    def unfinished(self) -> list[tuple[str, bool]]:
        """At the end of a drain: the files still in flight, in the order admitted, each
        with whether a task (or the stream reading it) had it, rather than the intake."""
        return [(rel, not record.upstream) for rel, record in self._files.items()]

    def hand_over(self, rel: str) -> None:
        """The file is no longer on its way to the queue: a task or the committer has it."""
        record = self._files.get(rel)
        if record is not None and record.upstream:
            record.upstream = False
            self._upstream -= 1

    def _free(self, record: FileInFlight) -> None:
        """Let go of the file's shared memory, kept to be filled again or removed in a
        thread. Once its task's result is final (`free_shared_memory`), or as it is let go."""
        segment, record.segment = record.segment, None
        assert segment is not None
        users = self._segment_users.pop(segment.name) - 1
        if users:
            self._segment_users[segment.name] = users
        else:
            self.idle.keep(segment)  # to be filled again by a later read

    def let_go(self, rel: str) -> None:
        """Give back what the file held for its bytes: segment, budget, place upstream.
        It stays in flight until it is finished. (`hand_over` and more, in one look at its
        record: this runs for every file.)"""
        record = self._files.get(rel)
        if record is None:
            return
        if record.segment is not None:
            self._free(record)
        if record.upstream:
            record.upstream = False
            self._upstream -= 1
        if record.held is None:
            return
        size, record.held = record.held, None
        self._holding -= 1
        if size:
            self.budget.release(size)

    async def originals(self, digests: Iterable[str]) -> Mapping[str, str]:
        """What the ledger holds of `digests` that memory has let go of (`aio/recall.py`),
        for `claim`: nothing to ask, and no wait, while memory holds it all."""
        return await self.recall.originals(digests)

    def claim(self, rel: str, digest: str, originals: Mapping[str, str]) -> bool:
        """True if the file now holds the claim on its bytes, and is to be committed.

        False if it is not: a file with the same bytes is committed already (this one
        is set aside as its duplicate), or is in flight and holds the claim (this one
        waits, and is offered again once that one is done). Either way it lets go.
        """
        record = self._files[rel]
        original = self.known.ingested.get(digest)
        if original is None:
            original = originals.get(digest)
        if original is not None:
            self._set_aside(Aside(record.file, digest, "duplicate", duplicate_of=original))
            self.let_go(rel)
            return False
        if digest in self._claims:
            self._waiting[digest].append(record.file)
            self.let_go(rel)
            return False
        self._claims[digest] = rel
        record.claim = digest
        return True

    def finish(
        self, file: DropFile, offer_again: bool | None, stays: bool = False, paused: bool = True,
    ) -> None:
        """Let go of everything the file holds, and of the file. `offer_again`: True, look
        at it again (it changed; after a pause, if `paused`); None, if it changed while in
        flight; False, never. `stays`: its fate is recorded and leaves it in the drop
        folder, if nothing moves it."""
        self.let_go(file.rel)
        record = self._files.pop(file.rel, None)
        if record is not None and record.claim is not None:
            del self._claims[record.claim]
            for waiter in self._waiting.pop(record.claim, []):
                self._files.pop(waiter.rel, None)
                self._end(waiter, offer_again=True)
        self._end(file, offer_again, stays, found_changed=offer_again is True and paused)

    def _end(
        self, file: DropFile, offer_again: bool | None, stays: bool = False,
        found_changed: bool = False,
    ) -> None:
        """`found_changed`: resolved as changed, it is looked at again after a pause."""
        changed = self.settler.done(file.rel, file if stays else None)
        if found_changed:
            self.settler.changed(file.rel)
        else:
            self.settler.forget_changes(file.rel)
        if offer_again and self.draining():
            self.outcomes.deferred(file.rel)  # to be looked at again: by the next run
        elif (offer_again or (offer_again is None and changed)) and not self.draining():
            st = regular_file(file.path, self.drop)
            if st is not None:
                # Not changed itself (read again, or beside one that changed): the same
                # version, first seen when it was.
                self.settler.offer(file.path, st, seen=None if found_changed else file)
                return
            if offer_again and not os.path.lexists(file.path):
                self.settler.vanished(file)  # gone before it could be looked at again
        if found_changed:  # not looked at again: nothing to pause
            self.settler.forget_changes(file.rel)

    def resolved(self, file: DropFile, event: str, fields: dict[str, object]) -> None:
        """Called on the loop once a file's fate is committed (or needs no commit)."""
        self.resolved_all(event, [(file, fields)])

    def resolved_all(
        self, event: str, files: Sequence[tuple[DropFile, dict[str, object]]],
        unpaused: Collection[str] = (),
    ) -> None:
        """Files of one fate, committed together: told as one batch (`Outcomes`).
        `unpaused`: of files resolved as changed, those looked at again at once (`Resolved`)."""
        offer_again = True if event in LOOKED_AT_AGAIN else None
        if offer_again and self.draining():
            # Looked at again by the next run, not this one: one line for each, why it
            # stays, not one for what was found and another for the drain.
            for file, fields in files:
                self.finish(file, offer_again=False)
                self.outcomes.deferred(file.rel, reason=f"{fields.get('reason', event)}; {STAYS}")
            return
        stays = event in RECORDED_FATES
        for file, _ in files:
            self.finish(file, offer_again, stays, paused=file.rel not in unpaused)
        self.outcomes.resolved_all(event, files)

    def defer(self, file: DropFile) -> None:
        """Let go of a file during a drain; it stays in the drop folder, unrecorded."""
        self.finish(file, offer_again=False)
        self.outcomes.deferred(file.rel)

    def defer_settled(self, file: DropFile) -> None:
        """Let go of a file settled and never admitted (a drain, the end of the service):
        it holds nothing yet but its place in the settler; it stays in the drop folder."""
        self.settler.done(file.rel)
        self.outcomes.deferred(file.rel)

    # ---- what the dispatcher and the committer ask (dispatch.Upstream) --

    def taken(self, item: Queued) -> bool:
        if self.draining():
            # Not yet in a worker: leave it for the next run rather than hold up the exit.
            self.defer(item.file)
            return False
        self.hand_over(item.file.rel)
        return True

    def backlog(self) -> int:
        """Files on their way to the queue: a task waits for these, up to flush_s. Not
        those still changing, which may never settle (`Settler.settling`)."""
        return self._upstream + self.settler.settling() + self.settler.ready.qsize()

    def more_coming(self) -> bool:
        if self.draining() or self.budget.waiting:
            return False
        # `once` with nothing left upstream: no more files are coming for this task. Files
        # still changing may never settle: neither a task nor a failing commit waits on them.
        return not (self.once and not self._upstream and not self.settler.settling()
                    and self.settler.ready.empty())

    def only_these_left(self, waiting: int) -> bool:
        """`once`, not draining, with nothing left to settle or read and no file in flight
        but the `waiting` ones the committer holds (and files waiting for their claims):
        no other commit is coming."""
        waiters = sum(len(files) for files in self._waiting.values())
        return (self.once and not self.draining() and not self.more_coming()
                and len(self._files) - waiters <= waiting)

    def nothing_coming(self) -> bool:
        """For the committer: files set aside are recorded at once, not after flush_s."""
        return not self.more_coming()

    def free_shared_memory(self, items: Iterable[Queued]) -> None:
        files = self._files
        for item in items:
            record = files.get(item.file.rel)
            if record is not None and record.segment is not None:
                self._free(record)

    def not_as_seen(self, item: Queued, failure: Failure) -> None:
        fields: dict[str, object] = {"reason": failure.message}
        self.resolved(item.file, NOT_AS_SEEN[failure.error], fields)
