"""Sequential pyarrow: one file at a time, one Parquet file per input.

pyarrow's CSV (or JSON) reader and Parquet writer keep their own threads; the loop
itself is sequential, as a simple script would be.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .common import (
    CHANNELS,
    FeatureRow,
    cli,
    input_files,
    read_table,
    records_dir,
    summary,
    write_features,
)


def run(input_dir: Path, output_dir: Path) -> None:
    """Sequential pyarrow loop."""
    records = records_dir(output_dir)
    features: list[FeatureRow] = []
    for path in input_files(input_dir):
        table = read_table(path)
        for column in CHANNELS:
            values = table[column].to_numpy(zero_copy_only=False)
            features.append(summary(path.name, column, values))
        table = table.append_column("source_file", pa.repeat(path.name, table.num_rows))
        pq.write_table(table, records / f"{path.stem}.parquet", compression="zstd")
    write_features(features, output_dir)


if __name__ == "__main__":
    cli(run)
