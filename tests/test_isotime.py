"""ISO 8601 text as a table's timestamps: zoned ones at their instant, past microseconds floored."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pytest

from ingest import isotime

AT = dt.datetime(2024, 1, 1, 0, 0)


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-01-01T00:00:00.250Z", AT + dt.timedelta(milliseconds=250)),
    ("2024-01-01T05:30:00+05:30", AT),
    ("2024-01-01T05:30+0530", AT),
    ("2023-12-31T19:00:00-05:00", AT),
    ("2024-01-01 00:00:00", AT),
    ("2024-01-01T00:00:00.123456789Z", AT + dt.timedelta(microseconds=123456)),
    ("2024-01-01T00:00:00.999999999", AT + dt.timedelta(microseconds=999999)),
    ("2024-01-01", AT),
])
def test_iso_text_reads_as_the_instant_it_names_in_utc_microseconds(
    text: str, expected: dt.datetime
) -> None:
    parsed = isotime.parse(pa.chunked_array([pa.array([text, None])]))
    assert parsed.type == pa.timestamp("us")
    assert parsed.to_pylist() == [expected, None]


def test_a_text_column_is_read_as_timestamps_only_if_every_value_is_one() -> None:
    table = pa.table({
        "ts": ["2024-01-01T00:00:00.5Z", None, "2024-01-01T01:00:00+01:00"],
        "note": ["2024-01-01T00:00:00Z", "later", None],
        "name": ["a", "b", "c"],
    })
    read = isotime.timestamps_in_text(table)
    assert read.schema.types == [pa.timestamp("us"), pa.string(), pa.string()]
    assert read.column("ts").to_pylist() == [AT + dt.timedelta(milliseconds=500), None, AT]
