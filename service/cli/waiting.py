"""Waiting until tasks end (``wait``, ``submit --wait``) and following a log (``log --follow``).

Both open the event stream (events.py) before they first read the tasks, then re-read a task
only when an event says it ended, was deleted, or that anything may have changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO, Any

from service.cli.client import Client, task_path
from service.cli.events import DELETED, TaskWatch

COMPLETED = "completed"
FINISHED = frozenset({COMPLETED, "failed", "cancelled"})
_ENDINGS = FINISHED | {DELETED}
# How often a followed log is read while no event comes: a command's output shows this late.
LOG_POLL_SECONDS = 0.25

Task = dict[str, Any]  # a task as the API gives it
# Told about each task as it ends: its id, and the task as last read (None: it was deleted).
Report = Callable[[str, Task | None], None]


def read_task(client: Client, task_id: str, *, gone_ok: bool = False) -> Task | None:
    """The task as the API gives it; None if *gone_ok* and it no longer exists (CliError
    otherwise, naming it)."""
    path = task_path(task_id)
    answer = client.send("GET", path)
    if answer.status == 404 and gone_ok and not answer.route_missing:
        return None
    if answer.status >= 400:
        raise client.refusal(answer, "GET", path)
    task: Task = answer.json()
    return task


def wait_for(client: Client, ids: Sequence[str], report: Report) -> dict[str, Task | None]:
    """Wait until every task of *ids* has ended (completed, failed or cancelled, or deleted
    meanwhile), reporting each as it does; the tasks as they ended, by id in the order of
    *ids*. An id that names no task is a CliError before any waiting."""
    order = list(dict.fromkeys(ids))
    ended: dict[str, Task | None] = {}

    def end(task_id: str, task: Task | None) -> None:
        ended[task_id] = task
        report(task_id, task)

    with TaskWatch(client, set(order)) as watch:
        pending: list[str] = []
        for task_id in order:
            task = read_task(client, task_id)
            if task is not None and task["status"] in FINISHED:
                end(task_id, task)
            else:
                pending.append(task_id)
        while pending:
            changes = watch.next_change(None)
            if changes is None:
                continue
            for task_id in list(pending):
                if changes.everything or changes.statuses.get(task_id) in _ENDINGS:
                    # The event may be older than another change (the API's advice): what
                    # counts is the task as it is now.
                    task = read_task(client, task_id, gone_ok=True)
                    if task is None or task["status"] in FINISHED:
                        pending.remove(task_id)
                        end(task_id, task)
    return {task_id: ended[task_id] for task_id in order}


def copy_log(client: Client, task_id: str, offset: int, out: IO[bytes]) -> int:
    """Write the task's log from byte *offset* to *out*, as it is; where the next read starts."""
    while True:
        answer = client.request("GET", f"{task_path(task_id, 'log')}?offset={offset}")
        following = int(answer.headers.get("x-next-offset", offset + len(answer.body)))
        if not answer.body:
            return following
        out.write(answer.body)
        out.flush()
        offset = following


def follow_log(client: Client, task_id: str, out: IO[bytes]) -> Task | None:
    """Write the task's log to *out* until the task has ended; the task as it ended (None:
    deleted meanwhile)."""
    with TaskWatch(client, {task_id}) as watch:
        task = read_task(client, task_id)
        offset = 0
        while True:
            offset = copy_log(client, task_id, offset, out)
            if task is None or task["status"] in FINISHED:
                return task  # its last output was written before it ended: copied above
            changes = watch.next_change(LOG_POLL_SECONDS)
            if changes is not None and (
                    changes.everything or changes.statuses.get(task_id) in _ENDINGS):
                task = read_task(client, task_id, gone_ok=True)
                if task is None:
                    return None
