"""config.toml: the SPEC's defaults, path resolution, validation that names the key, flags."""

from __future__ import annotations

import json
import os
import pickle
import socket
import subprocess
import sys
import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from ingest.config import Config, load, override, parse
from ingest.errors import ConfigError

# The config.toml block of SPEC.md: keys and values verbatim, long comments cut.
# The SPEC may only grow, so every key here must keep its default.
SPEC_CONFIG = """
[paths]
drop = "drop"                # the watched folder (created if missing)
output = "output"            # the Parquet dataset root
quarantine = "quarantine"    # bad inputs + <name>.error.json
archive = "archive"          # ingested inputs when on_success = "archive"

[watch]
patterns = ["*.csv", "*.csv.gz", "*.jsonl", "*.ndjson", "*.npy", "*.npz", "*.parquet", "*.arrow"]
settle_ms = 200              # a file must be unchanged this long before it is read
rescan_s = 30                # full directory rescan: the watcher is a hint, not the truth
force_polling = false        # for network shares and container bind mounts
on_success = "archive"       # "archive" | "delete" | "keep" (keep: the drop folder is read-only
                             #  to us; bad files are copied to quarantine, the ledger ...)

[pipeline]
workers = 0                  # 0 = all cores
executor = "process"         # "process" | "dask://HOST:PORT" | "dask://local"
queue_files = 64             # bound on files waiting for a worker
memory_mb = 1024             # bound on bytes held in the queue and in flight
retries = 2                  # attempts after a worker dies on a file

[features]
time_column = "timestamp"    # excluded from features
sets = ["summary"]           # built-in sets and/or "package.module:function"
window = 0                   # rows per window; 0 = whole file

[output]
tables = ["records", "features"]
compression = "zstd"
target_file_mb = 128         # small files are batched into part files up to this size
flush_s = 1                  # ...or at most this long after the oldest row (0 = at once)

[metrics]
port = 0                     # Prometheus /metrics and /healthz on this port; 0 = off
host = "127.0.0.1"
"""

SPEC_KEYS = [
    (section, key, value)
    for section, table in tomllib.loads(SPEC_CONFIG).items()
    for key, value in table.items()
]
PATH_KEYS = [f.name for f in fields(Config().paths)]


def _plain(value: object) -> object:
    """A default in the form TOML writes it: paths as strings, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# --- defaults ---------------------------------------------------------------------------


@pytest.mark.parametrize(("section", "key", "spec_value"), SPEC_KEYS,
                         ids=[f"{s}.{k}" for s, k, _ in SPEC_KEYS])
def test_built_in_default_matches_the_spec(section: str, key: str, spec_value: object) -> None:
    default = getattr(getattr(Config(), section), key)
    assert _plain(default) == spec_value
    # False == 0 in Python; a bool key must default to a bool, and a number to a number
    assert isinstance(default, bool) == isinstance(spec_value, bool)


def test_the_spec_block_parses_to_the_built_in_defaults() -> None:
    parsed = parse(tomllib.loads(SPEC_CONFIG), source="config.toml")
    assert parsed == Config(source="config.toml")


def test_missing_default_config_means_defaults_relative_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load()
    assert config.source == "built-in defaults"
    assert config.pipeline == Config().pipeline
    assert config.watch == Config().watch
    for key in PATH_KEYS:
        assert getattr(config.paths, key) == tmp_path.resolve() / key


def test_default_config_file_in_the_cwd_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "config.toml", "[pipeline]\nworkers = 3\n")
    monkeypatch.chdir(tmp_path)
    assert load().pipeline.workers == 3


def test_empty_config_file_means_defaults(tmp_path: Path) -> None:
    config = load(_write(tmp_path / "config.toml", ""))
    assert config.pipeline == Config().pipeline
    assert config.features == Config().features


def test_workers_zero_means_all_cores() -> None:
    assert Config().workers == (os.cpu_count() or 1)


# --- paths ------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config_file = _write(
        tmp_path / "project" / "config.toml",
        '[paths]\ndrop = "in/box"\noutput = "../shared/out"\n',
    )
    config = load(config_file)
    project = (tmp_path / "project").resolve()
    assert config.paths.drop == project / "in" / "box"
    assert config.paths.output == tmp_path.resolve() / "shared" / "out"
    # keys left out take their default, also relative to the config file's folder
    assert config.paths.quarantine == project / "quarantine"
    assert config.paths.archive == project / "archive"


def test_relative_config_path_resolves_against_its_own_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "sub" / "config.toml", '[paths]\ndrop = "d"\n')
    monkeypatch.chdir(tmp_path)
    assert load(Path("sub/config.toml")).paths.drop == (tmp_path / "sub" / "d").resolve()


def test_absolute_paths_are_kept(tmp_path: Path) -> None:
    target = (tmp_path / "abs" / "drop").resolve()
    config = load(_write(tmp_path / "cfg" / "config.toml", f'[paths]\ndrop = "{target}"\n'))
    assert config.paths.drop == target


def test_explicit_config_path_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load(missing)


def test_invalid_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.toml: invalid TOML"):
        load(_write(tmp_path / "config.toml", "[pipeline\nworkers = 2\n"))


def test_a_path_under_the_home_folder_is_put_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Not a folder named "~" beside the config, where no file would ever be dropped.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = _write(tmp_path / "config.toml", '[paths]\ndrop = "~/incoming"\noutput = "~"\n'
                  'archive = "~user/archive"\n')
    config = load(path)
    assert config.paths.drop == tmp_path / "home" / "incoming"
    assert config.paths.output == tmp_path / "home"
    assert config.paths.archive == tmp_path / "~user" / "archive"
    monkeypatch.delenv("HOME")
    monkeypatch.setattr("pwd.getpwuid", _no_user)
    with pytest.raises(ConfigError, match=r'\[paths\] drop = "~/incoming": no home folder'):
        load(path)


def _no_user(uid: int) -> object:
    raise KeyError(uid)


def test_a_config_file_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # As some Windows editors save UTF-8; it was "invalid TOML".
    path = tmp_path / "config.toml"
    path.write_bytes(b"\xef\xbb\xbf[pipeline]\nworkers = 3\n# f\xc3\xbcr\n")
    assert load(path).pipeline.workers == 3
    path.write_bytes(b"\xef\xbb\xbf[pipeline]\nworkers = 1\n# f\xfcr\n")
    with pytest.raises(ConfigError, match=r"config\.toml: line 3 is not UTF-8"):
        load(path)


def test_a_config_file_not_in_utf8_is_a_config_error_naming_its_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[pipeline]\nworkers = 1\n# Messdaten f\xfcr M\xe4rz\n")
    with pytest.raises(ConfigError, match=r"config\.toml: line 3 is not UTF-8"):
        load(path)


# --- validation -------------------------------------------------------------------------


def test_wrong_type_message_is_exact() -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"pipeline": {"workers": "two"}}, source="config.toml")
    assert str(caught.value) == (
        'config.toml: [pipeline] workers must be an integer from 0 to 1024, got "two"'
    )


def test_wrong_type_message_from_a_file_named_config_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path / "config.toml", '[pipeline]\nworkers = "two"\n')
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as caught:
        load(Path("config.toml"))
    assert str(caught.value) == (
        'config.toml: [pipeline] workers must be an integer from 0 to 1024, got "two"'
    )


def test_unknown_section_is_named() -> None:
    with pytest.raises(ConfigError, match=r"unknown section \[pipelines\]"):
        parse({"pipelines": {"workers": 2}})


def test_top_level_key_is_an_unknown_section() -> None:
    with pytest.raises(ConfigError, match=r"\[workers\]"):
        parse({"workers": 2})


def test_unknown_key_is_named_with_its_section() -> None:
    with pytest.raises(ConfigError, match=r"\[pipeline\] unknown key 'wrkers'"):
        parse({"pipeline": {"wrkers": 2}})


def test_section_that_is_not_a_table_is_named() -> None:
    with pytest.raises(ConfigError, match=r"\[paths\] must be a table"):
        parse({"paths": "drop"})


BAD_VALUES = [
    # wrong type
    ("pipeline", "workers", 1.5),
    ("pipeline", "memory_mb", "1024"),
    ("watch", "settle_ms", "200"),
    ("watch", "patterns", "*.csv"),
    ("watch", "patterns", ["*.csv", 3]),
    ("watch", "force_polling", "yes"),
    ("watch", "force_polling", 1),
    ("pipeline", "shared_output", "true"),
    ("features", "sets", "summary"),
    ("features", "time_column", 5),
    ("paths", "drop", 3),
    ("paths", "output", ""),
    ("metrics", "host", ""),
    ("metrics", "host", 8080),
    # bool where a number is expected
    ("pipeline", "workers", True),
    ("pipeline", "queue_files", False),
    ("watch", "settle_ms", True),
    ("watch", "rescan_s", True),
    ("watch", "canary_wait_s", True),
    ("watch", "once_unsettled_s", True),
    ("output", "flush_s", False),
    ("features", "window", True),
    # bad enum values
    ("watch", "on_success", "move"),
    ("watch", "on_success", "arch\nive"),  # a line break stays in the message's one line
    ("pipeline", "executor", "thread"),
    # A scheduler's address needs a host and a numeric port; `local` is spelled so.
    ("pipeline", "executor", "dask://127.0.0.1"),
    ("pipeline", "executor", "dask://127.0.0.1:notaport"),
    ("pipeline", "executor", "dask://127.0.0.1:43805/"),
    ("pipeline", "executor", "dask://127.0.0.1:70000"),
    ("pipeline", "executor", "dask://Local"),
    ("pipeline", "executor", "dask:// local"),
    ("pipeline", "executor", "dask://xyz://127.0.0.1:1"),  # no such scheme: exit 1 at start
    ("pipeline", "executor", "dask://inproc://127.0.0.1:1"),  # reaches no other process
    ("output", "compression", "lzma"),
    ("output", "tables", ["records", "rows"]),
    # out of range
    ("pipeline", "workers", -1),
    ("pipeline", "queue_files", 0),
    ("pipeline", "retries", -1),
    ("watch", "rescan_s", 0),
    ("watch", "canary_wait_s", 0),
    ("watch", "canary_wait_s", -1),
    ("watch", "once_unsettled_s", 0),
    ("watch", "once_unsettled_s", "60"),
    ("features", "window", -5),
    ("output", "target_file_mb", 0),
    ("output", "flush_s", -0.5),
    ("watch", "patterns", []),
    ("watch", "patterns", ["**/*.csv"]),  # names alone are matched: it matched nothing
    ("features", "sets", []),
    ("output", "tables", []),
    ("pipeline", "task_timeout_s", float("inf")),  # past what the worker's alarm takes
    ("pipeline", "task_timeout_s", 1e12),
    # Two dispatching tasks a worker, started at once: 200,000 held start-up for minutes.
    ("pipeline", "workers", 1025),
    ("pipeline", "workers", 2**64),
    ("pipeline", "known_files", 2**63),  # past what SQLite takes: a traceback at start-up
    # TOML's integers have no bound: as seconds or bytes, a traceback at start-up.
    ("watch", "settle_ms", 10**400),
    ("output", "target_file_mb", 10**400),
    ("pipeline", "memory_mb", 2**53 + 1),
    ("pipeline", "retries", 2**64),
    # TOML's inf: a flush_s of inf never committed what it held.
    ("output", "flush_s", float("inf")),
    ("pipeline", "drain_s", float("inf")),
    ("watch", "rescan_s", float("inf")),
    ("watch", "rescan_s", float("nan")),
    ("paths", "drop", "a\0b"),  # a traceback from the path's resolve
    ("metrics", "host", "local\0host"),
]


@pytest.mark.parametrize(("section", "key", "value"), BAD_VALUES,
                         ids=[f"{s}.{k}={v!r}"[:60] for s, k, v in BAD_VALUES])
def test_bad_value_raises_config_error_naming_the_key(
    section: str, key: str, value: object
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse({section: {key: value}}, source="config.toml")
    message = str(caught.value)
    assert message.startswith(f"config.toml: [{section}] {key} must be "), message
    assert "\n" not in message


def test_an_integer_too_large_for_a_float_key_is_a_config_error(tmp_path: Path) -> None:
    # TOML's integers have no bound: math.isfinite raised an OverflowError.
    config_file = _write(tmp_path / "c.toml", "[pipeline]\ndrain_s = 1" + "0" * 400 + "\n")
    with pytest.raises(ConfigError, match=r"\[pipeline\] drain_s must be a number >= 0"):
        load(config_file)


def test_bad_value_in_a_file_names_the_file_and_the_key(tmp_path: Path) -> None:
    config_file = _write(tmp_path / "my.toml", '[watch]\non_success = "move"\n')
    with pytest.raises(ConfigError) as caught:
        load(config_file)
    assert str(caught.value) == (
        f'{config_file}: [watch] on_success must be one of archive, delete, keep, got "move"'
    )


def test_shared_output_is_off_unless_said() -> None:
    assert Config().pipeline.shared_output is False
    assert parse({"pipeline": {"shared_output": True}}).pipeline.shared_output is True


@pytest.mark.parametrize("send", ["auto", "bytes", "paths"])
def test_send_accepts_auto_bytes_or_paths(send: str) -> None:
    assert Config().pipeline.send == "auto"
    assert parse({"pipeline": {"send": send}}).pipeline.send == send


@pytest.mark.parametrize(
    ("executor", "send", "paths"),
    [
        ("process", "auto", True),
        ("dask://local", "auto", True),
        ("dask://scheduler:8786", "auto", False),
        ("process", "bytes", False),
        ("dask://scheduler:8786", "paths", True),
    ],
)
def test_auto_sends_paths_to_workers_of_this_machine_only(
    executor: str, send: str, paths: bool
) -> None:
    pipeline = parse({"pipeline": {"executor": executor, "send": send}}).pipeline
    assert pipeline.sends_paths is paths


@pytest.mark.parametrize("executor", [
    "process", "dask://scheduler:8786", "dask://local", "dask://tcp://10.0.0.5:8786",
    "dask://[::1]:8786",
])
def test_executor_accepts_the_documented_forms(executor: str) -> None:
    assert parse({"pipeline": {"executor": executor}}).pipeline.executor == executor


def test_integer_is_accepted_where_a_number_is_expected() -> None:
    config = parse({"watch": {"rescan_s": 5}, "output": {"flush_s": 0}})
    assert config.watch.rescan_s == 5.0
    assert isinstance(config.watch.rescan_s, float)
    assert config.output.flush_s == 0.0
    assert parse({"watch": {"canary_wait_s": 2}}).watch.canary_wait_s == 2.0


def test_lists_become_tuples_so_config_stays_frozen_and_hashable() -> None:
    config = parse({"watch": {"patterns": ["*.csv"]}, "features": {"sets": ["summary", "a.b:c"]}})
    assert config.watch.patterns == ("*.csv",)
    assert config.features.sets == ("summary", "a.b:c")
    hash(config)


# --- flags ------------------------------------------------------------------------------


def test_flags_override_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = load(_write(tmp_path / "config.toml", "[pipeline]\nworkers = 4\n"))
    monkeypatch.chdir(tmp_path)
    changed = override(config, drop=Path("other/in"), output=Path("/srv/out"), workers=1)
    assert changed.paths.drop == tmp_path.resolve() / "other" / "in"
    assert changed.paths.output == Path("/srv/out").resolve()
    assert changed.pipeline.workers == 1
    # everything else is untouched
    assert changed.paths.quarantine == config.paths.quarantine
    assert changed.pipeline.queue_files == config.pipeline.queue_files


def test_no_flags_leave_the_config_unchanged(tmp_path: Path) -> None:
    config = load(_write(tmp_path / "config.toml", "[pipeline]\nworkers = 4\n"))
    assert override(config) == config


def test_workers_flag_zero_is_allowed() -> None:
    assert override(Config(), workers=0).pipeline.workers == 0


def test_negative_workers_flag_is_a_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        override(Config(), workers=-1)


def test_config_round_trips_through_pickle(tmp_path: Path) -> None:
    config = load(_write(
        tmp_path / "config.toml",
        '[features]\nsets = ["summary", "pkg.mod:fn"]\nwindow = 10\n[pipeline]\nworkers = 2\n',
    ))
    assert pickle.loads(pickle.dumps(config)) == config
    assert pickle.loads(pickle.dumps(config.features)) == config.features


# --- the command line -------------------------------------------------------------------


def _ingest(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ('[pipeline]\nworkers = "two"\n', "[pipeline] workers"),
        ("[watch]\nsettle_mss = 5\n", "settle_mss"),
        ('[pipeline]\nsend = "files"\n', "[pipeline] send"),
    ],
    ids=["wrong-type", "unknown-key", "bad-send"],
)
def test_once_with_a_bad_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, toml: str, named: str
) -> None:
    _write(tmp_path / "config.toml", toml)
    result = _ingest(tmp_path, "once", "--config", "config.toml")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert named in lines[0]
    assert not (tmp_path / "output").exists()


def test_once_with_a_missing_explicit_config_exits_2(tmp_path: Path) -> None:
    result = _ingest(tmp_path, "once", "--config", "absent.toml")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "absent.toml" in lines[0]


def test_once_with_negative_workers_flag_exits_2_naming_the_flag(tmp_path: Path) -> None:
    _write(tmp_path / "config.toml", "[pipeline]\nworkers = 1\n")
    result = _ingest(tmp_path, "once", "--config", "config.toml", "--workers", "-1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers" in lines[0]
    assert not (tmp_path / "output").exists()


def test_a_metrics_port_in_use_exits_2_with_one_line_naming_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        _write(tmp_path / "config.toml", f"[pipeline]\nworkers = 1\n[metrics]\nport = {port}\n")
        result = _ingest(tmp_path, "once", "--config", "config.toml")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"[metrics] port {port}" in lines[0], result.stderr


def test_an_archive_path_that_is_a_file_exits_2_naming_it(tmp_path: Path) -> None:
    (tmp_path / "archive").write_text("not a folder")
    _write(tmp_path / "config.toml", "[pipeline]\nworkers = 1\n")
    result = _ingest(tmp_path, "once", "--config", "config.toml")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"ingest: [paths] archive = {str(tmp_path / 'archive')!r}: not a folder"
    ]


def test_with_json_logs_a_bad_config_is_one_json_line_naming_the_key(tmp_path: Path) -> None:
    # A scheduled run appends stderr to a log of JSON lines: its last word is one too.
    _write(tmp_path / "config.toml", "[watch]\nsettle_mss = 5\n")
    result = _ingest(tmp_path, "once", "--config", "config.toml", "--log-format", "json")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and "settle_mss" in entry["message"]


@pytest.mark.parametrize(("args", "named"), [
    (("once", "--workers", "abc"), "--workers"),
    (("once", "--log-level", "TRACE"), "--log-level"),
    (("explain",), "path"),
    (("frob",), "frob"),
    ((), "command"),
])
def test_a_usage_error_exits_2_with_one_line_naming_the_flag(
    tmp_path: Path, args: tuple[str, ...], named: str
) -> None:
    result = _ingest(tmp_path, *args)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ingest") and named in line and "--help" in line


@pytest.mark.parametrize("name", ["a" * 129, "Records", "features", "1st"])
def test_a_table_name_that_is_no_folders_name_is_a_config_error(name: str) -> None:
    # A name of 256 characters held `once` in a retried commit, "File name too long".
    with pytest.raises(ConfigError) as caught:
        parse({"tables": {name: {"patterns": ["*.csv"]}}}, source="config.toml")
    assert str(caught.value).startswith(
        f"config.toml: [tables.{name}]: a table name must match [a-z][a-z0-9_]*, be at most"
        " 128 characters"
    ), caught.value


def test_a_table_name_of_128_characters_is_taken() -> None:
    config = parse({"tables": {"a" * 128: {"patterns": ["*.csv"]}}}, source="config.toml")
    assert [table.name for table in config.tables] == ["a" * 128]


@pytest.mark.parametrize(("rel", "table"), [
    ("sensors/s1.csv", "sensors"), ("lab/sensors/s2.csv", "records"),
    ("sub/x3.csv", "deep"), ("sub/a/b/x4.csv", "deep"), ("sub/a/x5.jsonl", "records"),
    ("a/b/log_1.csv", "logs"), ("log_1.csv", "logs"), ("LOG_1.csv", "records"),
    ("top.csv", "top"), ("x/top.csv", "records"),
])
def test_a_pattern_with_a_slash_matches_the_path_in_the_drop_folder_and_one_without_the_name(
    rel: str, table: str
) -> None:
    config = parse({"tables": {
        "sensors": {"patterns": ["sensors/*.csv"]}, "deep": {"patterns": ["sub/**/*.csv"]},
        "logs": {"patterns": ["log_*.csv"]}, "top": {"patterns": ["./top.csv"]},
    }})
    assert config.route(rel) == table


@pytest.mark.parametrize(("pattern", "problem"), [
    (".", "matches no path"), ("./", "matches no path"), ("a/", "matches no path"),
    ("a/.", "matches no path"), ("../x.csv", "matches no path"),
    ("/srv/drop/*.csv", "is absolute: patterns match a file's path in the drop folder"),
])
def test_a_table_pattern_that_can_match_no_input_is_a_config_error(
    pattern: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"tables": {"t": {"patterns": ["*.csv", pattern]}}}, source="config.toml")
    assert str(caught.value).startswith(
        f'config.toml: [tables.t] patterns: "{pattern}" {problem}: a glob'
    ), caught.value


@pytest.mark.parametrize(("body", "message"), [
    ({"csv": {"timestamp_formats": ["%d.%m.%Y %Q"]}},
     "[tables.t.csv] timestamp_formats: \"%d.%m.%Y %Q\" holds '%Q', which is no strptime"
     " directive"),
    ({"csv": {"timestamp_formats": ["%Y%"]}},
     "[tables.t.csv] timestamp_formats: \"%Y%\" holds '%', which is no strptime directive"),
    ({"csv": {"decimal": ",", "delimiter": ","}},
     "[tables.t.csv] decimal and delimiter are both \",\": a number's decimal mark cannot"
     " also part the fields"),
    ({"columns": {"Source_File": "int64"}},
     "[tables.t.columns] Source_File is a column ingest adds itself"),
    ({"columns": {"_rescued_data": "bool"}},
     "[tables.t.columns] _rescued_data is a column ingest adds itself"),
], ids=["unknown-directive", "lone-percent", "decimal-is-delimiter", "source-file", "rescued"])
def test_a_table_setting_that_cannot_take_effect_is_a_config_error(
    body: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse({"tables": {"t": {"patterns": ["t*"], **body}}}, source="config.toml")
    assert str(caught.value).startswith(f"config.toml: {message}"), caught.value


def test_timestamp_formats_of_every_strptime_directive_are_taken() -> None:
    formats = ["%d.%m.%Y %H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%e %b %Y %I:%M %p", "%j/%y %%",
               "%a, %d %B %Y %T", "%D %R"]
    config = parse({"tables": {"t": {"patterns": ["t*"], "csv": {"timestamp_formats": formats}}}})
    (table,) = config.tables
    assert table.csv is not None and list(table.csv.timestamp_formats) == formats


def test_workers_flag_past_the_bound_is_a_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match=r"--workers must be an integer from 0 to 1024"):
        override(Config(), workers=200_000)


@pytest.mark.parametrize(("module", "named"), [
    ("bad_syntax", "SyntaxError"),
    ("bad_import", "RuntimeError: broken at import"),
])
def test_a_feature_set_whose_import_fails_exits_2_with_one_line(
    tmp_path: Path, module: str, named: str
) -> None:
    (tmp_path / "bad_syntax.py").write_text("def f(:\n")
    (tmp_path / "bad_import.py").write_text("raise RuntimeError('broken at import')\n")
    _write(tmp_path / "config.toml", f'[features]\nsets = ["summary", "{module}:f"]\n')
    result = subprocess.run(
        [sys.executable, "-m", "ingest", "once", "--config", "config.toml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"ingest: [features] sets: cannot load '{module}:f': {named}"), line


def test_a_relative_feature_set_name_exits_2_with_one_line(tmp_path: Path) -> None:
    _write(tmp_path / "config.toml", '[features]\nsets = [".x:y"]\n')
    result = _ingest(tmp_path, "once", "--config", "config.toml")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("ingest: [features] sets: cannot load '.x:y': TypeError"), line


@pytest.mark.parametrize("toml", [
    '[tables."a\\u000Ab"]\npatterns = ["*.csv"]\n',
    '[tables.t]\npatterns = ["*.csv"]\n[tables.t.columns]\n"a\\u000Ab" = "int"\n',
    '["a\\u000Ab"]\nx = 1\n',
    '[paths]\ndrop = "x\\u000Ay"\noutput = "x\\u000Ay"\n',
], ids=["table", "column", "section", "paths"])
def test_a_name_with_a_line_break_keeps_a_config_error_on_one_line(
    tmp_path: Path, toml: str
) -> None:
    _write(tmp_path / "config.toml", toml)
    result = _ingest(tmp_path, "once", "--config", "config.toml")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "a\\nb" in line or "x\\ny" in line, line


@pytest.mark.parametrize("command", [("compact",), ("ledger", "rebuild")])
def test_compact_and_rebuild_with_an_output_that_is_a_file_exit_2_naming_it(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "output").write_text("not a folder")
    _write(tmp_path / "config.toml", "[pipeline]\nworkers = 1\n")
    result = _ingest(tmp_path, *command, "--config", "config.toml")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"ingest: [paths] output = {str(tmp_path / 'output')!r}: not a folder"
    ]


@pytest.mark.parametrize("command", [("once",), ("compact",), ("ledger", "rebuild")])
@pytest.mark.parametrize(("entry", "kind"), [
    ("_ingest", "not a folder"), ("_ingest/tmp", "not a folder"),
    ("_ingest/writer.lock", "a folder"), ("_ingest/ledger.sqlite", "a folder"),
])
def test_a_state_entry_of_the_wrong_kind_exits_2_naming_it(
    tmp_path: Path, command: tuple[str, ...], entry: str, kind: str
) -> None:
    # Each was a traceback (FileExistsError, IsADirectoryError) and exit 1.
    made = tmp_path / "output" / entry
    made.parent.mkdir(parents=True, exist_ok=True)
    if kind == "a folder":
        made.mkdir()
    else:
        made.write_text("not a folder")
    _write(tmp_path / "config.toml", "[pipeline]\nworkers = 1\n")
    result = _ingest(tmp_path, *command, "--config", "config.toml")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"ingest: [paths] output = {str(tmp_path / 'output')!r}: {entry} is {kind}, where"
        " ingest keeps its state; move it away"
    ]


def test_a_delta_output_whose_path_holds_a_percent_sign_exits_2_naming_it(
    tmp_path: Path,
) -> None:
    # deltalake decoded `%20` to a space: every commit failed half in the log, exit 1
    # for ever.
    output = tmp_path / "out%20put"
    _write(tmp_path / "config.toml",
           f'[paths]\noutput = "{output}"\n[output]\nformat = "delta"\n')
    result = _ingest(tmp_path, "once", "--config", "config.toml")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f'ingest: [output] format = "delta": [paths] output = {str(output)!r} holds "%",'
        " which deltalake reads as a URL's escape; choose a folder without it"
    ]


def test_with_json_logs_a_usage_error_is_one_json_line_naming_the_flag(tmp_path: Path) -> None:
    result = _ingest(tmp_path, "once", "--log-format", "json", "--workers", "abc")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and "--workers" in entry["message"], entry
    assert "--help" in entry["message"]


def test_the_summary_line_is_written_at_any_log_level(tmp_path: Path) -> None:
    _write(tmp_path / "config.toml", "[pipeline]\nworkers = 1\n")
    (tmp_path / "drop").mkdir()
    (tmp_path / "drop" / "a.csv").write_text("a,b\n1,2\n")
    result = _ingest(tmp_path, "once", "--config", "config.toml", "--log-level", "WARNING")
    assert result.returncode == 0, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "ingested 1 files (1 rows)" in line
