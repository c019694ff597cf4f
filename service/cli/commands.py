"""The ``taskdesk`` subcommands (main.py adds them to the ``taskdesk`` group).

Each talks to a running Taskdesk through its API (connection.py says which) and ends with an
exit code: 0 done, 1 failed (an error, said in one line on stderr, or a task that did not
complete), 2 a command line that makes no sense (as click does), 130 interrupted (Ctrl+C).
``--json`` prints the API's JSON as it came; otherwise a table or a few lines for people.
"""

from __future__ import annotations

import functools
import json
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode, urlsplit

import click

from service.cli.client import Answer, Client, CliError, RefusedError, task_path
from service.cli.connection import connect
from service.cli.output import (
    STATUS_COLOURS,
    Style,
    compact,
    cut,
    local_time,
    outcome,
    table,
    write_json,
    write_lines,
)

if TYPE_CHECKING:
    # Generic in recent click (8.5), which mypy checks against; 8.1 to 8.3 cannot subscript it.
    _ParamType = click.ParamType[Any]
else:
    _ParamType = click.ParamType

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# The statuses GET /tasks filters by (storage/models.py; tests/test_cli.py keeps them equal).
STATUSES = ("queued", "running", "completed", "failed", "cancelled")
# The API's sort values (storage's TaskSort; not imported, to keep the command line light).
SORTS = ("created", "started", "finished", "duration", "attempts", "action", "status",
         "priority")
COMPLETION_TIMEOUT_SECONDS = 2.0

Task = dict[str, Any]


# -- what every command shares -----------------------------------------------------------------


def _check_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise click.BadParameter(f"{value!r} is not an http:// URL (e.g. "
                                 "http://127.0.0.1:8080)")
    return value


def _options(json_output: bool) -> list[click.Parameter]:
    options: list[click.Parameter] = [
        click.Option(["--url"], envvar="TASKDESK_URL", metavar="URL", callback=_check_url,
                     help="The Taskdesk to talk to.  [default: http://127.0.0.1:PORT, PORT "
                     "being --port's (8080); env: TASKDESK_URL]"),
        click.Option(["--token"], metavar="TOKEN",
                     help="The API's token.  [default: the group's --token, TASKDESK_TOKEN, or "
                     "the token file beside the database]"),
    ]
    if json_output:
        options.append(click.Option(["--json", "as_json"], is_flag=True,
                                    help="Print the API's JSON as it comes (for scripts)."))
    return options


def _inherited(ctx: click.Context, name: str, value: Any) -> Any:
    """An option given to ``schedules`` serves its subcommands too (``schedules --url U run
    N``), over what the environment gives; the root group's options are settings, looked at
    by connection.py."""
    typed = click.core.ParameterSource.COMMANDLINE
    if ctx.get_parameter_source(name) is typed:
        return value
    parent = ctx.parent
    while parent is not None and parent.parent is not None:
        if parent.get_parameter_source(name) is typed:
            return parent.params[name]
        parent = parent.parent
    return value


def _quiet_pipes() -> None:
    # `taskdesk list | head -1`: end silently when the reader goes away, as C tools do,
    # rather than with a BrokenPipeError traceback.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")  # a task's text on a terminal that cannot show it


def fail(message: str, code: int = EXIT_FAILED) -> int:
    """Say *message* on stderr, in one line whatever it quotes (an error text may have
    several); *code* is the exit code to return."""
    sys.stdout.flush()
    print("taskdesk: " + " ".join(message.split()), file=sys.stderr, flush=True)
    return code


def _callback(f: Callable[..., int]) -> Callable[..., int]:
    @click.pass_context
    @functools.wraps(f)
    def run(ctx: click.Context, /, url: str | None, token: str | None, **kwargs: Any) -> int:
        _quiet_pipes()
        client = connect(ctx, _inherited(ctx, "url", url), _inherited(ctx, "token", token))
        try:
            return f(client, **kwargs)
        except CliError as exc:
            return fail(str(exc), exc.code)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED
        except (ValueError, KeyError, TypeError) as exc:
            # An answer that is not what Taskdesk's API gives (a proxy's page, another server)
            return fail(f"{client.url} gave an answer this command line does not understand "
                        f"({type(exc).__name__}: {exc})")
        finally:
            client.close()

    return run


def api_command(name: str, *, json_output: bool = True) -> Callable[[Callable[..., int]],
                                                                     click.Command]:
    """A subcommand *name* running the decorated ``f(client, **options)``, which returns the
    exit code; its own click options and arguments go between this and ``f``."""

    def make(f: Callable[..., int]) -> click.Command:
        own = list(reversed(getattr(f, "__click_params__", [])))
        return click.Command(name, callback=_callback(f), params=[*own, *_options(json_output)],
                             help=f.__doc__)

    return make


def _complete(fetch: Callable[[Client, click.Context], list[str]]) -> Callable[
        [click.Context, click.Parameter, str], list[str]]:
    """Shell completion from the running Taskdesk; nothing when it cannot be asked."""

    def complete(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
        try:
            client = connect(ctx, _inherited(ctx, "url", ctx.params.get("url")),
                             _inherited(ctx, "token", ctx.params.get("token")))
            client.timeout = COMPLETION_TIMEOUT_SECONDS
            try:
                return [w for w in fetch(client, ctx) if w.startswith(incomplete)]
            finally:
                client.close()
        except Exception:  # completion must never print a traceback into the shell
            return []

    return complete


def _action_names(client: Client, _ctx: click.Context) -> list[str]:
    return [a["name"] for a in client.get_json("/actions")["actions"]]


def _task_ids(*statuses: str) -> Callable[[Client, click.Context], list[str]]:
    def fetch(client: Client, _ctx: click.Context) -> list[str]:
        ids: list[str] = []
        for status in statuses or (None,):
            query = "?limit=100" + (f"&status={status}" if status else "")
            ids += [t["id"] for t in client.get_json(f"/tasks{query}")["tasks"]]
        return ids

    return fetch


def _schedule_names(client: Client, _ctx: click.Context) -> list[str]:
    return [s["name"] for s in client.get_json("/schedules")["schedules"]]


def _ids_argument(*statuses: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    return click.argument("task_ids", metavar="ID...", nargs=-1, required=True,
                          shell_complete=_complete(_task_ids(*statuses)))


_id_argument = click.argument("task_id", metavar="ID", shell_complete=_complete(_task_ids()))


def _status_text(task: Task) -> str:
    status = str(task.get("status"))
    if status == "running" and task.get("progress") is not None:
        return f"running {task['progress']:.0%}"
    return status


def _ended_line(style: Style, task_id: str, task: Task | None) -> str:
    if task is None:
        return f"{task_id}  {style.status('deleted')}"
    status = str(task["status"])
    text = outcome(task)
    room = (style.width or 120) - len(task_id) - len(status) - 4
    return f"{task_id}  {style.status(status)}" + (f"  {cut(text, room)}" if text else "")


def _verdict(ended: dict[str, Task | None]) -> int:
    """Exit 0 when every task completed; else 1, saying which did not and how they ended."""
    missed = [(task_id, "deleted" if task is None else str(task["status"]))
              for task_id, task in ended.items()
              if task is None or task["status"] != "completed"]
    if not missed:
        return EXIT_OK
    if len(ended) == 1:
        task_id, how = missed[0]
        error = (ended[task_id] or {}).get("error")
        return fail(f"task {task_id} {how}" + (f": {error}" if error else ""))
    listed = ", ".join(f"{task_id} {how}" for task_id, how in missed)
    return fail(f"{len(missed)} of {len(ended)} tasks did not complete: {listed}")


def _reporter(as_json: bool) -> Callable[[str, Task | None], None]:
    style = Style.of(sys.stdout)

    def report(task_id: str, task: Task | None) -> None:
        if as_json:
            body = task if task is not None else {"id": task_id, "status": "deleted"}
            write_json(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
        else:
            write_lines([_ended_line(style, task_id, task)])

    return report


# -- value types of options ----------------------------------------------------------------------

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+)\s*([smhd]?)\s*")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(_ParamType):
    name = "seconds"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        m = _DURATION.fullmatch(str(value))
        if m is None:
            self.fail(f"{value!r} is not a number of seconds (or with a unit: 90s, 5m, 2h, "
                      "1d)", param, ctx)
        return float(m[1]) * _UNITS[m[2]]


class Moment(_ParamType):
    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> float:
        if isinstance(value, int | float):
            return float(value)
        try:
            return float(value)
        except ValueError:
            pass
        from datetime import datetime  # only for this option

        try:
            return datetime.fromisoformat(str(value)).timestamp()  # no offset: local time
        except ValueError:
            self.fail(f"{value!r} is neither Unix seconds nor an ISO 8601 date and time "
                      "(2026-12-01T09:00, local time unless it ends in Z or +01:00)",
                      param, ctx)


# -- the commands ------------------------------------------------------------------------------


@api_command("submit")
@click.argument("action", shell_complete=_complete(_action_names))
@click.argument("words", metavar="[KEY=VALUE]...", nargs=-1)
@click.option("--data", "data_json", metavar="JSON",
              help="The task's data as one JSON object, instead of KEY=VALUE words.")
@click.option("--priority", type=int, help="-100 to 100; higher runs first.  [default: 0]")
@click.option("--delay", type=Duration(), help="Run it no sooner than this: seconds, or 90s, "
              "5m, 2h, 1d.")
@click.option("--run-at", type=Moment(), help="Run it no sooner than this: Unix seconds or an "
              "ISO 8601 date and time (local unless it says otherwise).")
@click.option("--after", metavar="ID", multiple=True,
              help="Run it once this task has completed (repeat for several).")
@click.option("--key", metavar="KEY", help="An Idempotency-Key: submitting again with the same "
              "key gives the first task instead of a new one.")
@click.option("--wait", "wait_", is_flag=True,
              help="Wait until it ends; exit 0 if it completed, 1 otherwise.")
def submit(client: Client, action: str, words: Sequence[str], data_json: str | None,
           priority: int | None, delay: float | None, run_at: float | None,
           after: Sequence[str], key: str | None, wait_: bool, as_json: bool) -> int:
    """Submit a task of ACTION; prints its id.

    Its data: KEY=VALUE words, each value typed by the action's JSON Schema (n=3 an integer
    where the schema says so, flag=true a boolean, tags=a,b a list, anything else a string);
    KEY:=JSON sets any JSON value; or --data JSON, the whole data at once.
    """
    body: dict[str, Any] = {"action": action}
    data = _task_data(client, action, words, data_json)
    if data is not None:
        body["data"] = data
    for name, value in (("priority", priority), ("delay", delay), ("run_at", run_at)):
        if value is not None:
            body[name] = value
    if after:
        body["after"] = list(after)
    answer = client.request("POST", "/tasks", body, {"Idempotency-Key": key} if key else None)
    task_id = str(answer.json()["id"])
    if not wait_:
        if as_json:
            write_json(answer.body)
        else:
            write_lines([task_id])
        return EXIT_OK
    if not as_json:
        write_lines([task_id])
    from service.cli.waiting import wait_for

    return _verdict(wait_for(client, [task_id], _reporter(as_json)))


def _task_data(client: Client, action: str, words: Sequence[str],
               data_json: str | None) -> Any:
    from service.cli.task_data import DataError, build_data

    if data_json is not None:
        if words:
            raise CliError("give the data as KEY=VALUE words or as --data JSON, not both",
                           EXIT_USAGE)
        try:
            data = json.loads(data_json)
        except ValueError as exc:
            raise CliError(f"--data is not JSON ({exc})", EXIT_USAGE) from None
        if not isinstance(data, dict):
            raise CliError("--data must be a JSON object", EXIT_USAGE)
        return data
    if not words:
        return None
    actions = client.get_json("/actions")["actions"]
    schema = next((a.get("schema") for a in actions if a.get("name") == action), None)
    try:
        return build_data(words, schema)
    except DataError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


@api_command("list")
@click.option("--status", type=click.Choice(STATUSES), help="Only tasks with this status.")
@click.option("--action", metavar="ACTION", help="Only tasks of this action.",
              shell_complete=_complete(_action_names))
@click.option("--limit", type=click.IntRange(1, 1000),
              help="At most this many.  [default: 100]")
@click.option("--sort", type=click.Choice(SORTS),
              help="Order by this, as the window's columns.  [default: created]")
@click.option("--order", type=click.Choice(("asc", "desc")), help="  [default: desc]")
def list_tasks(client: Client, status: str | None, action: str | None, limit: int | None,
               sort: str | None, order: str | None, as_json: bool) -> int:
    """List tasks, newest first (or by --sort)."""
    query = urlencode([(k, v) for k, v in (("status", status), ("action", action),
                                           ("limit", limit), ("sort", sort),
                                           ("order", order)) if v is not None])
    answer = client.request("GET", "/tasks" + (f"?{query}" if query else ""))
    if as_json:
        write_json(answer.body)
        return EXIT_OK
    body = answer.json()
    tasks: list[Task] = body["tasks"]
    style = Style.of(sys.stdout)
    if not tasks:
        write_lines([style.dim("no tasks" + (" like that" if status or action else ""))])
        return EXIT_OK
    rows = [[t["id"], (_status_text(t), STATUS_COLOURS.get(t["status"], "")), t["action"],
             local_time(t["created_at"]), f"{t['attempts']}/{t['max_attempts']}", outcome(t)]
            for t in tasks]
    lines = table(style, ["ID", "STATUS", "ACTION", "CREATED", "TRIES", "OUTCOME"], rows)
    if body["total"] > body["count"]:
        lines.append(style.dim(f"{body['count']} of {body['total']:,} tasks; --limit shows "
                               "more (up to 1000)"))
    write_lines(lines)
    return EXIT_OK


@api_command("show")
@_id_argument
def show(client: Client, task_id: str, as_json: bool) -> int:
    """Show one task: its state, times, data, and result or error."""
    answer = client.request("GET", task_path(task_id))
    if as_json:
        write_json(answer.body)
        return EXIT_OK
    task: Task = answer.json()
    style = Style.of(sys.stdout)
    fields: list[tuple[str, str]] = [
        ("id", task["id"]),
        ("action", task["action"]),
        ("status", style.status(task["status"], _status_text(task))
         + (" (asked to stop)" if task.get("cancel_requested") else "")),
        ("attempts", f"{task['attempts']} of {task['max_attempts']}"),
        ("priority", str(task.get("priority", 0))),
        ("created", local_time(task["created_at"], full=True)),
    ]
    if task["status"] == "queued" and (task.get("run_after") or 0) > task["created_at"]:
        fields.append(("due", local_time(task["run_after"], full=True)))
    if task.get("after"):
        fields.append(("after", ", ".join(task["after"])))
    fields += [("started", local_time(task.get("started_at"), full=True)),
               ("finished", local_time(task.get("processed_at"), full=True))]
    if task.get("progress_message") or task.get("progress") is not None:
        fields.append(("progress", outcome({**task, "status": "running"})))
    fields.append(("data", _block(task.get("data"))))
    if task.get("result") is not None:
        fields.append(("result", _block(task["result"])))
    if task.get("error"):
        fields.append(("error", str(task["error"])))
    width = max(len(name) for name, _ in fields) + 2
    lines: list[str] = []
    for name, value in fields:
        first, *rest = value.split("\n") or [""]
        lines.append(style.dim(name.ljust(width)) + first)
        lines += [" " * width + line for line in rest]
    write_lines(lines)
    return EXIT_OK


def _block(value: Any) -> str:
    text = compact(value)
    return text if len(text) <= 72 else json.dumps(value, ensure_ascii=False, indent=2)


@api_command("log", json_output=False)
@_id_argument
@click.option("--follow", "-f", is_flag=True,
              help="Keep printing as the task writes, until it ends; then exit 0 if it "
              "completed, 1 otherwise.")
def log(client: Client, task_id: str, follow: bool) -> int:
    """Print a task's log; -f follows it until the task ends.

    The log is a command's output, or a Python action's ctx.log lines, printed as it is.
    """
    from service.cli.waiting import copy_log, follow_log

    sys.stdout.flush()
    out = sys.stdout.buffer
    if not follow:
        copy_log(client, task_id, 0, out)
        return EXIT_OK
    return _verdict({task_id: follow_log(client, task_id, out)})


def _change_each(client: Client, task_ids: Sequence[str], change: str, as_json: bool,
                 say: Callable[[Style, Answer, Task], str]) -> int:
    style = Style.of(sys.stdout)
    code = EXIT_OK
    for task_id in task_ids:
        try:
            answer = client.request("POST", task_path(task_id, change))
        except RefusedError as exc:  # this one; go on with the others
            code = fail(str(exc))
            continue
        if as_json:
            write_json(answer.body)
        else:
            write_lines([say(style, answer, answer.json())])
    return code


@api_command("cancel")
@_ids_argument("queued", "running")
def cancel(client: Client, task_ids: Sequence[str], as_json: bool) -> int:
    """Cancel tasks; a running one is asked to stop.

    A queued task is cancelled at once; a running one ends cancelled once it has stopped (a
    command gets SIGTERM, then SIGKILL after the kill grace).
    """

    def say(style: Style, answer: Answer, task: Task) -> str:
        if answer.status == 202:
            return f"{task['id']}  {style.status('running', 'stopping')}  (asked to stop)"
        return f"{task['id']}  {style.status(task['status'])}"

    return _change_each(client, task_ids, "cancel", as_json, say)


@api_command("retry")
@_ids_argument("failed", "cancelled")
def retry(client: Client, task_ids: Sequence[str], as_json: bool) -> int:
    """Queue failed or cancelled tasks again, with fresh attempts."""

    def say(style: Style, _answer: Answer, task: Task) -> str:
        return f"{task['id']}  {style.status(task['status'])}"

    return _change_each(client, task_ids, "retry", as_json, say)


@api_command("wait")
@_ids_argument()
def wait(client: Client, task_ids: Sequence[str], as_json: bool) -> int:
    """Wait until tasks end; exit 0 if all completed.

    Prints each task as it ends; exits 1, saying which, when any failed, was cancelled or was
    deleted.
    """
    from service.cli.waiting import wait_for

    return _verdict(wait_for(client, task_ids, _reporter(as_json)))


@api_command("stats")
def stats(client: Client, as_json: bool) -> int:
    """Tasks per status, busy workers and throughput."""
    answer = client.request("GET", "/stats")
    if as_json:
        write_json(answer.body)
        return EXIT_OK
    body = answer.json()
    style = Style.of(sys.stdout)
    counts: dict[str, int] = body["counts"]
    width = max(len(s) for s in [*counts, "throughput"]) + 2
    number = max(len(f"{n:,}") for n in counts.values())
    lines = [style.status(s) + " " * (width - len(s)) + f"{n:,}".rjust(number)
             for s, n in counts.items()]
    workers = body.get("workers") or {}
    throughput = body.get("throughput") or {}
    lines += [
        "",
        "workers".ljust(width) + f"{workers.get('busy', 0)} of {workers.get('total', 0)} busy",
        "throughput".ljust(width) + f"{throughput.get('completed_per_second', 0):g} completed/s, "
        f"{throughput.get('failed_per_second', 0):g} failed/s (last "
        f"{throughput.get('window_seconds', 10):g} s)",
    ]
    if "paused" in body:
        lines.append("queue".ljust(width) + ("paused" if body["paused"] else "running"))
    write_lines(lines)
    return EXIT_OK


@api_command("pause")
def pause(client: Client, as_json: bool) -> int:
    """Pause the queue; running tasks finish.

    No new task starts until `taskdesk resume`; submissions are still accepted.
    """
    return _queue(client, "pause", as_json)


@api_command("resume")
def resume(client: Client, as_json: bool) -> int:
    """Resume the queue after a pause."""
    return _queue(client, "resume", as_json)


def _queue(client: Client, change: str, as_json: bool) -> int:
    answer = client.request("POST", f"/queue/{change}")
    if as_json:
        write_json(answer.body)
    else:
        write_lines(["queue paused" if answer.json().get("paused") else "queue running"])
    return EXIT_OK


# -- schedules ---------------------------------------------------------------------------------


def _list_schedules(client: Client, as_json: bool) -> int:
    answer = client.request("GET", "/schedules")
    if as_json:
        write_json(answer.body)
        return EXIT_OK
    schedules: list[dict[str, Any]] = answer.json()["schedules"]
    style = Style.of(sys.stdout)
    if not schedules:
        write_lines([style.dim("no schedules (they are declared in the actions file)")])
        return EXIT_OK
    rows: list[list[str | tuple[str, str]]] = []
    for s in schedules:
        when = (f"cron {s['cron']}" if s.get("cron")
                else f"every {s['every']:g} s" if s.get("every") else "-")
        last = s.get("last_task") or {}
        last_text = f"{last.get('id')} {last.get('status') or ''}".strip() if last else "-"
        state = ("paused", STATUS_COLOURS["cancelled"]) if s.get("paused") else "active"
        rows.append([s["name"], s["action"], when, state,
                     local_time(s.get("next_due")) if not s.get("paused") else "-", last_text])
    write_lines(table(style, ["NAME", "ACTION", "WHEN", "STATE", "NEXT", "LAST TASK"], rows))
    return EXIT_OK


def _schedules_list(client: Client, as_json: bool) -> int:
    ctx = click.get_current_context()
    if ctx.invoked_subcommand is not None:
        return EXIT_OK  # the subcommand answers
    return _list_schedules(client, as_json)


class OrderedGroup(click.Group):
    """Lists its commands in the order they were added (most used first), not by name."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


schedules = OrderedGroup(
    "schedules", callback=_callback(_schedules_list), params=_options(True),
    invoke_without_command=True, short_help="List schedules, or run, pause, resume one.",
    help="List the schedules of the actions file: when each runs next, its last task. Or "
    "run, pause or resume one by name.")


def _schedule_command(change: str, help_text: str) -> click.Command:
    def change_schedule(client: Client, name: str, as_json: bool) -> int:
        answer = client.request("POST", f"/schedules/{quote(name, safe='')}/{change}")
        if as_json:
            write_json(answer.body)
        elif change == "run":
            write_lines([str(answer.json()["id"])])
        else:
            write_lines([f"schedule {name} {'paused' if change == 'pause' else 'resumed'}"])
        return EXIT_OK

    change_schedule.__doc__ = help_text
    named = click.argument("name", shell_complete=_complete(_schedule_names))(change_schedule)
    return api_command(change)(named)


for _change, _help in (("run", "Submit the schedule's task now; prints its id.\n\nIts next "
                                "times stay as they were."),
                       ("pause", "Pause a schedule: it submits nothing until resumed."),
                       ("resume", "Resume a paused schedule.")):
    schedules.add_command(_schedule_command(_change, _help))


COMMANDS: list[click.Command] = [submit, list_tasks, show, log, wait, cancel, retry, stats,
                                 pause, resume, schedules]
