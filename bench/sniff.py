"""Dialect detectors side by side: accuracy on the test corpus, cost per tiny file.

    python -m bench.sniff [--files 2000]

Accuracy: each detector's delimiter, quote (where the file quotes at all),
header and lines to skip (where the detector tells them), against the
truth in tests/data/csv/dialects.json. Cost: the time to detect the dialect
of one `tiny` file (10 plain rows, as bench/corpus.py writes them) and of one
small file that is not plain (`;` with a decimal comma), per call, in one
process.

Detectors: Python's csv.Sniffer, clevercsv (`Detector.detect`, `has_header`),
DuckDB's `sniff_csv` (on a temporary file), and ingest's own
(`ingest.compute.sniff.detect`: a check of the first lines for the plain file,
DuckDB's sniffer for the rest).
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import clevercsv

from ingest.compute import sniff

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "data" / "csv"
TINY = (
    "timestamp,device,ch0,ch1,ch2,ch3,ch4,ch5,ch6,ch7\n"
    + "".join(
        f"{1_700_000_000_000 + 10 * i},dev-7,{10.5 + i},{-2.25 * i},1.5,2.5,,3.5,4.5,5.5\n"
        for i in range(10)
    )
).encode()
NOT_PLAIN = b"Datum;Stelle;Wert\n" + b"".join(
    b"0%d.02.2024;st-%d;%d,5\n" % (i, i, i) for i in range(10)
)

# (delimiter, quote, header, skip_rows); None where the detector does not say.
Verdict = tuple[str | None, str | None, bool | None, int | None]


def python_sniffer(data: bytes) -> Verdict:
    text = data.decode("utf-8", errors="replace")
    sniffer = csv.Sniffer()
    try:
        found = sniffer.sniff(text, delimiters=",;\t|")
        header = sniffer.has_header(text)
    except csv.Error:
        return None, None, None, None
    return found.delimiter, found.quotechar, header, None


def clever(data: bytes) -> Verdict:
    text = data.decode("utf-8", errors="replace")
    detector = clevercsv.Detector()
    found = detector.detect(text, delimiters=[",", ";", "\t", "|"])
    if found is None:
        return None, None, None, None
    try:
        header = detector.has_header(text)
    except Exception:
        header = None
    return found.delimiter, found.quotechar, header, None


def duckdb_sniff(data: bytes) -> Verdict:
    import duckdb

    with tempfile.NamedTemporaryFile(suffix=".csv") as fh:
        fh.write(data)
        fh.flush()
        try:
            row = sniff._connection(threading.get_ident()).execute(
                f"SELECT Delimiter, Quote, HasHeader, SkipRows FROM sniff_csv('{fh.name}')"
            ).fetchone()
        except duckdb.Error:
            return None, None, None, None
    quote = "" if row[1] == "(empty)" else row[1]
    return row[0], quote, bool(row[2]), int(row[3])


def ours(data: bytes) -> Verdict:
    dialect = sniff.detect(data.removeprefix(b"\xef\xbb\xbf"))
    return dialect.delimiter, dialect.quote, dialect.header, dialect.skip_rows


DETECTORS: dict[str, Callable[[bytes], Verdict]] = {
    "csv.Sniffer": python_sniffer,
    "clevercsv": clever,
    "duckdb sniff_csv": duckdb_sniff,
    "ingest (plain check + duckdb)": ours,
}


def accuracy(detect: Callable[[bytes], Verdict]) -> tuple[int, int, int]:
    """(files right on everything the detector tells, files it got wrong, files)."""
    truth = json.loads((CORPUS / "dialects.json").read_text())
    right = 0
    for name, want in sorted(truth.items()):
        delimiter, quote, header, skip = detect((CORPUS / name).read_bytes())
        ok = delimiter == want["delimiter"]
        ok = ok and (want["quote"] is None or quote == want["quote"])
        ok = ok and (header is None or header == want["header"])
        ok = ok and (skip is None or skip == want["skip_rows"])
        right += ok
    return right, len(truth) - right, len(truth)


def cost_ms(detect: Callable[[bytes], Verdict], data: bytes, calls: int) -> float:
    """Per call, the best of five batches, as timeit reports: on a shared machine the
    least disturbed batch is the nearest to the cost itself."""
    detect(data)  # imports and first-call set-up
    batch = max(1, calls // 5)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(batch):
            detect(data)
        best = min(best, (time.perf_counter() - start) / batch)
    return best * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000, help="calls per cost figure")
    args = parser.parse_args()
    print("| detector | right / files | tiny file, ms | small `;` file, ms |")
    print("|---|---|---|---|")
    for name, detect in DETECTORS.items():
        right, _, total = accuracy(detect)
        tiny = cost_ms(detect, TINY, args.files)
        other = cost_ms(detect, NOT_PLAIN, max(1, args.files // 10))
        print(f"| {name} | {right} / {total} | {tiny:.3f} | {other:.3f} |")


if __name__ == "__main__":
    main()
