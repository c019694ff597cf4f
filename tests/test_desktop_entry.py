"""taskdesk --install-desktop-entry / --uninstall-desktop-entry (service/desktop_entry.py): a
freedesktop .desktop file and icon under XDG_DATA_HOME (here in tmp_path), checked with
desktop-file-validate where it is installed (Debian's desktop-file-utils) and parsed always."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.desktop_entry import (
    ICON_SOURCE,
    DesktopEntryError,
    data_home,
    entry_path,
    entry_text,
    exec_argument,
    icon_path,
    install,
    taskdesk_command,
    uninstall,
)
from tests.launcher import MAIN, REPO_ROOT, child_env

VALIDATOR = shutil.which("desktop-file-validate")


def parse_entry(text: str) -> dict[str, str]:
    """The [Desktop Entry] group's keys and raw values."""
    lines = text.splitlines()
    assert lines[0] == "[Desktop Entry]"
    values: dict[str, str] = {}
    for line in lines[1:]:
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("["), "one group only"
        key, sep, value = line.partition("=")
        assert sep and key not in values, line
        values[key] = value
    return values


def unescape_string(value: str) -> str:
    """The spec's string escapes: \\s \\n \\t \\r \\\\."""
    out, i = [], 0
    while i < len(value):
        if value[i] == "\\" and i + 1 < len(value):
            out.append({"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}[value[i + 1]])
            i += 2
        else:
            out.append(value[i])
            i += 1
    return "".join(out)


def exec_arguments(value: str) -> list[str]:
    """An Exec value read as a launcher reads it: string escapes, then quoting, then %%."""
    text, args, i = unescape_string(value), [], 0
    while i < len(text):
        if text[i] == " ":
            i += 1
            continue
        arg = []
        if text[i] == '"':
            i += 1
            while text[i] != '"':
                if text[i] == "\\":
                    assert text[i + 1] in '"`$\\', "only these are escaped inside quotes"
                    i += 1
                arg.append(text[i])
                i += 1
            i += 1
        else:
            while i < len(text) and text[i] != " ":
                assert text[i] not in "\"'\\><~|&;$*?#()`\t\n", "unquoted reserved character"
                arg.append(text[i])
                i += 1
        args.append("".join(arg).replace("%%", "%"))
    return args


def validate(path: Path) -> None:
    if VALIDATOR is None:
        return  # parsed by the tests themselves; Debian's desktop-file-utils adds this check
    done = subprocess.run([VALIDATOR, str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "", done.stdout + done.stderr


def fake_command(folder: Path, name: str = "taskdesk") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    command = folder / name
    command.write_text("#!/bin/sh\nexit 0\n")
    command.chmod(0o755)
    return command


def test_install_writes_a_valid_entry_and_its_icon(tmp_path: Path) -> None:
    command = fake_command(tmp_path / "venv" / "bin")
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    written = install(env, argv0=str(command), executable="/nowhere/python")
    entry = tmp_path / "data" / "applications" / "taskdesk.desktop"
    icon = tmp_path / "data" / "icons" / "hicolor" / "scalable" / "apps" / "taskdesk.svg"
    assert written == [entry, icon]
    assert icon.read_bytes() == ICON_SOURCE.read_bytes()
    values = parse_entry(entry.read_text(encoding="utf-8"))
    assert values["Type"] == "Application" and values["Name"] == "Taskdesk"
    assert exec_arguments(values["Exec"]) == [str(command)]
    assert unescape_string(values["TryExec"]) == str(command)
    assert values["Icon"] == "taskdesk" == icon.stem  # found by name in the icon theme
    assert values["Terminal"] == "false"
    validate(entry)
    assert not list(entry.parent.glob("*.tmp"))


@pytest.mark.parametrize("folder", ["my apps", "a$b", 'q"uote', "back\\slash", "50%", "t`ick",
                                    "semi;colon"])
def test_exec_quotes_paths_with_reserved_characters(tmp_path: Path, folder: str) -> None:
    command = tmp_path / folder / "bin" / "taskdesk"
    assert exec_arguments(exec_argument(str(command))) == [str(command)]
    entry = tmp_path / "taskdesk.desktop"
    entry.write_text(entry_text(command), encoding="utf-8")
    validate(entry)


def test_plain_paths_stay_unquoted() -> None:
    assert exec_argument("/home/ana/.venv/bin/taskdesk") == "/home/ana/.venv/bin/taskdesk"


def test_the_command_is_the_installed_taskdesk(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    running = fake_command(tmp_path / "running")
    beside = fake_command(tmp_path / "venv" / "bin")
    on_path = fake_command(tmp_path / "path")
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    python = str(tmp_path / "venv" / "bin" / "python")
    assert taskdesk_command(str(running), python) == running  # the one running
    assert taskdesk_command("taskdesk", "/nowhere/python") == on_path  # run by name
    assert taskdesk_command(str(MAIN), python) == beside  # python main.py: the venv's
    launcher = fake_command(tmp_path / "elsewhere", "pytest")  # runnable, but not Taskdesk
    assert taskdesk_command(str(launcher), python) == beside
    assert taskdesk_command(str(MAIN), "/nowhere/python") == on_path
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(DesktopEntryError, match="cannot find the installed taskdesk"):
        taskdesk_command(str(MAIN), "/nowhere/python")


def test_xdg_data_home_defaults_to_local_share_and_must_be_absolute(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert data_home({"HOME": home}) == tmp_path / ".local" / "share"
    assert data_home({"HOME": home, "XDG_DATA_HOME": ""}) == tmp_path / ".local" / "share"
    assert data_home({"HOME": home, "XDG_DATA_HOME": "rel/dir"}) == tmp_path / ".local" / "share"
    assert data_home({"HOME": home, "XDG_DATA_HOME": "/x/y"}) == Path("/x/y")


def test_uninstall_removes_both_and_again_nothing(tmp_path: Path) -> None:
    command = fake_command(tmp_path / "bin")
    env = {"XDG_DATA_HOME": str(tmp_path / "data")}
    entry, icon = install(env, argv0=str(command))
    other = entry.parent / "someone-else.desktop"
    other.write_text("[Desktop Entry]\n")
    assert uninstall(env) == [entry, icon]
    assert not entry.exists() and not icon.exists() and other.exists()
    assert uninstall(env) == []


def run_taskdesk(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = child_env({"XDG_DATA_HOME": str(data)})
    return subprocess.run([sys.executable, str(MAIN), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_command_line_installs_and_removes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run_taskdesk("--install-desktop-entry", data=data)
    assert done.returncode == 0, done.stderr
    entry, icon = entry_path(data), icon_path(data)
    assert done.stdout.splitlines() == [f"wrote {entry}", f"wrote {icon}"]
    [command] = exec_arguments(parse_entry(entry.read_text(encoding="utf-8"))["Exec"])
    # python main.py: the taskdesk command of this Python's environment, which exists.
    assert Path(command) == Path(sys.executable).parent / "taskdesk"
    assert os.access(command, os.X_OK)
    validate(entry)

    done = run_taskdesk("--uninstall-desktop-entry", data=data)
    assert (done.returncode, done.stdout.splitlines()) == (0, [f"removed {entry}",
                                                               f"removed {icon}"])
    assert not entry.exists() and not icon.exists()
    done = run_taskdesk("--uninstall-desktop-entry", data=data)
    assert (done.returncode, done.stdout.strip()) == (0, "no desktop entry to remove")


def test_the_command_line_says_why_it_cannot_write(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    done = run_taskdesk("--install-desktop-entry", data=blocker)
    assert done.returncode == 1
    assert done.stderr.startswith("taskdesk: cannot write the desktop entry: "), done.stderr
    assert "Traceback" not in done.stderr
