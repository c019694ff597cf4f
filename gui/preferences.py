"""Preferences: what the user chose in the Preferences dialog, kept in QSettings.

Threads: read on the GUI thread; the Notifier's service subscriber reads nothing of it (it
collects, and the GUI thread decides what to show), so a change needs no lock.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from PySide6.QtCore import QSettings

# QSettings keys, by field.
KEYS = {
    "close_to_tray": "desktop/close_to_tray",
    "notify_failed": "notifications/failed",
    "notify_finished": "notifications/finished",
    "notify_database": "notifications/database",
}


@dataclass
class Preferences:
    # Closing the window keeps the API and workers running, in the tray (where there is one).
    close_to_tray: bool = True
    notify_failed: bool = True  # a task failed for good
    notify_finished: bool = False  # a task submitted from this window finished
    notify_database: bool = True  # the database became unavailable

    @classmethod
    def load(cls, settings: QSettings) -> Preferences:
        loaded = cls()
        for f in fields(cls):
            value = settings.value(KEYS[f.name])
            if value is not None:
                # INI files give back "true"/"false" text; the native formats give bools.
                setattr(loaded, f.name, value in (True, "true", "1", 1))
        return loaded

    def save(self, settings: QSettings) -> None:
        for f in fields(self):
            settings.setValue(KEYS[f.name], getattr(self, f.name))
        settings.sync()

    def update(self, other: Preferences) -> None:
        """Take *other*'s choices, in place: the window's parts hold this object."""
        for f in fields(self):
            setattr(self, f.name, getattr(other, f.name))
