"""What cutting a CSV into blocks costs the main process, with quotes counted (and each
chunk looked at for a quote where no field starts, once the delimiter is known) and with
quotes read field by field (as after a quote inside an unquoted field, `12" pipe`).

    python -m bench.cut_cost --mb 16 --repeat 5

Builds about `--mb` MB of rows with two quoted fields each (`1,"name 5, jr",2.5,"note"`,
the densest quoting a CSV commonly has) and times, in this process, one `Cutter.feed`
of the whole with quotes counted, without and with the delimiter known, and
`bytescan.last_field_newline` over it, as the cutter calls it once it reads quotes field
by field. CPU time, medians of `--repeat`.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Callable

from ingest import bytescan
from ingest.cut import Cutter


def rows(mb: float, seed: int = 1) -> bytes:
    rng = random.Random(seed)
    lines, size, i = [], 0, 0
    while size < mb * (1 << 20):
        line = b'%d,"name %d, jr",%d.5,"note"\n' % (i, rng.randint(0, 99999), rng.randint(0, 999))
        lines.append(line)
        size += len(line)
        i += 1
    return b"".join(lines)


def cpu_ms(call: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.process_time()
        call()
        times.append((time.process_time() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    data = rows(args.mb)
    mb = len(data) / (1 << 20)
    counted = cpu_ms(lambda: Cutter(True, len(data) + 1).feed(data), args.repeat)
    # The delimiter known (pinned, or once a file's first block is read): each chunk is also
    # looked at for a quote where no field starts.
    looked = cpu_ms(
        lambda: Cutter(True, len(data) + 1, delimiter=b",").feed(data), args.repeat
    )
    fields = cpu_ms(
        lambda: bytescan.last_field_newline(data, b",", bytescan.RECORD_START), args.repeat
    )
    print(f"{mb:.1f} MB, every row with two quoted fields, medians of {args.repeat}:")
    print(f"  quotes counted:        {counted:7.1f} ms  {counted / mb:5.2f} ms a MB")
    print(f"  counted, and looked at: {looked:6.1f} ms  {looked / mb:5.2f} ms a MB")
    print(f"  read field by field:   {fields:7.1f} ms  {fields / mb:5.2f} ms a MB")


if __name__ == "__main__":
    main()
