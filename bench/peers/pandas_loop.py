"""Naive pandas: one file at a time, one Parquet file per input.

What a first script looks like: `read_csv` (or `read_json(lines=True)`), tag
the rows, `to_parquet`, and the features with pandas' own reductions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .common import CHANNELS, FeatureRow, cli, input_files, records_dir, write_features


def _features(name: str, frame: pd.DataFrame) -> list[FeatureRow]:
    rows: list[FeatureRow] = []
    for column in CHANNELS:
        series = frame[column]
        count = int(series.count())
        quantiles = series.quantile([0.05, 0.5, 0.95], interpolation="linear")
        rows.append(
            {
                "source_file": name,
                "source_column": column,
                "count": count,
                "null_count": int(len(series) - count),
                "mean": float(series.mean()),
                "std": float(series.std(ddof=1)),
                "min": float(series.min()),
                "max": float(series.max()),
                "p05": float(quantiles.iloc[0]),
                "p50": float(quantiles.iloc[1]),
                "p95": float(quantiles.iloc[2]),
                "rms": float(np.sqrt((series * series).mean())),
            }
        )
    return rows


def _read(path: Path) -> pd.DataFrame:
    if path.suffix != ".jsonl":
        return pd.read_csv(path)
    # Without these, pandas turns a column named `timestamp` into dates and parses
    # floats with a faster, less exact routine than read_csv's.
    dtype = {"timestamp": "int64", "device": "str", **dict.fromkeys(CHANNELS, "float64")}
    return pd.read_json(path, lines=True, dtype=dtype, convert_dates=False, precise_float=True)


def run(input_dir: Path, output_dir: Path) -> None:
    """Naive pandas loop."""
    records = records_dir(output_dir)
    features: list[FeatureRow] = []
    for path in input_files(input_dir):
        frame = _read(path)
        features += _features(path.name, frame)
        frame["source_file"] = path.name
        frame.to_parquet(records / f"{path.stem}.parquet", compression="zstd", index=False)
    write_features(features, output_dir)


if __name__ == "__main__":
    cli(run)
