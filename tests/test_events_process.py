"""GET /events in a real Taskdesk process: a script follows its task to the end, a stream does
not hold up a graceful stop, and an id from before a restart asks for a resync."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.proc_helpers import StartTaskdesk, headless
from tests.sse_client import SseStream


def test_a_script_follows_its_task_and_sigterm_ends_the_stream(
    tmp_path: Path, start_taskdesk: StartTaskdesk
) -> None:
    proc = start_taskdesk(*headless(tmp_path / "tasks.db", "--work-delay", "0"))
    proc.wait_listening()
    stream = SseStream(proc.base_url, "/events?action=uppercase", timeout=30)
    assert stream.status == 200
    stream.next(30)  # open: what follows is every change from now on
    reply = proc.api().post("/tasks", {"action": "uppercase", "data": {"text": "follow me"}})
    task_id = reply.body["id"]
    statuses: list[str] = []
    while not statuses or statuses[-1] not in ("completed", "failed", "cancelled"):
        event = stream.next_event(30).json()
        assert event["id"] == task_id
        statuses.append(event["status"])
    assert statuses == ["queued", "running", "completed"]
    last_id = stream.last_id

    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, proc.log
    # The stream ends at once (well under a second here), rather than holding its server
    # thread until cheroot gives up waiting for it after 5 s and cuts the connection.
    assert time.monotonic() - started < 3
    stream.body()  # the stream ended as a chunked body ends, not cut off
    with pytest.raises(EOFError):
        stream.next(30)
    stream.close()

    # The next run's ids are above the last run's: resuming from one of those is a resync.
    again = start_taskdesk(*headless(tmp_path / "tasks.db", "--work-delay", "0"))
    again.wait_listening()
    resumed = SseStream(again.base_url, "/events", {"Last-Event-ID": str(last_id)}, timeout=30)
    resync = resumed.next_event(30)
    assert resync.event == "resync"
    assert int(str(resync.id)) > int(str(last_id))
    resumed.close()
