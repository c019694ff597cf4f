"""The real program with an actions file: a mistake in a schedule stops the start with one
line and exit 1 before the database is touched; a schedule declared there fires, is listed by
GET /schedules, and its state (a pause) is kept across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.launcher import headless, run_taskdesk
from tests.proc_helpers import StartTaskdesk

WAIT_MS = 20_000


def test_a_bad_schedule_stops_the_start_with_one_line(tmp_path: Path) -> None:
    actions = tmp_path / "actions.toml"
    actions.write_text('[actions.archive]\nargv = ["true"]\n\n[schedules.nightly]\n'
                       'action = "archive"\ncron = "61 2 * * *"\n', encoding="utf-8")
    db = tmp_path / "tasks.db"
    result = run_taskdesk(list(headless(db, "--actions", str(actions))))
    assert result.returncode == 1
    assert (f"{actions} line 4: [schedules.nightly] cron '61 2 * * *': bad minute"
            in result.stderr)
    assert "Traceback" not in result.stderr
    assert not db.exists()  # refused before the database was opened


def test_a_named_actions_file_must_exist_and_be_toml(tmp_path: Path) -> None:
    missing = run_taskdesk(list(headless(tmp_path / "a.db", "--actions",
                                         str(tmp_path / "none.toml"))))
    assert missing.returncode == 1
    assert f"{tmp_path / 'none.toml'}: no such file (the actions file)" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text("[schedules.x\n", encoding="utf-8")
    result = run_taskdesk(list(headless(tmp_path / "b.db", "--actions", str(broken))))
    assert result.returncode == 1 and f"{broken} line 1: " in result.stderr


def test_a_declared_schedule_fires_and_its_pause_survives_a_restart(
    tmp_path: Path, start_taskdesk: StartTaskdesk, qtbot: Any,
) -> None:
    actions = tmp_path / "actions.toml"
    actions.write_text('[schedules.tick]\naction = "uppercase"\ndata = { text = "tick" }\n'
                       "every = 1\n", encoding="utf-8")
    db = tmp_path / "tasks.db"
    args = headless(db, "--actions", str(actions), "--work-delay", "0")
    first = start_taskdesk(*args)
    first.wait_listening()
    api = first.api()

    def tick() -> dict[str, Any]:
        listing = api.get("/schedules").body
        assert isinstance(listing, dict)
        [schedule] = listing["schedules"]
        assert isinstance(schedule, dict)
        return schedule

    qtbot.waitUntil(lambda: (tick()["last_task"] or {}).get("status") == "completed",
                    timeout=WAIT_MS)
    assert tick()["every"] == 1.0 and tick()["name"] == "tick"
    task = api.get(f"/tasks/{tick()['last_task']['id']}").body
    assert isinstance(task, dict) and task["result"] == {"output": "TICK"}
    assert api.post("/schedules/tick/pause", {}).status == 200
    first.stop()

    second = start_taskdesk(*args)
    second.wait_listening()
    api = second.api()
    assert tick()["paused"] is True and tick()["next_due"] is None
