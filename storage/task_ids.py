"""Task ids: random UUIDs (version 4), as the tutorial's ``uuid.v4()``.

The 122 random bits come from a generator of our own, seeded from the system's entropy (again
in a forked child), not from ``os.urandom`` per id as ``uuid.uuid4`` does: that is a system
call, during which the thread lets go of the interpreter lock and then queues to take it back
behind the busy worker threads (5% of a queue run's samples sat there). Not the ``random``
module's shared generator: whoever seeds it (a test library does, a plugin may) would make
the ids repeat. Ids are not secrets, any API client can list them all; they only need to be
unique.

Time-ordered ids (UUIDv7) were tried: inserts into the unique index on ``id`` then append at
its right edge, about a tenth less SQLite time per insert. Not kept: their first 8 characters,
the short id the window, the command line and notifications show and the search matches as a
prefix, would be the same for every task of seven weeks.
"""

from __future__ import annotations

import os
import random

_VERSION_4 = 0x4 << 76
_VARIANT = 0b10 << 62
_RANDOM = ~((0xF << 76) | (0b11 << 62)) & ((1 << 128) - 1)  # all but version and variant
_generator = random.Random()  # seeded from os.urandom
os.register_at_fork(after_in_child=_generator.seed)  # a child must not repeat its parent


def new_task_id() -> str:
    """A new random UUID in its canonical text form (36 characters, lower-case hex)."""
    value = (_generator.getrandbits(128) & _RANDOM) | _VERSION_4 | _VARIANT
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
