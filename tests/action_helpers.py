"""Actions for tests, from one-argument handlers as the tests write them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from service.actions import Action, RunContext


def python_action(
    name: str,
    handler: Callable[[dict[str, Any]], Any],
    check: Callable[[dict[str, Any]], None] | None = None,
    description: str = "a test action",
) -> Action:
    """An action of kind "python" that runs ``handler(data)`` (the context is not used) and
    accepts any data object, then *check* (when given)."""

    def run(data: dict[str, Any], ctx: RunContext) -> Any:
        return handler(data)

    return Action(name=name, description=description, schema={"type": "object"},
                  kind="python", run=run, source="test", check=check)
