"""Taskdesk's settings: one table of options, every value checked alike wherever it comes from.

A setting ``work_delay`` is ``--work-delay`` on the command line, ``TASKDESK_WORK_DELAY`` in
the environment and ``work_delay`` in a config file's ``[settings]`` table; the command line
wins over the environment, the environment over the file, the file over the default. Every
value from every source goes through the same click type (so a bad ``TASKDESK_SYNCHRONOUS``
is refused like a bad ``--synchronous``, which argparse's defaults never were), and a value
that is not allowed ends the start with one line naming the option, where the value came
from and what is allowed, and exit code 2.

Adding a setting: a field in ``Settings`` and one line in ``SETTINGS``. The options can be
attached to any click command or group (``click_options()``, ``setting_options``), and
``run_cli`` runs such a command with the environment and a config file beneath its command
line, so a later ``taskdesk`` group with subcommands gets the same sources and messages.
No Qt here: this runs before anything else is loaded.
"""

from __future__ import annotations

import ipaddress
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, TypeVar

import click

from service.paths import default_actions_file, default_db_path, default_plugins_folder
from service.version import VERSION

if TYPE_CHECKING:
    # Generic in recent click (8.5), which mypy checks against; 8.1 to 8.3 cannot subscript it.
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType

PROG = "taskdesk"
# What argparse and click use for a command line they refuse.
EXIT_USAGE = 2
ENV_PREFIX = "TASKDESK_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


@dataclass(frozen=True)
class Settings:
    headless: bool
    host: str
    port: int
    db: Path | str  # a SQLite file, or a postgresql:// URL (str)
    workers: int
    prefetch: int
    work_delay: float
    task_timeout: float
    max_attempts: int
    retry_backoff: float
    token: str | None
    synchronous: str
    log_level: str
    unknown_actions: str
    actions: Path
    plugins: Path
    no_plugins: bool
    kill_grace: float
    lease: float
    keep_completed: float
    keep_failed: float

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def db_location(self) -> str:
        """The database as logs and messages show it (a URL without its password)."""
        from storage import describe_location

        return describe_location(self.db)


def is_postgres_url(value: object) -> bool:
    """What storage calls a database URL. The storage package is loaded only for text that
    could be one, since the command line reads these settings too and must start quickly."""
    if not isinstance(value, str) or "://" not in value:
        return False
    from storage import is_postgres_url as is_url

    return is_url(value)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- kinds of value ------------------------------------------------------------------------


class Kind(_ParamType):
    """A click type for one kind of setting, saying in its refusals what is allowed.

    It takes text (the command line, the environment) and the scalars a TOML file holds, but
    only those that mean the same as text would: a TOML ``true`` is not a worker count, and
    ``2.5`` is not silently the integer 2. Conversion and bounds are click's own types.
    """

    def __init__(self, base: _ParamType, allowed: str, metavar: str,
                 accepts: tuple[type, ...] = (str,), empty_ok: bool = False) -> None:
        self.base = base
        self.name = base.name
        self.allowed = allowed
        self.metavar = metavar
        self.accepts = accepts
        self.empty_ok = empty_ok

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        # bool is an int to isinstance; only a flag takes one.
        wrong_type = not isinstance(value, self.accepts) or (
            isinstance(value, bool) and bool not in self.accepts)
        if wrong_type or (value == "" and not self.empty_ok):
            self.refuse(value, param, ctx)
        try:
            converted = self.base.convert(value, param, ctx)
        except (click.BadParameter, ValueError, TypeError):
            self.refuse(value, param, ctx)
        if isinstance(converted, float) and math.isnan(converted):  # passes every bound check
            self.refuse(value, param, ctx)
        return converted

    def refuse(self, value: object, param: click.Parameter | None,
               ctx: click.Context | None) -> NoReturn:
        self.fail(f"{value!r} is not {self.allowed}", param, ctx)


class FlagKind(Kind, click.types.BoolParamType):
    """A Kind click treats as an on/off flag (it looks for a BoolParamType)."""


def integer(low: int, high: int) -> Kind:
    return Kind(click.IntRange(low, high), f"an integer from {low} to {high}", "INTEGER",
                accepts=(str, int))


def seconds(low: float, high: float) -> Kind:
    return Kind(click.FloatRange(low, high), f"a number of seconds from {low:g} to {high:g}",
                "SECONDS", accepts=(str, int, float))


def days(low: float, high: float, zero: str) -> Kind:
    return Kind(click.FloatRange(low, high),
                f"a number of days from {low:g} to {high:g} ({zero})", "DAYS",
                accepts=(str, int, float))


def choice(*choices: str, any_case: bool = False) -> Kind:
    allowed = "one of " + ", ".join(choices) + (" (in any case)" if any_case else "")
    # For any_case click answers with the choice as written here, so the value is canonical.
    return Kind(click.Choice(choices, case_sensitive=not any_case), allowed,
                "[" + "|".join(choices) + "]")


def text(allowed: str, metavar: str = "TEXT", empty_ok: bool = False) -> Kind:
    return Kind(click.STRING, allowed, metavar, empty_ok=empty_ok)


FLAG = FlagKind(click.BOOL, "one of 1, true, yes, on, 0, false, no, off", "",
                accepts=(str, bool))
# Not readable=True (click's default): a file we may not read is the database's to report.
FILE = Kind(click.Path(path_type=Path, readable=False), "a file path", "FILE",
            accepts=(str, os.PathLike))


class DatabaseKind(Kind):
    """A SQLite file path (as FILE), or a PostgreSQL URL kept as text. A refused URL is
    shown without its password."""

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Any:
        if isinstance(value, str) and is_postgres_url(value):
            from urllib.parse import urlsplit

            try:
                parts = urlsplit(value)
                ok = bool(parts.hostname or parts.path.strip("/")) and (parts.port or 1) > 0
            except ValueError:
                ok = False
            if not ok:
                from storage import describe_location

                self.refuse(describe_location(value), param, ctx)
            return value
        return super().convert(value, param, ctx)


DATABASE = DatabaseKind(click.Path(path_type=Path, readable=False),
                        "a file path or a postgresql://user@host:port/dbname URL",
                        "FILE|URL", accepts=(str, os.PathLike))


# -- the options -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One option, by the name of its ``Settings`` field."""

    name: str
    kind: Kind
    # A value or, for one that depends on the machine, a callable that makes it.
    default: object
    help: str
    # What --help says the default is, where the value itself would not say it well.
    default_text: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def envvar(self) -> str:
        return ENV_PREFIX + self.name.upper()

    def click_decls(self) -> list[str]:
        return [self.option, self.name]

    def click_attrs(self) -> dict[str, Any]:
        shown = self.default_text or (
            "off" if self.kind is FLAG
            else f"{self.default:g}" if isinstance(self.default, float) else str(self.default))
        attrs: dict[str, Any] = {
            "type": self.kind,
            "default": self.default,
            "help": f"{self.help}  [default: {shown}; env: {self.envvar}]",
        }
        if self.kind is FLAG:
            attrs["is_flag"] = True
        else:
            attrs["metavar"] = self.kind.metavar
        return attrs


SETTINGS: tuple[Setting, ...] = (
    Setting("headless", FLAG, False, "run the API and workers without a window"),
    Setting("host", text("a host name or IP address", "HOST"), "127.0.0.1",
            "address the API listens on; anything beyond loopback requires --token"),
    Setting("port", integer(0, 65535), 8080, "API port; 0 picks a free one"),
    Setting("db", DATABASE, default_db_path,
            "SQLite database file, or postgresql://user@host:port/dbname to share one "
            "PostgreSQL database with other Taskdesk instances",
            default_text=str(default_db_path())),
    Setting("workers", integer(1, 64), 2, "worker threads"),
    Setting("prefetch", integer(1, 10000), 64, "task ids held in memory ahead of the workers"),
    Setting("work_delay", seconds(0, 3600), 0.1,
            "seconds of simulated work per task, as in the tutorial"),
    Setting("task_timeout", seconds(0.1, 86400), 300.0,
            "seconds an action may run before its attempt is ended as failed and its worker "
            "replaced"),
    Setting("max_attempts", integer(1, 100), 3, "attempts before a task is failed for good"),
    Setting("retry_backoff", seconds(0, 3600), 1.0,
            "seconds before the first retry, doubling each time"),
    Setting("token", text("a token", "TOKEN", empty_ok=True), None,
            "require 'Authorization: Bearer TOKEN' on every API request", default_text="none"),
    Setting("synchronous", choice("full", "normal"), "full",
            "full: an accepted task survives a power cut; normal: faster, survives a crash of "
            "Taskdesk but maybe not of the machine"),
    Setting("log_level", choice(*LOG_LEVELS, any_case=True), "INFO",
            "log verbosity; task data is logged only at DEBUG"),
    Setting("unknown_actions", choice("accept", "refuse"), "accept",
            "accept: an action nobody declared runs the default action (the tutorial's "
            "'processed'); refuse: it is a 400 naming the known actions"),
    Setting("actions", FILE, default_actions_file,
            "the actions file: commands, schedules and settings (used if it exists)",
            default_text=str(default_actions_file())),
    Setting("plugins", FILE, default_plugins_folder,
            "folder of Python plugin files, *.py (used if it exists)",
            default_text=str(default_plugins_folder())),
    Setting("no_plugins", FLAG, False,
            "load no plugins: neither the folder nor installed distributions' entry points"),
    Setting("kill_grace", seconds(0, 3600), 5.0,
            "seconds a stopped command gets between SIGTERM and SIGKILL, and a Python action "
            "between being cancelled and being given up on"),
    Setting("lease", seconds(1, 3600), 30.0,
            "PostgreSQL only: seconds without a heartbeat after which this instance counts "
            "as dead and its running tasks go to other instances (it beats every lease/3)"),
    Setting("keep_completed", days(0, 36500, "0: keep forever"), 30.0,
            "days a completed task is kept (with its log and idempotency key), then deleted "
            "in the background; 0 keeps them forever"),
    Setting("keep_failed", days(0, 36500, "0: keep forever"), 90.0,
            "days a failed or cancelled task is kept, then deleted in the background; 0 keeps "
            "them forever"),
)
_BY_NAME = {s.name: s for s in SETTINGS}

F = TypeVar("F", bound=Callable[..., Any])


def click_options() -> list[click.Option]:
    """New click options for every setting, in table order, for a command or group."""
    return [click.Option(s.click_decls(), **s.click_attrs()) for s in SETTINGS]


def setting_options(f: F) -> F:
    """The decorator form of ``click_options()``, for ``@click.command``/``@click.group``."""
    for s in reversed(SETTINGS):  # click lists a function's options top decorator first
        f = click.option(*s.click_decls(), **s.click_attrs())(f)
    return f


def _show_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"{PROG} {VERSION}")
        ctx.exit()


def version_option() -> click.Option:
    return click.Option(["--version"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_show_version, help="Show the version and exit.")


def _desktop_entry(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from service import desktop_entry  # only when asked

    try:
        if param.name == "install_desktop_entry":
            for path in desktop_entry.install():
                click.echo(f"wrote {path}")
        else:
            removed = desktop_entry.uninstall()
            for path in removed:
                click.echo(f"removed {path}")
            if not removed:
                click.echo("no desktop entry to remove")
    except desktop_entry.DesktopEntryError as exc:
        click.echo(f"{PROG}: {exc}", err=True)
        ctx.exit(1)
    ctx.exit()


def desktop_entry_options() -> list[click.Option]:
    """--install-desktop-entry and --uninstall-desktop-entry: done at once, then exit (like
    --version), whatever the other options say."""
    return [
        click.Option(["--install-desktop-entry"], is_flag=True, expose_value=False,
                     is_eager=True, callback=_desktop_entry,
                     help="Add Taskdesk to this user's application menu (a .desktop file and "
                     "its icon under $XDG_DATA_HOME) and exit."),
        click.Option(["--uninstall-desktop-entry"], is_flag=True, expose_value=False,
                     is_eager=True, callback=_desktop_entry,
                     help="Remove what --install-desktop-entry wrote and exit."),
    ]


CONTEXT_SETTINGS: dict[str, Any] = {"help_option_names": ["-h", "--help"]}
HELP = ("Taskdesk: a desktop task queue with an embedded REST API. Every option can also be "
        f"set with an environment variable {ENV_PREFIX}<NAME> (e.g. {ENV_PREFIX}PORT=9000); the "
        "command line wins over it.")


def settings_from_context(ctx: click.Context) -> Settings:
    """The Settings of a command that has the options; refuses an exposed API without token."""
    values = {s.name: ctx.params[s.name] for s in SETTINGS}
    if not is_postgres_url(values["db"]):
        values["db"] = Path(values["db"]).expanduser()
    values["actions"] = Path(values["actions"]).expanduser()
    values["plugins"] = Path(values["plugins"]).expanduser()
    values["token"] = values["token"] or None
    settings = Settings(**values)
    if not settings.loopback and settings.token is None:
        host = next(p for p in ctx.command.params if p.name == "host")
        raise click.BadParameter(
            f"{settings.host!r} would expose the API beyond this machine; set --token "
            f"(or {_BY_NAME['token'].envvar}) as well", ctx=ctx, param=host)
    return settings


# -- sources and refusals --------------------------------------------------------------------


class _Layered(NamedTuple):
    name: str
    value: object
    source: str  # "environment variable TASKDESK_PORT", "/path/x.toml [settings] port"


def _layers(environ: Mapping[str, str], config: Mapping[str, object] | None,
            config_source: str | None) -> list[_Layered]:
    """Every value beneath the command line, the file's first, then the environment's."""
    layers: list[_Layered] = []
    where = f"{config_source or 'the config file'} [settings]"
    for key, value in (config or {}).items():
        if key not in _BY_NAME:
            _refuse(f"unknown setting {key!r} in {where}: the settings are "
                    + ", ".join(_BY_NAME))
        layers.append(_Layered(key, value, f"{where} {key}"))
    for s in SETTINGS:
        raw = environ.get(s.envvar)
        if raw:  # empty means unset, as with click's own envvar
            layers.append(_Layered(s.name, raw, f"environment variable {s.envvar}"))
    return layers


def _check_overridden(layers: Sequence[_Layered]) -> None:
    """Refuse a bad value even where a source above overrides it: a typo in a file would
    otherwise surface only on the day the override is dropped. (Values in use are checked by
    click already, with the same types.)"""
    for layer in layers:
        setting = _BY_NAME[layer.name]
        try:
            setting.kind.convert(layer.value, None, None)
        except click.BadParameter as exc:
            _refuse(_invalid(setting.option, layer.source, exc.message))


def _refuse(message: str) -> NoReturn:
    print(f"{PROG}: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _invalid(option: str, where: str, message: str) -> str:
    return f"invalid value for {option} from {where}: {message}"


def _explain(exc: click.ClickException, used: Mapping[str, _Layered]) -> str:
    if isinstance(exc, click.BadParameter) and exc.param is not None and exc.ctx is not None:
        name = exc.param.name or ""
        source = exc.ctx.get_parameter_source(name)
        if source is click.core.ParameterSource.COMMANDLINE:
            where = "the command line"
        elif source is click.core.ParameterSource.DEFAULT_MAP and name in used:
            where = used[name].source
        else:
            where = "its default"
        option = exc.param.opts[0] if exc.param.opts else name
        return _invalid(option, where, exc.message)
    ctx = getattr(exc, "ctx", None)  # a usage error's: the (sub)command whose help to see
    return f"{exc.format_message()} (see {ctx.command_path if ctx else PROG} --help)"


def run_cli(
    command: click.Command,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, object] | None = None,
    config_source: str | None = None,
) -> Any:
    """Run *command* (one with the setting options) and return what its callback returns.

    The environment (os.environ by default) and *config*, the ``[settings]`` table of the
    file named *config_source*, lie beneath the command line through click's default_map,
    so click converts and checks their values as it does the command line's. ``--help`` and
    ``--version`` exit 0; anything refused is one line on stderr and exit code 2.
    """
    layers = _layers(os.environ if environ is None else environ, config, config_source)
    used = {layer.name: layer for layer in layers}  # the environment's over the file's
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with command.make_context(
            PROG, args, default_map={name: layer.value for name, layer in used.items()}
        ) as ctx:
            _check_overridden(layers)  # here, so that --help and --version come first
            return command.invoke(ctx)
    except click.exceptions.Exit as exc:  # --help or --version, done
        raise SystemExit(exc.exit_code) from None
    except click.ClickException as exc:
        _refuse(" ".join(_explain(exc, used).splitlines()))


def environment_defaults(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """The values the environment (os.environ by default) gives the settings, as click's
    default_map: for click's shell completion, which parses the command line without
    ``run_cli``. Unchecked here: click checks them as it converts them."""
    layers = _layers(os.environ if environ is None else environ, None, None)
    return {layer.name: layer.value for layer in layers}


def parse_settings(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    config: Mapping[str, object] | None = None,
    config_source: str | None = None,
) -> Settings:
    """Settings from the command line (sys.argv by default), the environment and a config
    file's [settings] table; exits 2 with one line on stderr if a value is not allowed."""

    @click.pass_context
    def settings(ctx: click.Context, /, **_: object) -> Settings:
        return settings_from_context(ctx)

    command = click.Command(PROG, params=[*click_options(), version_option(),
                                          *desktop_entry_options()],
                            callback=settings, help=HELP, context_settings=CONTEXT_SETTINGS)
    result = run_cli(command, argv, environ, config, config_source)
    assert isinstance(result, Settings)
    return result
