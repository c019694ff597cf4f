"""Settings: every source (command line, environment, config file) checked by the same types.

``parse_settings`` is called directly with an explicit environment (so the developer's own
TASKDESK_* variables never leak in); one test runs ``main.py`` as a real process.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import pytest

from service.paths import default_actions_file, default_db_path, default_plugins_folder
from service.settings import (
    SETTINGS,
    Settings,
    parse_settings,
    run_cli,
    setting_options,
    settings_from_context,
)
from service.version import VERSION
from tests.proc_helpers import REPO_ROOT, run_taskdesk

CONFIG = "/home/me/.config/taskdesk/actions.toml"


def defaults() -> Settings:
    return Settings(
        headless=False, host="127.0.0.1", port=8080, db=default_db_path(), workers=2,
        prefetch=64, work_delay=0.1, task_timeout=300.0, max_attempts=3, retry_backoff=1.0,
        token=None, synchronous="full", log_level="INFO", unknown_actions="accept",
        actions=default_actions_file(), plugins=default_plugins_folder(), no_plugins=False,
        kill_grace=5.0, lease=30.0, keep_completed=30.0, keep_failed=90.0,
    )


def parse(argv: list[str] | None = None, environ: Mapping[str, str] | None = None,
          config: Mapping[str, object] | None = None) -> Settings:
    return parse_settings(argv or [], environ or {}, config, CONFIG if config else None)


def refusal(capsys: pytest.CaptureFixture[str], argv: list[str] | None = None,
            environ: Mapping[str, str] | None = None,
            config: Mapping[str, object] | None = None) -> str:
    """The one line parse_settings writes as it exits 2; nothing else may be written."""
    with pytest.raises(SystemExit) as exited:
        parse(argv, environ, config)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err.rstrip("\n")


# -- the table -------------------------------------------------------------------------------


def test_the_table_declares_every_settings_field_in_order() -> None:
    assert [s.name for s in SETTINGS] == [f.name for f in dataclasses.fields(Settings)]


def test_defaults() -> None:
    assert parse() == defaults()


def test_the_process_environment_is_read_when_none_is_given(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKDESK_PORT", "9001")
    assert parse_settings([]).port == 9001


# -- each source -----------------------------------------------------------------------------

# (setting, text as the command line or the environment gives it, TOML value, the result)
VALUES: list[tuple[str, str, object, object]] = [
    ("headless", "yes", True, True),
    ("host", "::1", "::1", "::1"),
    ("port", "0", 0, 0),
    ("db", "/tmp/x/tasks.db", "/tmp/x/tasks.db", Path("/tmp/x/tasks.db")),
    ("workers", "64", 64, 64),
    ("prefetch", "1", 1, 1),
    ("work_delay", "0", 0, 0.0),
    ("task_timeout", "0.5", 0.5, 0.5),
    ("max_attempts", "100", 100, 100),
    ("retry_backoff", "2.5", 2.5, 2.5),
    ("token", "s3cret", "s3cret", "s3cret"),
    ("synchronous", "normal", "normal", "normal"),
    ("log_level", "warning", "Warning", "WARNING"),
    ("unknown_actions", "refuse", "refuse", "refuse"),
    ("actions", "/tmp/x/a.toml", "/tmp/x/a.toml", Path("/tmp/x/a.toml")),
    ("plugins", "/tmp/x/plugins", "/tmp/x/plugins", Path("/tmp/x/plugins")),
    ("no_plugins", "1", True, True),
    ("kill_grace", "0.5", 0.5, 0.5),
    ("lease", "3", 3, 3.0),
    ("keep_completed", "0", 0, 0.0),
    ("keep_failed", "0.5", 0.5, 0.5),
]
VALUE_IDS = [v[0] for v in VALUES]


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def env_name(name: str) -> str:
    return "TASKDESK_" + name.upper()


def test_the_table_of_values_covers_every_setting() -> None:
    assert [v[0] for v in VALUES] == [s.name for s in SETTINGS]


@pytest.mark.parametrize(("name", "text", "toml", "expected"), VALUES, ids=VALUE_IDS)
def test_a_value_from_the_command_line(name: str, text: str, toml: object,
                                       expected: object) -> None:
    argv = [option(name)] if name in ("headless", "no_plugins") else [option(name), text]
    assert getattr(parse(argv), name) == expected


@pytest.mark.parametrize(("name", "text", "toml", "expected"), VALUES, ids=VALUE_IDS)
def test_a_value_from_the_environment(name: str, text: str, toml: object,
                                      expected: object) -> None:
    assert getattr(parse(environ={env_name(name): text}), name) == expected


@pytest.mark.parametrize(("name", "text", "toml", "expected"), VALUES, ids=VALUE_IDS)
def test_a_value_from_the_config_file(name: str, text: str, toml: object,
                                      expected: object) -> None:
    settings = parse(config={name: toml})
    assert getattr(settings, name) == expected
    assert type(getattr(settings, name)) is type(expected)  # 0 from TOML is 0.0 seconds


@pytest.mark.parametrize(("text", "expected"), [
    ("1", True), ("true", True), ("YES", True), ("on", True),
    ("0", False), ("false", False), ("no", False), ("Off", False),
])
def test_flags_from_the_environment(text: str, expected: bool) -> None:
    assert parse(environ={"TASKDESK_HEADLESS": text}).headless is expected


def test_flags_from_the_config_file_are_booleans() -> None:
    assert parse(config={"headless": True}).headless is True
    assert parse(config={"headless": False}).headless is False


def test_an_empty_environment_variable_is_unset() -> None:
    # As click's own envvar= treats it; TASKDESK_TOKEN= means "no token", not "token ''".
    assert parse(environ={"TASKDESK_TOKEN": "", "TASKDESK_PORT": ""}) == defaults()


def test_the_database_path_is_expanded() -> None:
    assert parse(["--db", "~/t.db"]).db == Path("~/t.db").expanduser()
    assert parse(environ={"TASKDESK_DB": "~/e.db"}).db == Path("~/e.db").expanduser()


# -- precedence ------------------------------------------------------------------------------


def test_command_line_over_environment_over_config_over_default() -> None:
    argv = ["--workers", "4"]
    environ = {"TASKDESK_WORKERS": "5", "TASKDESK_PREFETCH": "6"}
    config = {"workers": 7, "prefetch": 8, "port": 9}
    settings = parse(argv, environ, config)
    assert (settings.workers, settings.prefetch, settings.port, settings.max_attempts) == (
        4, 6, 9, 3)


@pytest.mark.parametrize(("argv", "environ", "config", "where"), [
    (["--port", "1"], {"TASKDESK_PORT": "x"}, None, "environment variable TASKDESK_PORT"),
    (["--port", "1"], {}, {"port": "x"}, f"{CONFIG} [settings] port"),
    ([], {"TASKDESK_PORT": "1"}, {"port": "x"}, f"{CONFIG} [settings] port"),
], ids=["environ-under-argv", "config-under-argv", "config-under-environ"])
def test_a_bad_value_is_refused_even_where_a_source_above_overrides_it(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str],
    config: dict[str, object] | None, where: str
) -> None:
    assert refusal(capsys, argv, environ, config) == (
        f"taskdesk: invalid value for --port from {where}: 'x' is not an integer from 0 to 65535")


# -- the database: a file, or a PostgreSQL URL -----------------------------------------------


def test_a_postgresql_url_is_kept_as_a_url_and_shown_without_its_password() -> None:
    url = "postgresql://tasks:s3cret@db.example:5433/taskdesk"
    settings = parse(["--db", url])
    assert settings.db == url
    assert settings.db_location == "postgresql://tasks@db.example:5433/taskdesk"
    assert parse(environ={"TASKDESK_DB": "postgres://h/d"}).db == "postgres://h/d"
    # A path that merely mentions the scheme stays a file.
    assert parse(["--db", "./postgresql:/x.db"]).db == Path("postgresql:/x.db")


def test_a_bad_postgresql_url_is_refused_without_its_password(
    capsys: pytest.CaptureFixture[str]
) -> None:
    assert refusal(capsys, ["--db", "postgresql://u:s3cret@h:99999/d"]) == (
        "taskdesk: invalid value for --db from the command line: "
        "'postgresql://u@h:99999/d' is not a file path or a "
        "postgresql://user@host:port/dbname URL")


# -- refusals --------------------------------------------------------------------------------


def test_the_review_example_synchronous_off(capsys: pytest.CaptureFixture[str]) -> None:
    # It used to be taken silently, giving up power-cut durability.
    assert refusal(capsys, environ={"TASKDESK_SYNCHRONOUS": "off"}) == (
        "taskdesk: invalid value for --synchronous from environment variable "
        "TASKDESK_SYNCHRONOUS: 'off' is not one of full, normal")


def test_the_review_example_log_level_verbose(capsys: pytest.CaptureFixture[str]) -> None:
    # It used to end in a traceback from logging.
    assert refusal(capsys, environ={"TASKDESK_LOG_LEVEL": "verbose"}) == (
        "taskdesk: invalid value for --log-level from environment variable "
        "TASKDESK_LOG_LEVEL: 'verbose' is not one of DEBUG, INFO, WARNING, ERROR (in any case)")


# (setting, bad value, what the message says is allowed): choices, bounds, types.
BAD: list[tuple[str, Any, str]] = [
    ("synchronous", "FULL", "one of full, normal"),  # case-sensitive, as it always was
    ("log_level", "trace", "one of DEBUG, INFO, WARNING, ERROR (in any case)"),
    ("port", "65536", "an integer from 0 to 65535"),
    ("port", "-1", "an integer from 0 to 65535"),
    ("workers", "0", "an integer from 1 to 64"),
    ("workers", "two", "an integer from 1 to 64"),
    ("workers", "2.5", "an integer from 1 to 64"),
    ("prefetch", "10001", "an integer from 1 to 10000"),
    ("max_attempts", "0", "an integer from 1 to 100"),
    ("work_delay", "-0.1", "a number of seconds from 0 to 3600"),
    ("work_delay", "nan", "a number of seconds from 0 to 3600"),
    ("task_timeout", "0.05", "a number of seconds from 0.1 to 86400"),
    ("task_timeout", "inf", "a number of seconds from 0.1 to 86400"),
    ("retry_backoff", "soon", "a number of seconds from 0 to 3600"),
    ("unknown_actions", "reject", "one of accept, refuse"),
    ("kill_grace", "-1", "a number of seconds from 0 to 3600"),
    ("lease", "0.5", "a number of seconds from 1 to 3600"),
    ("keep_completed", "-1", "a number of days from 0 to 36500 (0: keep forever)"),
    ("keep_failed", "36501", "a number of days from 0 to 36500 (0: keep forever)"),
]
BAD_IDS = [f"{name}={value}" for name, value, _ in BAD]


@pytest.mark.parametrize(("name", "value", "allowed"), BAD, ids=BAD_IDS)
def test_a_bad_value_on_the_command_line(capsys: pytest.CaptureFixture[str], name: str,
                                         value: str, allowed: str) -> None:
    assert refusal(capsys, [option(name), value]) == (
        f"taskdesk: invalid value for {option(name)} from the command line: "
        f"{value!r} is not {allowed}")


@pytest.mark.parametrize(("name", "value", "allowed"), BAD, ids=BAD_IDS)
def test_a_bad_value_in_the_environment(capsys: pytest.CaptureFixture[str], name: str,
                                        value: str, allowed: str) -> None:
    assert refusal(capsys, environ={env_name(name): value}) == (
        f"taskdesk: invalid value for {option(name)} from environment variable "
        f"{env_name(name)}: {value!r} is not {allowed}")


@pytest.mark.parametrize(("name", "value", "allowed"), BAD, ids=BAD_IDS)
def test_a_bad_value_in_the_config_file(capsys: pytest.CaptureFixture[str], name: str,
                                        value: str, allowed: str) -> None:
    assert refusal(capsys, config={name: value}) == (
        f"taskdesk: invalid value for {option(name)} from {CONFIG} [settings] {name}: "
        f"{value!r} is not {allowed}")


def test_a_flag_that_is_neither_on_nor_off(capsys: pytest.CaptureFixture[str]) -> None:
    # It used to mean "off" without a word.
    assert refusal(capsys, environ={"TASKDESK_HEADLESS": "maybe"}) == (
        "taskdesk: invalid value for --headless from environment variable TASKDESK_HEADLESS: "
        "'maybe' is not one of 1, true, yes, on, 0, false, no, off")


# TOML values of the wrong type: not silently converted (True is not 1 worker, 2.5 not 2).
@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("workers", True, "an integer from 1 to 64"),
    ("workers", 2.5, "an integer from 1 to 64"),
    ("workers", [2], "an integer from 1 to 64"),
    ("workers", None, "an integer from 1 to 64"),
    ("work_delay", False, "a number of seconds from 0 to 3600"),
    ("headless", 1, "one of 1, true, yes, on, 0, false, no, off"),
    ("token", 1234, "a token"),
    ("synchronous", True, "one of full, normal"),
    ("db", 7, "a file path or a postgresql://user@host:port/dbname URL"),
    ("host", "", "a host name or IP address"),
], ids=["bool-for-int", "float-for-int", "list", "none", "bool-for-seconds", "int-for-flag",
        "int-for-token", "bool-for-choice", "int-for-path", "empty-host"])
def test_a_config_value_of_the_wrong_type(capsys: pytest.CaptureFixture[str], name: str,
                                          value: object, allowed: str) -> None:
    assert refusal(capsys, config={name: value}) == (
        f"taskdesk: invalid value for {option(name)} from {CONFIG} [settings] {name}: "
        f"{value!r} is not {allowed}")


def test_an_unknown_key_in_the_config_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert refusal(capsys, config={"workers": 2, "work-delay": 1}) == (
        f"taskdesk: unknown setting 'work-delay' in {CONFIG} [settings]: the settings are "
        "headless, host, port, db, workers, prefetch, work_delay, task_timeout, max_attempts, "
        "retry_backoff, token, synchronous, log_level, unknown_actions, actions, plugins, "
        "no_plugins, kill_grace, lease, keep_completed, keep_failed")


def test_config_messages_without_a_file_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings([], {}, {"port": "x"})
    assert capsys.readouterr().err == (
        "taskdesk: invalid value for --port from the config file [settings] port: "
        "'x' is not an integer from 0 to 65535\n")


@pytest.mark.parametrize(("argv", "environ", "config", "where"), [
    (["--host", "0.0.0.0"], {}, None, "the command line"),
    ([], {"TASKDESK_HOST": "0.0.0.0"}, None, "environment variable TASKDESK_HOST"),
    ([], {}, {"host": "0.0.0.0"}, f"{CONFIG} [settings] host"),
], ids=["argv", "environ", "config"])
def test_a_host_beyond_loopback_without_a_token(
    capsys: pytest.CaptureFixture[str], argv: list[str], environ: dict[str, str],
    config: dict[str, object] | None, where: str
) -> None:
    assert refusal(capsys, argv, environ, config) == (
        f"taskdesk: invalid value for --host from {where}: '0.0.0.0' would expose the API "
        "beyond this machine; set --token (or TASKDESK_TOKEN) as well")


def test_a_host_beyond_loopback_with_a_token_from_anywhere() -> None:
    assert parse(["--host", "0.0.0.0", "--token", "t"]).token == "t"
    assert parse(environ={"TASKDESK_HOST": "0.0.0.0", "TASKDESK_TOKEN": "t"}).token == "t"
    assert parse(["--host", "0.0.0.0"], config={"token": "t"}).token == "t"
    for host in ("localhost", "127.0.0.2", "::1"):
        assert parse(["--host", host]).loopback


@pytest.mark.parametrize(("argv", "line"), [
    (["--colour"], re.escape("taskdesk: No such option") + r".*--colour.*\(see taskdesk --help\)"),
    (["--port"], r"taskdesk: Option '--port' requires an argument\. \(see taskdesk --help\)"),
    (["run"], r"taskdesk: Got unexpected extra argument \(run\) \(see taskdesk --help\)"),
], ids=["unknown-option", "missing-value", "extra-argument"])
def test_a_malformed_command_line(capsys: pytest.CaptureFixture[str], argv: list[str],
                                  line: str) -> None:
    assert re.fullmatch(line, refusal(capsys, argv))


# -- help and version ------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_option_and_its_variable(capsys: pytest.CaptureFixture[str],
                                                  flag: str) -> None:
    with pytest.raises(SystemExit) as exited:
        parse([flag], {"TASKDESK_PORT": "nonsense"})  # help is not stopped by a bad value
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for s in SETTINGS:
        assert s.option in out and s.envvar in out, s.name


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"taskdesk {VERSION}\n"


# -- the options on another click command ----------------------------------------------------


def test_the_options_serve_a_group_with_the_same_sources_and_refusals(
    capsys: pytest.CaptureFixture[str]
) -> None:
    # The shape `taskdesk` will take: a group that runs the app when given no subcommand.
    @click.group(invoke_without_command=True)
    @setting_options
    @click.pass_context
    def cli(ctx: click.Context, /, **_: object) -> Settings | None:
        return settings_from_context(ctx) if ctx.invoked_subcommand is None else None

    @cli.command()
    def status() -> str:
        return "status"

    assert [p.name for p in cli.params] == [s.name for s in SETTINGS]
    settings = run_cli(cli, ["--port", "1"], {"TASKDESK_WORKERS": "3"}, {"prefetch": 5})
    assert (settings.port, settings.workers, settings.prefetch) == (1, 3, 5)
    assert run_cli(cli, ["status"], {}) == "status"  # a subcommand answers for the group
    with pytest.raises(SystemExit) as exited:
        run_cli(cli, ["status"], {"TASKDESK_SYNCHRONOUS": "off"})
    assert exited.value.code == 2
    assert capsys.readouterr().err == (
        "taskdesk: invalid value for --synchronous from environment variable "
        "TASKDESK_SYNCHRONOUS: 'off' is not one of full, normal\n")


# -- outside this process --------------------------------------------------------------------


def test_settings_import_no_qt() -> None:
    code = ("import sys, service.settings; "
            "print(sorted(m for m in sys.modules if m.startswith('PySide6')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                            text=True, check=True, timeout=60)
    assert result.stdout == "[]\n"


def test_main_refuses_a_bad_environment_variable_in_one_line(tmp_path: Path) -> None:
    db = tmp_path / "tasks.db"
    result = run_taskdesk(["--headless", "--port", "0", "--db", str(db)],
                          env={"TASKDESK_SYNCHRONOUS": "off"})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == [
        "taskdesk: invalid value for --synchronous from environment variable "
        "TASKDESK_SYNCHRONOUS: 'off' is not one of full, normal"]
    assert result.stdout == ""
    assert not db.exists()


def test_the_readme_options_table_lists_every_option() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Options", 1)[1].split("\n\n", 2)[1]
    for s in SETTINGS:
        assert re.search(rf"^\| `{s.option}` \| `{s.envvar}", table, re.M), s.name
