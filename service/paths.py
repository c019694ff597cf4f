"""Where Taskdesk keeps things by default, per user (platformdirs' conventions). A module of
its own because the command line, which must start quickly, needs these and nothing else."""

from __future__ import annotations

from pathlib import Path

import platformdirs

APP = "taskdesk"


def config_folder() -> Path:
    return platformdirs.user_config_path(APP, appauthor=False)


def default_db_path() -> Path:
    return platformdirs.user_data_path(APP, appauthor=False) / "tasks.db"


def default_actions_file() -> Path:
    """``actions.toml`` in the user's configuration folder (used if it exists)."""
    return config_folder() / "actions.toml"


def default_plugins_folder() -> Path:
    """``plugins`` in the user's configuration folder (used if it exists)."""
    return config_folder() / "plugins"


def run_folder(db: object) -> Path:
    """Where this instance keeps what it must find again after being killed (the process
    groups of running commands): beside a SQLite file, or for a database URL in the user's
    state folder."""
    text = str(db)
    if "://" in text:
        return platformdirs.user_state_path(APP, appauthor=False) / "run"
    path = Path(text)
    return path.with_name(path.name + ".run")
