"""Task ids are random (version 4) UUIDs in canonical text; their 8-character prefixes, the
short ids users see, differ."""

from __future__ import annotations

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
