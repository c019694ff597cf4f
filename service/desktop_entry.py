"""Taskdesk in the desktop's application menu, for the current user (freedesktop.org).

``taskdesk --install-desktop-entry`` writes ``taskdesk.desktop`` (Desktop Entry Specification,
version 1.4) to ``$XDG_DATA_HOME/applications`` and the icon to
``$XDG_DATA_HOME/icons/hicolor/scalable/apps/taskdesk.svg`` (Icon Theme Specification), where
menus, launchers and docks look for them; ``--uninstall-desktop-entry`` removes both.
``XDG_DATA_HOME`` defaults to ``~/.local/share`` (XDG Base Directory Specification, which also
says to ignore a relative path there).

The entry's Exec is the absolute path of the installed ``taskdesk`` command (the one running,
or the one beside this Python, e.g. a virtual environment's bin), so the menu starts the same
Taskdesk whatever PATH the desktop session has. Its name matches the window's desktop file
name (main.py), by which Wayland compositors match the window to the entry.

No Qt: this runs before anything else is loaded, from service/settings.py.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import resources

APP_ID = "taskdesk"
COMMAND = "taskdesk"
ICON_SOURCE = Path(resources.__file__).with_name("taskdesk.svg")

# The Exec key's reserved characters: an argument holding one must be quoted (spec, "The Exec
# key").
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


class DesktopEntryError(Exception):
    """The entry cannot be written or removed; the message says why."""


def data_home(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    value = env.get("XDG_DATA_HOME", "")
    if value and Path(value).is_absolute():
        return Path(value)
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share"


def entry_path(home: Path) -> Path:
    return home / "applications" / f"{APP_ID}.desktop"


def icon_path(home: Path) -> Path:
    return home / "icons" / "hicolor" / "scalable" / "apps" / f"{APP_ID}.svg"


def _runnable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def taskdesk_command(argv0: str | None = None, executable: str | None = None) -> Path:
    """The absolute path of the installed ``taskdesk`` command: the one running (sys.argv[0]),
    else the one beside this Python (a virtual environment's bin), else the one on PATH."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    candidates: list[Path] = []
    if Path(argv0).name in (COMMAND, f"{COMMAND}.exe"):
        found = shutil.which(argv0) if os.sep not in argv0 else argv0
        if found:
            candidates.append(Path(found))
    if executable:
        # Not resolved: a venv's python is a link to the system one, and its bin is the venv's.
        candidates.append(Path(executable).parent / COMMAND)
    on_path = shutil.which(COMMAND)
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if _runnable(candidate):
            return candidate.absolute()
    raise DesktopEntryError(
        f"cannot find the installed {COMMAND} command (not {argv0!r}, nor beside "
        f"{executable}, nor on PATH); install Taskdesk first (pip install .) and run "
        f"{COMMAND} --install-desktop-entry")


def exec_argument(argument: str) -> str:
    """One argument of an Exec value as written in the file: quoted when it holds a reserved
    character (with ", `, $ and \\ escaped inside the quotes), % doubled, and then, as every
    string value, backslashes escaped once more."""
    text = argument.replace("%", "%%")
    if any(ch in _RESERVED for ch in text):
        text = '"' + re.sub(r'(["`$\\])', r"\\\1", text) + '"'
    return _string_value(text)


def _string_value(text: str) -> str:
    """A string value of a desktop entry (the spec's escapes for \\, newline, tab, CR)."""
    return (text.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t")
            .replace("\r", "\\r"))


def entry_text(command: Path) -> str:
    return "\n".join([
        "[Desktop Entry]",
        "Type=Application",
        "Version=1.4",  # what desktop-file-validate 0.26 (Debian 12) knows; nothing newer used
        "Name=Taskdesk",
        "GenericName=Task Queue",
        "Comment=A desktop task queue with a REST API and workers",
        f"Exec={exec_argument(str(command))}",
        f"TryExec={_string_value(str(command))}",
        f"Icon={APP_ID}",
        "Terminal=false",
        "Categories=Development;",  # one main category: listed once in menus
        "Keywords=tasks;queue;jobs;workers;API;",
        "StartupNotify=true",
        # X11: the window's WM_CLASS class is the application name (main.py sets it).
        "StartupWMClass=Taskdesk",
        "",
    ])


def install(environ: Mapping[str, str] | None = None, argv0: str | None = None,
            executable: str | None = None) -> list[Path]:
    """Write the entry and the icon; return their paths."""
    command = taskdesk_command(argv0, executable)
    home = data_home(environ)
    entry, icon = entry_path(home), icon_path(home)
    try:
        icon.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ICON_SOURCE, icon)
        entry.parent.mkdir(parents=True, exist_ok=True)
        temporary = entry.with_suffix(".desktop.tmp")
        temporary.write_text(entry_text(command), encoding="utf-8")
        temporary.replace(entry)  # menus watch the folder: never let them read half a file
        # GTK trusts an icon cache only while it is newer than the theme's folder.
        os.utime(home / "icons" / "hicolor")
    except OSError as exc:
        raise DesktopEntryError(f"cannot write the desktop entry: {exc}") from exc
    return [entry, icon]


def uninstall(environ: Mapping[str, str] | None = None) -> list[Path]:
    """Remove the entry and the icon; return those that were there."""
    home = data_home(environ)
    removed = []
    for path in (entry_path(home), icon_path(home)):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DesktopEntryError(f"cannot remove {path}: {exc}") from exc
        removed.append(path)
    return removed
