"""[tables.NAME.csv]: what a table pins, validated with one-line errors naming the key."""

from __future__ import annotations

import pickle

import pytest

from ingest.dialect import PLAIN, CsvOptions, Dialect, parse_csv_options
from ingest.errors import ConfigError

WHERE = "config.toml: [tables.sensors.csv]"


def test_every_key_is_optional() -> None:
    assert parse_csv_options(WHERE, {}) == CsvOptions()


def test_every_key_is_read() -> None:
    options = parse_csv_options(WHERE, {
        "delimiter": ";", "header": False, "skip_rows": 2, "decimal": ",",
        "null_values": ["", "NA", "n/a"], "timestamp_formats": ["%d.%m.%Y %H:%M:%S"],
    })
    assert options == CsvOptions(";", False, 2, ",", ("", "NA", "n/a"), ("%d.%m.%Y %H:%M:%S",))


@pytest.mark.parametrize("tab", ["\t", "\\t", "tab"])
def test_a_tab_delimiter_may_be_written_three_ways(tab: str) -> None:
    assert parse_csv_options(WHERE, {"delimiter": tab}).delimiter == "\t"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("delimiter", ";;", f'{WHERE} delimiter must be one character, got ";;"'),
        ("delimiter", "", f'{WHERE} delimiter must be one character, got ""'),
        ("delimiter", '"', f"{WHERE} delimiter must be one ASCII character, not a quote"),
        # Arrow's reader takes one byte: each file was quarantined at its read.
        ("delimiter", "é", f'{WHERE} delimiter must be one ASCII character, not a quote, a'),
        ("delimiter", "\0", f"{WHERE} delimiter must be one ASCII character, not a quote, a"),
        ("skip_rows", 10**400, f"{WHERE} skip_rows must be an integer >= 0, got 1000"),
        ("header", "yes", f'{WHERE} header must be true or false, got "yes"'),
        ("skip_rows", -1, f"{WHERE} skip_rows must be an integer >= 0, got -1"),
        ("skip_rows", True, f"{WHERE} skip_rows must be an integer >= 0, got True"),
        ("decimal", ";", f'{WHERE} decimal must be "." or ",", got ";"'),
        ("null_values", "NA", f'{WHERE} null_values must be a list of strings, got "NA"'),
        ("timestamp_formats", ["dd.mm.yyyy"], f"{WHERE} timestamp_formats must hold strftime"),
        ("quote", "'", f"{WHERE} unknown key 'quote'"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_csv_options(WHERE, {key: value})
    text = str(caught.value)
    assert text.startswith(message), text
    assert "\n" not in text


def test_options_and_dialects_are_frozen_and_picklable() -> None:
    dialect = Dialect(";", "", "", False, 3, "#", ",", ("NA",), (), ((0, "%d.%m.%Y"),))
    assert pickle.loads(pickle.dumps(dialect)) == dialect
    assert pickle.loads(pickle.dumps(CsvOptions(";"))) == CsvOptions(";")
    with pytest.raises(AttributeError):
        dialect.delimiter = ","  # type: ignore[misc]


def test_describe_is_short_and_names_only_what_is_not_the_default() -> None:
    assert PLAIN.describe() == "delimiter=',' quote='\"' header=yes"
    dialect = Dialect(";", "", "", False, 3, "#", ",", None, (), ((0, "%d.%m.%Y"),))
    assert dialect.describe() == (
        "delimiter=';' quote=none header=no skip_rows=3 comment='#' decimal=','"
        " column0='%d.%m.%Y'"
    )
