"""What only the PostgreSQL store does (the contract itself is tests/test_store_contract.py):
nodes, leases, rescue and fencing, eviction and rejoining, NOTIFY between nodes, counts
folded from deltas, strings PostgreSQL text cannot hold, logs in chunks, migrations under a
lock, and passwords kept out of every message."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from storage import (
    Changes,
    DatabaseDamagedError,
    DatabaseError,
    Finish,
    NewTask,
    SchemaTooNewError,
    TaskQuery,
    TaskSort,
    TaskStatus,
    open_store,
)
from storage.postgres import PostgresTaskStore
from storage.postgres.database import connection_kwargs
from storage.postgres.migrations import LATEST_VERSION
from storage.postgres.writer import Changes as Notes
from tests.postgres_server import PgServer

NOW = 1_800_000_000.0


@pytest.fixture
def open_node(pg_url: str) -> Iterator[Callable[..., PostgresTaskStore]]:
    opened: list[PostgresTaskStore] = []

    def factory(lease: float = 30.0) -> PostgresTaskStore:
        store = PostgresTaskStore(pg_url, lease=lease, max_connections=4)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        store.close()


def silence(server: PgServer, url: str, store: PostgresTaskStore) -> None:
    """Make *store*'s node look dead: its last heartbeat an hour ago."""
    server.query(url, "UPDATE nodes SET heartbeat_at = now() - interval '1 hour' "
                      "WHERE id = %s", (store.node.number,))


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    done = threading.Event()
    found: list[Any] = []

    def poll() -> None:
        while not done.is_set():
            value = condition()
            if value:
                found.append(value)
                done.set()
                return
            done.wait(0.02)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    done.wait(timeout)
    done.set()
    thread.join()
    assert found, "condition not met in time"
    return found[0]


def test_a_dead_nodes_tasks_are_handed_back_and_its_late_outcomes_change_nothing(
    open_node: Callable[..., PostgresTaskStore], pg_server: PgServer, pg_url: str
) -> None:
    zombie, rescuer = open_node(), open_node()
    zombie.add_many(NewTask("x", "{}", 3), 2, NOW)
    last = zombie.add(NewTask("x", "{}", 1), NOW).task
    claimed = zombie.settle([], 3, NOW).claimed
    assert len(claimed) == 3
    silence(pg_server, pg_url, zombie)
    rescued = rescuer._rescue(at=NOW + 5)
    assert sorted(t.id for t in rescued) == sorted(t.id for t in claimed)
    by_id = {t.id: t for t in rescued}
    assert by_id[last.id].status == TaskStatus.FAILED  # its one attempt is spent
    assert "interrupted" in str(by_id[last.id].error)
    others = [t for t in claimed if t.id != last.id]
    assert all(by_id[t.id].status == TaskStatus.QUEUED and by_id[t.id].attempts == 1
               for t in others)
    # The zombie comes back: what it finishes or releases now changes nothing, and it claims
    # nothing while its row is gone.
    late = zombie.settle([Finish(t.id, t.attempts, TaskStatus.COMPLETED, "1", NOW + 6)
                          for t in claimed], 5, NOW + 6)
    assert late.finished == [None, None, None] and late.claimed == []
    assert zombie.release(others[0].id, 1, NOW, None) is None
    assert [n.id for n in rescuer.nodes()] == [rescuer.node.id]
    # Its next heartbeat finds out, says so, and rejoins under a new id.
    old_id = zombie.node.id
    zombie._heartbeat()
    assert zombie.node.id != old_id
    assert zombie.problem is not None and f"node {old_id}" in zombie.problem
    assert "found dead" in zombie.problem
    again = zombie.settle([], 5, NOW + 7).claimed
    assert sorted(t.id for t in again) == sorted(t.id for t in others)
    assert all(t.attempts == 2 for t in again)


def test_start_up_recovery_leaves_live_nodes_tasks_alone(
    open_node: Callable[..., PostgresTaskStore], pg_server: PgServer, pg_url: str
) -> None:
    busy = open_node()
    busy.add_many(NewTask("x", "{}", 3), 2, NOW)
    [running, _] = busy.settle([], 2, NOW).claimed
    dead = open_node()
    dead.add(NewTask("x", "{}", 3), NOW)
    [orphan] = dead.settle([], 1, NOW).claimed
    silence(pg_server, pg_url, dead)
    newcomer = open_node()
    assert newcomer.recover(NOW + 1) == 1  # the dead node's task only
    assert newcomer.get(orphan.id).status == TaskStatus.QUEUED  # type: ignore[union-attr]
    assert newcomer.get(running.id).status == TaskStatus.RUNNING  # type: ignore[union-attr]
    stored = busy.settle([Finish(running.id, 1, TaskStatus.COMPLETED, "1", NOW + 2)], 0,
                         NOW + 2).finished
    assert stored[0] is not None and stored[0].status == TaskStatus.COMPLETED


def test_another_node_hears_of_every_change_and_a_node_not_of_its_own(
    open_node: Callable[..., PostgresTaskStore]
) -> None:
    writer, reader = open_node(), open_node()
    heard: dict[str, list[Changes | None]] = {"writer": [], "reader": []}
    writer.watch(heard["writer"].append)
    unwatch = reader.watch(heard["reader"].append)
    assert reader.listener.connected.wait(10) and writer.listener.connected.wait(10)
    task = writer.add(NewTask("x", "{}", 3), NOW).task
    wait_for(lambda: any(c is not None and task.id in c.task_ids for c in heard["reader"]))
    writer.set_paused(True)
    wait_for(lambda: any(c is not None and c.queue for c in heard["reader"]))
    many = writer.add_many(NewTask("x", "{}", 3), 300, NOW)  # too many ids for one payload
    assert len(many) == 300
    wait_for(lambda: None in heard["reader"])
    assert heard["writer"] == []
    unwatch()
    count = len(heard["reader"])
    writer.cancel_many([task.id], NOW)
    reader.add(NewTask("x", "{}", 3), NOW)  # a commit after the cancel's, heard by writer
    wait_for(lambda: heard["writer"])
    assert len(heard["reader"]) == count


def test_counts_are_folded_from_deltas_without_changing(
    open_node: Callable[..., PostgresTaskStore], pg_url: str, pg_server: PgServer
) -> None:
    store = open_node()
    store.add_many(NewTask("x", "{}", 3), 5, NOW)
    store.settle([], 2, NOW)
    before = store.counts()
    assert pg_server.query(pg_url, "SELECT count(*) FROM task_count_deltas")[0][0] > 0
    store._fold()
    assert pg_server.query(pg_url, "SELECT count(*) FROM task_count_deltas")[0][0] == 0
    assert store.counts() == before == {**dict.fromkeys(TaskStatus, 0),
                                        TaskStatus.QUEUED: 3, TaskStatus.RUNNING: 2}
    assert pg_server.query(pg_url, "SELECT sum(n) FROM task_counts")[0][0] == 5


def test_strings_postgresql_text_cannot_hold_are_kept_exactly(
    open_node: Callable[..., PostgresTaskStore]
) -> None:
    store = open_node()
    task = store.add(NewTask("a\x00b", "{}", 1), NOW).task
    [running] = store.settle([], 1, NOW).claimed
    [failed] = store.settle([Finish(running.id, 1, TaskStatus.FAILED, "bad \x00 byte", NOW)],
                            0, NOW).finished
    assert failed is not None and failed.error == "bad \x00 byte"
    assert store.get(task.id) == failed and failed.action == "a\x00b"
    assert store.page(TaskQuery(action="a\x00b"), 10) == [failed]
    assert store.list_json(TaskQuery(), 10, 0) == (failed.to_json(), 1)


def test_a_log_keeps_its_last_bytes_and_the_offsets_of_everything_logged(
    open_node: Callable[..., PostgresTaskStore]
) -> None:
    store, other = open_node(), open_node()
    store.logs.cap = 100
    task = store.add(NewTask("x", "{}", 1), NOW).task
    for i in range(30):
        store.append_log(task.id, f"line {i:02d}\n".encode())  # 8 bytes each, 240 in all
    store.logs.flush()
    kept = other.read_log(task.id, 0, 1000)
    assert kept.next_offset == 240 and kept.start <= 140
    assert kept.data == b"".join(f"line {i:02d}\n".encode() for i in range(30))[kept.start:]
    assert other.read_log(task.id, 232, 100).data == b"line 29\n"


def test_nodes_list_each_instance_with_its_running_tasks(
    open_node: Callable[..., PostgresTaskStore]
) -> None:
    a, b = open_node(), open_node()
    b.announce("http://10.0.0.2:8080")
    a.add(NewTask("x", "{}", 1), NOW)
    [running] = a.settle([], 1, NOW).claimed
    nodes = b.nodes()
    assert [(n.id, n.current, n.alive, n.running) for n in nodes] == [
        (a.node.id, False, True, (running.id,)), (b.node.id, True, True, ())]
    assert nodes[1].api_url == "http://10.0.0.2:8080"


def test_instances_starting_together_migrate_once_and_a_newer_schema_is_refused(
    pg_server: PgServer
) -> None:
    name = f"{pg_server.dbname}_migrate"
    pg_server.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    pg_server.admin.execute(f'CREATE DATABASE "{name}"')
    url = pg_server.url(name)
    try:
        results: list[Any] = []
        barrier = threading.Barrier(3)

        def start() -> None:
            barrier.wait()
            try:
                store = open_store(url)
            except Exception as exc:
                results.append(exc)
                return
            results.append(store.migrated)
            store.close()

        threads = [threading.Thread(target=start) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [(0, LATEST_VERSION)] + [(LATEST_VERSION,) * 2] * 2
        pg_server.query(url, "UPDATE taskdesk_schema SET version = version + 1")
        with pytest.raises(SchemaTooNewError, match="newer Taskdesk"):
            open_store(url)
    finally:
        pg_server.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_no_message_shows_the_password(pg_server: PgServer) -> None:
    url = f"postgresql://someone:s3cret-pw@127.0.0.1:1/{pg_server.dbname}"
    with pytest.raises(DatabaseError) as info:
        open_store(url, lease=3)
    assert "s3cret-pw" not in str(info.value)
    assert "postgresql://someone@127.0.0.1:1/" in str(info.value)


def test_a_restarted_connection_is_unavailable_then_used_again(
    open_node: Callable[..., PostgresTaskStore], pg_server: PgServer, pg_url: str
) -> None:
    store = open_node()
    store.add(NewTask("x", "{}", 1), NOW)
    # Every connection of the store ended by the server, as a restart would.
    pg_server.admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
        "AND pid <> pg_backend_pid()", (pg_url.rsplit("/", 1)[1],))
    assert store.count(TaskQuery()) == 1  # a read tries a fresh connection
    assert store.add(NewTask("x", "{}", 1), NOW).created  # so does a write's batch
    assert store.problem is None


def test_concurrent_claims_from_two_nodes_need_no_waiting(
    open_node: Callable[..., PostgresTaskStore], pg_url: str
) -> None:
    a, b = open_node(), open_node()
    a.add_many(NewTask("x", "{}", 3), 10, NOW)
    # A transaction holding some ready rows locked: the claim skips them rather than wait.
    with psycopg.connect(pg_url) as conn:
        conn.execute("SELECT seq FROM tasks ORDER BY seq LIMIT 4 FOR UPDATE")
        taken = b.settle([], 10, NOW).claimed
        assert [t.seq for t in taken] == list(range(5, 11))



def test_a_task_waiting_for_one_that_ends_while_it_is_added_or_retried_is_not_stranded(
    open_node: Callable[..., PostgresTaskStore], pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite reads the tasks waited for and stores the waiting task in one serialised
    # write. On PostgreSQL another node may end one of them before that write commits;
    # its cascade must still reach the waiting task, else it waits for good (or is never
    # cancelled).
    runner, adder = open_node(), open_node()
    deps = [runner.add(NewTask("x", "{}", 1), NOW).task for _ in range(3)]
    assert len(runner.settle([], 3, NOW).claimed) == 3
    ending: list[Finish] = []

    def committed_after_another_node_ends_a_task(write: Callable[..., Any]) -> Any:
        finish = ending.pop()
        with psycopg.connect(pg_url, **connection_kwargs()) as conn, conn.transaction():
            result = write(conn, Notes())
            # The other node's commit comes first, unless it has to wait for this one.
            thread = threading.Thread(
                target=lambda: runner.settle([finish], 0, finish.when), daemon=True)
            thread.start()
            thread.join(1.0)
        thread.join(10)
        assert not thread.is_alive()
        return result

    monkeypatch.setattr(adder, "_write", committed_after_another_node_ends_a_task)
    ending.append(Finish(deps[0].id, 1, TaskStatus.COMPLETED, "1", NOW + 1))
    ready = adder.add(NewTask("x", "{}", 1, after=(deps[0].id,)), NOW + 1).task
    ending.append(Finish(deps[1].id, 1, TaskStatus.FAILED, "boom", NOW + 2))
    doomed = adder.add(NewTask("x", "{}", 1, after=(deps[1].id,)), NOW + 2).task
    monkeypatch.undo()
    retried = adder.add(NewTask("x", "{}", 1, after=(deps[2].id,)), NOW + 3).task
    adder.cancel_many([retried.id], NOW + 3)
    monkeypatch.setattr(adder, "_write", committed_after_another_node_ends_a_task)
    ending.append(Finish(deps[2].id, 1, TaskStatus.COMPLETED, "1", NOW + 4))
    assert [t.id for t in adder.retry_many([retried.id], NOW + 4)] == [retried.id]
    monkeypatch.undo()
    stored = {t.id: t for t in adder.page(TaskQuery(ids=[ready.id, doomed.id, retried.id]), 3)}
    assert stored[doomed.id].status == TaskStatus.CANCELLED
    assert "failed" in str(stored[doomed.id].error)
    assert stored[ready.id].waiting == 0 and stored[retried.id].waiting == 0
    claimed = adder.settle([], 5, NOW + 5).claimed
    assert sorted(t.id for t in claimed) == sorted([ready.id, retried.id])


def test_a_log_stays_in_order_when_two_threads_store_it_at_once(
    open_node: Callable[..., PostgresTaskStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The flusher thread, a reader following the log (the window, every 0.5 s) and the
    # action's thread once 64 KiB are held all store what is held; the one that took the
    # earlier bytes may reach the database last.
    store = open_node()
    task = store.add(NewTask("x", "{}", 1), NOW).task
    original = store.logs._write
    first = threading.Event()

    def slow_first(write: Any) -> None:
        if not first.is_set():
            first.set()
            time.sleep(0.5)  # descheduled between taking the bytes and storing them
        original(write)

    monkeypatch.setattr(store.logs, "_write", slow_first)
    store.append_log(task.id, b"first\n")
    early = threading.Thread(target=store.logs.flush)
    early.start()
    assert first.wait(5)
    store.append_log(task.id, b"second\n")
    store.logs.flush()
    early.join()
    assert store.read_log(task.id, 0, 100).data == b"first\nsecond\n"


def test_damage_reported_by_the_server_is_remembered_and_nothing_more_is_written(
    open_node: Callable[..., PostgresTaskStore], pg_url: str
) -> None:
    # As on SQLite (the contract): told once, on /health through `damage`, every later
    # write refused.
    store = open_node()
    told: list[str] = []
    store.on_damage = told.append
    corrupted = ("DO $$ BEGIN RAISE EXCEPTION 'invalid page in block 7 of relation base/1/2' "
                 "USING ERRCODE = 'data_corrupted'; END $$")
    with pytest.raises(DatabaseDamagedError, match="is damaged: invalid page in block 7"):
        store._read(corrupted)
    assert store.damage is not None and pg_url.rsplit("/", 1)[1] in store.damage
    with pytest.raises(DatabaseDamagedError):
        store.add(NewTask("x", "{}", 3), NOW)
    with pytest.raises(DatabaseDamagedError):
        store._write(lambda conn, notes: conn.execute(corrupted))
    assert store.count(TaskQuery()) == 0  # reads that do not meet the damage go on
    assert told == [store.damage]


def test_a_cancel_racing_a_running_task_back_to_the_queue_cancels_it(
    open_node: Callable[..., PostgresTaskStore], pg_url: str, pg_server: PgServer,
    monkeypatch: pytest.MonkeyPatch
) -> None:
    # The running task goes back to the queue (handed back, or an attempt to retry) while
    # another node cancels it: on SQLite the cancel then finds it queued and cancels it;
    # it must not find it neither queued nor running (a 409 for a queued task).
    runner, canceller = open_node(), open_node()
    task = runner.add(NewTask("x", "{}", 3), NOW).task
    [claimed] = runner.settle([], 1, NOW).claimed
    result: list[Any] = []

    def committed_while_a_cancel_waits(write: Callable[..., Any]) -> Any:
        with psycopg.connect(pg_url, **connection_kwargs()) as conn, conn.transaction():
            released = write(conn, Notes())
            thread = threading.Thread(
                target=lambda: result.append(canceller.cancel_many([task.id], NOW + 1)),
                daemon=True)
            thread.start()
            wait_for(lambda: pg_server.query(
                pg_url, "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                "AND wait_event_type = 'Lock'", (pg_url.rsplit("/", 1)[1],))[0][0])
        thread.join(10)
        return released

    monkeypatch.setattr(runner, "_write", committed_while_a_cancel_waits)
    assert runner.release(task.id, claimed.attempts, NOW, None) is not None
    [cancelled] = result[0]
    assert (cancelled.id, cancelled.status) == (task.id, TaskStatus.CANCELLED)


def test_every_order_walks_its_index_and_sorts_nothing(
    open_node: Callable[..., PostgresTaskStore], pg_server: PgServer, pg_url: str
) -> None:
    """Each order, both ways, first page and after a cursor: PostgreSQL's plan scans the
    order's index (the row comparison of the cursor as its condition) and has no Sort."""
    store = open_node()
    pg_server.query(pg_url, """
        INSERT INTO tasks (id, action, action_json, data, status, max_attempts, created_at,
                           run_after, priority, started_at, processed_at, attempts)
        SELECT 't' || i, 'a' || i % 7, '"a' || i % 7 || '"', '{}',
               CASE WHEN i % 4 = 0 THEN 'queued' ELSE 'completed' END, 3, 1.8e9 + i, 1.8e9,
               i % 5, CASE WHEN i % 4 <> 0 THEN 1.8e9 + i + 1 END,
               CASE WHEN i % 4 <> 0 THEN 1.8e9 + i + 1 + i % 13 END, i % 4
        FROM generate_series(1, 20000) AS i""".replace("%", "%%"))
    pg_server.query(pg_url, "ANALYZE tasks")
    indexes = {
        TaskSort.CREATED: "tasks_pkey", TaskSort.STARTED: "tasks_by_started",
        TaskSort.FINISHED: "tasks_by_finished", TaskSort.DURATION: "tasks_by_duration",
        TaskSort.ATTEMPTS: "tasks_by_attempts", TaskSort.ACTION: "tasks_by_action",
        TaskSort.STATUS: "tasks_by_status", TaskSort.PRIORITY: "tasks_by_priority",
    }
    middle = store.page(TaskQuery(), 1, store.page(TaskQuery(), 10_000)[-1])[0]
    for sort, index in indexes.items():
        for descending in (True, False):
            query = TaskQuery(sort=sort, descending=descending)
            for cursor in (None, middle):
                ran: list[tuple[str, Any]] = []
                read = store._read

                def recording(sql: str, params: Any = (), ran: Any = ran, read: Any = read
                              ) -> list[Any]:
                    ran.append((sql, params))
                    return read(sql, params)  # type: ignore[no-any-return]

                store._read = recording  # type: ignore[method-assign]
                try:
                    page = store.page(query, 100, cursor)
                finally:
                    del store._read
                [(sql, params)] = ran
                found = "\n".join(r[0] for r in store._read("EXPLAIN " + sql, params))
                assert f"using {index}" in found and "Sort" not in found, (query, found)
                if cursor is not None:
                    assert "Index Cond" in found, (query, found)
                assert len(page) == 100
