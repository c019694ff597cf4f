"""Task ids: UUIDs of version 7 (RFC 9562), whose first 48 bits are the creation time in
milliseconds and the remaining 74 random.

Random (version 4) ids scatter the inserts of the unique index on ``id`` over the whole
B-tree: each commit dirties, and writes again to the WAL, a leaf page per task, and a big
table's index stops fitting the page cache. Time-ordered ids append near the right edge, on
the page the previous insert touched. They sort by creation time, and the API's contract
stays "a UUID".

The 74 random bits come from the ``random`` module, seeded from the system's entropy (again in
a forked child), not from ``os.urandom`` per id: that is a system call, during which the
thread lets go of the interpreter lock and then queues to take it back behind the busy worker
threads (5% of a queue run's samples sat there). Ids are not secrets, any API client can list
them all; they only need to be unique.
"""

from __future__ import annotations

import random
import time

_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A = 0xFFF << 64
_RAND_B = (1 << 62) - 1
_now_ns = time.time_ns  # the clock, replaceable in tests


def new_task_id() -> str:
    """A new UUIDv7 in its canonical text form (36 characters, lower-case hex)."""
    bits = random.getrandbits(76)  # reseeded in a forked child
    value = ((_now_ns() // 1_000_000) << 80 | _VERSION_7 | (bits & _RAND_A)
             | _VARIANT | (bits & _RAND_B))
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
