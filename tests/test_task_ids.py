"""Task ids are RFC 9562 version-7 UUIDs: canonical text, creation time first, random rest."""

from __future__ import annotations

import time
import uuid

import pytest

from storage import task_ids
from storage.task_ids import new_task_id


def test_an_id_is_a_canonical_version_7_uuid() -> None:
    text = new_task_id()
    parsed = uuid.UUID(text)
    assert str(parsed) == text
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122


def test_the_first_48_bits_are_the_creation_time_in_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(task_ids, "_now_ns", lambda: 1_764_000_000_123_456_789)
    assert uuid.UUID(new_task_id()).int >> 80 == 1_764_000_000_123


def test_ids_of_later_milliseconds_sort_after_earlier_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [time.time_ns()]
    monkeypatch.setattr(task_ids, "_now_ns", lambda: now[0])
    earlier = [new_task_id() for _ in range(50)]
    now[0] += 1_000_000
    later = [new_task_id() for _ in range(50)]
    assert max(earlier) < min(later)


def test_ids_made_in_the_same_millisecond_differ_in_their_random_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(task_ids, "_now_ns", lambda: 1_764_000_000_000_000_000)
    ids = {new_task_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    # All 74 random bits vary: none is stuck at 0 or 1 across the sample.
    random_bits = [uuid.UUID(i).int & ((0xFFF << 64) | ((1 << 62) - 1)) for i in ids]
    for bit in [*range(62), *range(64, 76)]:
        assert {(value >> bit) & 1 for value in random_bits} == {0, 1}, bit
