"""What the service hands its workers, by name.

The pool pickles a function as its module and name, so the service's own process
imports the module of every function it submits. These are the workers' entry
points, each importing its module when it is called, in the worker (where the
forkserver has loaded it before the worker starts): the service's process never
loads the workers' libraries (the readers, pyarrow.compute), which cost its
start-up some 40 ms of CPU. Each does no more than call through.
"""

from __future__ import annotations

from ..blocks import (
    Block,
    BlockResult,
    Blocks,
    Finish,
    Narrow,
    Scan,
    ScanResult,
    Selection,
    Spread,
    Window,
)
from ..jobs import Task, TaskResult


def init_worker(service_pid: int, plugins: bool = False) -> None:
    from .startup import init_worker as start

    start(service_pid, plugins)


def warm() -> int:
    from .task import warm as run

    return run()


def process(task: Task) -> TaskResult:
    from .task import process as run

    return run(task)


def sha256_of_path(path: str) -> tuple[str, int]:
    from .inputs import sha256_of_path as run

    return run(path)


def spread_windows(task: Spread) -> tuple[Window, ...]:
    from .stream import spread_windows as run

    return run(task)


def process_block(block: Block) -> BlockResult:
    from .stream import process_block as run

    return run(block)


def unify(schemas: tuple[bytes, ...]) -> tuple[bytes, tuple[int, ...], str]:
    from .stream import unify as run

    return run(schemas)


def select(args: tuple[Blocks, bytes, int]) -> Selection:
    from .stream import select as run

    return run(args)


def scan(task: Scan) -> ScanResult:
    from .stream import scan as run

    return run(task)


def narrow(task: Narrow) -> Selection:
    from .stream import narrow as run

    return run(task)


def finish(task: Finish) -> bytes:
    from .stream import finish as run

    return run(task)
