"""Actions at start-up, with real processes: what the actions file and plugins do to a run.

A bad actions file or a name declared twice stops Taskdesk with one line and exit 1; a plugin
that fails to import does not (``/health`` says degraded and names it); the ``[settings]``
table is read through the same validation as the command line; and once actions of the
user's own exist, the API wants the token kept beside the database, loopback included, while
with the built-ins only the tutorial's curl lines work as they are.
"""

from __future__ import annotations

import stat
from pathlib import Path

from tests.proc_helpers import TaskdeskProcess, headless, run_taskdesk

ECHO = """
[actions.hello]
description = "Says hello"
argv = ["echo", "hello"]
"""


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("taskdesk: ")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def test_a_bad_actions_file_is_one_line_naming_file_and_line_and_exit_1(
    tmp_path: Path,
) -> None:
    actions = tmp_path / "actions.toml"
    actions.write_text('[actions.x]\nargv = ["true"]\ncolour = "red"\n', encoding="utf-8")
    done = run_taskdesk(headless(tmp_path / "t.db", "--actions", str(actions), "--no-plugins"))
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert str(actions) in line and "line 3" in line and "colour" in line
    assert not (tmp_path / "t.db").exists()  # refused before anything was written


def test_a_name_declared_twice_names_both_sources_and_exits_1(tmp_path: Path) -> None:
    actions = tmp_path / "actions.toml"
    actions.write_text('[actions.sum]\nargv = ["true"]\n', encoding="utf-8")
    done = run_taskdesk(headless(tmp_path / "t.db", "--actions", str(actions), "--no-plugins"))
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert "'sum'" in line and "built-in" in line and str(actions) in line


def test_a_missing_file_named_explicitly_is_an_error(tmp_path: Path) -> None:
    done = run_taskdesk(headless(tmp_path / "t.db", "--actions", str(tmp_path / "nope.toml")))
    assert done.returncode == 1
    assert "nope.toml" in one_error_line(done.stderr)


def test_settings_from_the_file_go_through_the_same_validation(tmp_path: Path) -> None:
    actions = tmp_path / "actions.toml"
    actions.write_text('[settings]\nworkers = 0\n', encoding="utf-8")
    done = run_taskdesk(headless(tmp_path / "t.db", "--actions", str(actions)))
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert f"{actions} [settings] workers" in line and "from 1 to 64" in line


def test_a_broken_plugin_is_left_out_and_health_says_so(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "broken.py").write_text("import no_such_module_here\n", encoding="utf-8")
    (plugins / "good.py").write_text(
        'TASKDESK_ACTIONS = [{"name": "shout", "run": lambda data, ctx: "HEY"}]\n',
        encoding="utf-8")
    proc = TaskdeskProcess(headless(tmp_path / "t.db", "--plugins", str(plugins)))
    try:
        proc.wait_listening()
        assert "broken.py" in proc.wait_for_log(r"plugin not loaded: .*").group(0)
        token = (tmp_path / "t.db.token").read_text(encoding="utf-8").strip()
        health = proc.api(token).get("/health").body
        assert health["status"] == "degraded"
        assert any("broken.py" in p and "no_such_module_here" in p for p in health["problems"])
        names = {a["name"] for a in proc.api(token).get("/actions").body["actions"]}
        assert "shout" in names
    finally:
        proc.kill()


def test_with_actions_of_ones_own_the_token_is_required_on_loopback(tmp_path: Path) -> None:
    actions = tmp_path / "actions.toml"
    actions.write_text(ECHO, encoding="utf-8")
    proc = TaskdeskProcess(headless(tmp_path / "t.db", "--actions", str(actions),
                                    "--no-plugins"))
    try:
        proc.wait_listening()
        token_file = tmp_path / "t.db.token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text(encoding="utf-8").strip()
        assert len(token) >= 32 and token not in proc.log  # never logged
        refused = proc.api().post("/tasks", {"action": "hello"})
        assert refused.status == 401
        accepted = proc.api(token).post("/tasks", {"action": "hello"})
        assert accepted.status == 202
    finally:
        proc.kill()
    # The same token at the next start: scripts keep working.
    again = TaskdeskProcess(headless(tmp_path / "t.db", "--actions", str(actions),
                                     "--no-plugins"))
    try:
        again.wait_listening()
        assert again.api(token).get("/stats").status == 200
    finally:
        again.kill()


def test_with_the_built_ins_only_no_token_is_needed(tmp_path: Path) -> None:
    proc = TaskdeskProcess(headless(tmp_path / "t.db", "--no-plugins",
                                    "--actions", str(tmp_path / "none.toml")))
    try:
        # A named file that does not exist is refused: without one, only the built-ins.
        assert proc.wait() == 1
    finally:
        proc.kill()
    proc = TaskdeskProcess(headless(tmp_path / "t.db", "--no-plugins"))
    try:
        proc.wait_listening()
        assert proc.api().post("/tasks", {"action": "uppercase",
                                          "data": {"text": "hi"}}).status == 202
        assert not (tmp_path / "t.db.token").exists()
    finally:
        proc.kill()
