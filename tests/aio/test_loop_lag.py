"""The event loop is never blocked: a probe's lag stays low while every worker is busy.

The contrast case runs the very same compute function inline on the loop and
must fail the same bound, which shows the measurement can see a blocked loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ingest.aio.service import Service
from ingest.aio.to_compute import Compute
from ingest.compute.task import process
from ingest.config import Config, Features, Output, Paths, Pipeline, Watch
from ingest.jobs import Task, TaskResult

# A lag measured beside other tests' processes would measure them.
pytestmark = pytest.mark.serial

BOUND_S = 0.050


class InlineCompute(Compute):
    """The anti-pattern under test: compute called directly on the event loop."""

    def start(self) -> None:
        pass

    def shutdown(self, wait: bool = True) -> None:
        pass

    async def run(self, task: Task) -> TaskResult:
        return process(task)


def _heavy_inputs(drop: Path, files: int = 12, rows: int = 150_000) -> None:
    rng = np.random.default_rng(0)
    drop.mkdir(parents=True)
    # One body formatted once (formatting is most of the set-up's time); each file's own
    # first row makes its bytes, and so its content hash, its own.
    values = rng.normal(0, 1, (rows - 1, 4)).round(5)
    body = "\n".join(",".join(map(str, row)) for row in values.tolist())
    for i in range(files):
        first = ",".join(map(str, rng.normal(0, 1, 4).round(5).tolist()))
        (drop / f"heavy_{i}.csv").write_text(f"a,b,c,d\n{first}\n{body}\n")


def _config(tmp_path: Path) -> Config:
    return Config(
        paths=Paths(tmp_path / "drop", tmp_path / "out", tmp_path / "q", tmp_path / "arch"),
        watch=Watch(settle_ms=0, on_success="keep"),
        pipeline=Pipeline(workers=2),
        features=Features(),
        output=Output(flush_s=0.5),
    )


def _lag_p99(config: Config, inline: bool) -> tuple[float, int]:
    service = Service(config, "once")
    if inline:
        service.compute = InlineCompute("process", 2, 60)

    async def main() -> None:
        asyncio.get_running_loop().set_debug(False)  # debug mode's own checks add lag
        await service.serve()

    asyncio.run(main())
    return service.lag.quantile(0.99), service.summary.outcomes["ingested"]


@pytest.fixture(scope="module")
def heavy(tmp_path_factory: pytest.TempPathFactory) -> Config:
    root = tmp_path_factory.mktemp("heavy")
    _heavy_inputs(root / "drop")
    return _config(root)


@pytest.mark.parametrize("send", ["auto", "bytes"])  # bytes: read into shared memory here
def test_loop_lag_p99_stays_low_while_the_pool_is_saturated(heavy: Config, send: str) -> None:
    config = dataclasses.replace(
        heavy,
        paths=dataclasses.replace(heavy.paths, output=heavy.paths.output.with_name(f"out-{send}")),
        pipeline=dataclasses.replace(heavy.pipeline, send=send),
    )
    p99, ingested = _lag_p99(config, inline=False)
    assert ingested == 12
    assert p99 < BOUND_S, f"loop lag p99 {p99 * 1000:.1f} ms"


def test_the_same_probe_catches_compute_run_inline_on_the_loop(heavy: Config) -> None:
    inline = dataclasses.replace(
        heavy, paths=dataclasses.replace(heavy.paths, output=heavy.paths.output.with_name("out2"))
    )
    p99, ingested = _lag_p99(inline, inline=True)
    assert ingested == 12
    assert p99 > BOUND_S, f"inline compute should block the loop; p99 {p99 * 1000:.1f} ms"
