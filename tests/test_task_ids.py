"""Task ids are random (version 4) UUIDs in canonical text; their 8-character prefixes, the
short ids users see, differ."""

from __future__ import annotations

import os
import random
import uuid

from storage.task_ids import new_task_id


def test_an_id_is_a_canonical_version_4_uuid() -> None:
    text = new_task_id()
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert parsed.version == 4
    assert parsed.variant == uuid.RFC_4122


def test_every_random_bit_varies_and_short_ids_tell_tasks_apart() -> None:
    ids = [new_task_id() for _ in range(10_000)]
    assert len(set(ids)) == len(ids)
    # Short ids (the first 8 characters) of 10,000 tasks: collisions would be rare (32 bits).
    assert len({i[:8] for i in ids}) >= len(ids) - 2
    values = [uuid.UUID(i).int for i in ids]
    fixed = {*range(76, 80), 62, 63}  # the version and variant bits
    for bit in set(range(128)) - fixed:
        assert {(v >> bit) & 1 for v in values} == {0, 1}, bit


def test_seeding_the_random_module_does_not_repeat_ids() -> None:
    # Test libraries seed the random module's shared generator (Hypothesis does, in the
    # fuzz tests), and so may a plugin: ids made from it repeated, and a POST failed.
    random.seed(7)
    first = new_task_id()
    random.seed(7)
    assert new_task_id() != first


def test_a_forked_child_makes_ids_of_its_own() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send one id and leave at once
        os.write(write, new_task_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 100).decode()
    os.close(read)
    assert uuid.UUID(child).version == 4 and child != new_task_id()
