"""Actions: what a task's ``action`` does with its ``data``.

Every action has a name, a description, a JSON Schema for its data and a way to run. The
built-ins (``builtin``), Python plugins (``plugins``) and commands declared in the actions file
(``config_file``, run by ``command``) are all entries of one ``ActionRegistry``. Nothing here
touches Qt or storage.
"""

from service.actions.base import (
    Action,
    ActionCancelled,
    ActionKind,
    ConfigFileError,
    DuplicateActionError,
    InvalidActionError,
    JsonObject,
    PluginProblem,
    RunContext,
    SimpleContext,
)
from service.actions.builtin import BUILTIN_ACTIONS, DEFAULT_ACTION
from service.actions.command import CommandFailed, CommandSpec, run_command
from service.actions.config_file import ConfigFile, load_config_file
from service.actions.placeholders import PlaceholderError
from service.actions.plugins import load_plugins
from service.actions.reaper import ProcessReaper
from service.actions.registry import ActionRegistry, UnknownActions
from service.paths import default_actions_file, default_plugins_folder


def default_registry(unknown: UnknownActions = "accept") -> ActionRegistry:
    """A registry holding the built-in actions (the original tutorial's)."""
    registry = ActionRegistry(unknown)
    for action in BUILTIN_ACTIONS:
        registry.register(action)
    return registry


__all__ = [
    "BUILTIN_ACTIONS",
    "DEFAULT_ACTION",
    "Action",
    "ActionCancelled",
    "ActionKind",
    "ActionRegistry",
    "CommandFailed",
    "CommandSpec",
    "ConfigFile",
    "ConfigFileError",
    "DuplicateActionError",
    "InvalidActionError",
    "JsonObject",
    "PlaceholderError",
    "PluginProblem",
    "ProcessReaper",
    "RunContext",
    "SimpleContext",
    "UnknownActions",
    "default_actions_file",
    "default_plugins_folder",
    "default_registry",
    "load_config_file",
    "load_plugins",
    "run_command",
]
