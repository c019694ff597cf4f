"""Writing Taskdesk actions in Python: the plugin contract, and a decorator for it.

A plugin is a Python file in Taskdesk's plugins folder (``--plugins DIR``; by default
``plugins`` in the user's configuration folder), or an entry point of group
``taskdesk.actions`` of an installed distribution. It needs nothing from Taskdesk: it defines
a module-level list ``TASKDESK_ACTIONS`` of dicts, one per action::

    TASKDESK_ACTIONS = [
        {
            "name": "count-words",                    # unique among all actions
            "description": "Count the words of a text",
            "schema": {                               # JSON Schema (draft 2020-12) of data
                "type": "object",
                "required": ["text"],
                "properties": {"text": {"type": "string", "title": "Text"}},
            },
            "run": count_words,                       # run(data, ctx) -> the JSON result
            # "timeout": 60.0,                        # optional, seconds
        },
    ]

``data`` has been validated against the schema before ``run`` is called; ``run`` returns any
JSON value (stored as the task's result) or raises (the attempt fails with the error, and is
retried while attempts remain). ``ctx`` gives:

- ``ctx.task_id`` (str) and ``ctx.attempt`` (int, from 1);
- ``ctx.progress(fraction, message=None)``: how far it is, 0 to 1 (None: unknown);
- ``ctx.log(text)``: a line (str, or bytes kept as they are) for the task's log;
- ``ctx.cancelled``: a ``threading.Event`` set when the task is to stop (cancelled, timed out,
  Taskdesk shutting down): poll ``ctx.cancelled.is_set()`` or wait on it
  (``ctx.cancelled.wait(seconds)`` instead of ``time.sleep``), then return or raise.

An entry point may name such a list or the module holding it (``[project.entry-points.
"taskdesk.actions"] mine = "my_package.actions"``). A plugin that fails to import, or an entry
that is wrong, is left out with one line in the log, and /health names it.

The same with the decorator of this module, which appends the dict to the calling module's
``TASKDESK_ACTIONS`` (``name`` defaults to the function's name, ``description`` to the first
line of its docstring)::

    import taskdesk

    @taskdesk.action(name="count-words", schema={...})
    def count_words(data, ctx):
        "Count the words of a text"
        return {"words": len(data["text"].split())}

This module imports nothing of Taskdesk's other packages, so that a plugin importing it pulls
in nothing else.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["action"]

Run = TypeVar("Run", bound=Callable[..., Any])


def action(
    *,
    name: str | None = None,
    description: str | None = None,
    schema: dict[str, Any] | None = None,
    timeout: float | None = None,
) -> Callable[[Run], Run]:
    """Declare the decorated ``run(data, ctx)`` as an action of the module defining it."""

    def declare(run: Run) -> Run:
        entry: dict[str, Any] = {
            "name": name if name is not None else run.__name__,
            "description": description if description is not None else _first_line(run),
            "schema": schema if schema is not None else {"type": "object"},
            "run": run,
        }
        if timeout is not None:
            entry["timeout"] = timeout
        module_globals = getattr(run, "__globals__", None)
        if not isinstance(module_globals, dict):
            # A callable object rather than a function: the module that applies the decorator.
            frame = inspect.currentframe()
            caller = frame.f_back if frame is not None else None
            if caller is None:
                raise RuntimeError("taskdesk.action cannot tell which module declares the action")
            module_globals = caller.f_globals
        module_globals.setdefault("TASKDESK_ACTIONS", []).append(entry)
        return run

    return declare


def _first_line(run: Callable[..., Any]) -> str:
    doc = inspect.getdoc(run) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""
