"""Putting the registry together at start-up: the built-ins, the plugins (a folder and installed
entry points) and the command actions of the actions file, in that order, so that a duplicate
name is reported with the source that came second.

A missing default folder or file is simply not used; one named explicitly (an option, a
variable, the config) that is missing is an error, since its actions would silently be absent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from service.actions.base import ConfigFileError, JsonObject, PluginProblem
from service.actions.builtin import BUILTIN_ACTIONS
from service.actions.config_file import ConfigFile, load_config_file
from service.actions.plugins import load_plugins
from service.actions.reaper import ProcessReaper
from service.actions.registry import ActionRegistry, UnknownActions
from service.paths import default_actions_file, default_plugins_folder

log = logging.getLogger("taskdesk.actions")


@dataclass
class LoadedActions:
    registry: ActionRegistry
    # Plugins left out (they failed to import or declare their actions): /health says so.
    problems: list[PluginProblem] = field(default_factory=list)
    config: ConfigFile | None = None

    @property
    def schedules(self) -> dict[str, JsonObject]:
        return self.config.schedules if self.config is not None else {}

    @property
    def user_actions(self) -> int:
        """Actions beyond the built-ins: with any, the API can start programs."""
        return sum(1 for action in self.registry.actions() if action.kind != "builtin")


def read_config(path: Path, *, default_timeout: float, kill_grace: float,
                reaper: ProcessReaper | None = None) -> ConfigFile | None:
    """The actions file at *path*, or None when it is the default one and does not exist;
    ConfigFileError (one line naming the file) otherwise."""
    if not path.exists() and path == default_actions_file():
        return None
    if not path.is_file():
        raise ConfigFileError(path, None, "no such file (the actions file)")
    return load_config_file(path, default_timeout=default_timeout, kill_grace=kill_grace,
                            reaper=reaper)


def load_actions(
    *,
    unknown: UnknownActions,
    actions_file: Path,
    plugins: Path | None,
    entry_points: bool,
    task_timeout: float,
    kill_grace: float,
    reaper: ProcessReaper | None,
) -> LoadedActions:
    """The registry of this run. Raises ConfigFileError for a bad actions file (or a missing
    one that was named), DuplicateActionError for a name declared twice, NotADirectoryError
    for a plugins folder that was named and is not there."""
    registry = ActionRegistry(unknown)
    for action in BUILTIN_ACTIONS:
        registry.register(action)
    folder = plugins
    if folder is not None and not folder.is_dir():
        if folder != default_plugins_folder() or folder.exists():
            raise NotADirectoryError(f"plugins folder {folder} is not a folder")
        folder = None
    problems = load_plugins(registry, folder, entry_points=entry_points)
    config = read_config(actions_file, default_timeout=task_timeout, kill_grace=kill_grace,
                         reaper=reaper)
    if config is not None:
        for action in config.actions:
            registry.register(action)
    loaded = LoadedActions(registry, problems, config)
    if loaded.user_actions:
        log.info("%d action(s) of your own: %s", loaded.user_actions,
                 ", ".join(a.name for a in registry.actions() if a.kind != "builtin"))
    return loaded
