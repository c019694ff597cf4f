"""PreferencesDialog: close to tray, and which notifications to show."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QGroupBox,
    QLabel,
    QVBoxLayout,
    QWidget,
)

from gui.preferences import Preferences

NO_TRAY = ("This desktop has no system tray: closing the window quits Taskdesk, and "
           "notifications are shown in the window's status bar.")


class PreferencesDialog(QDialog):
    def __init__(self, preferences: Preferences, has_tray: bool,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Taskdesk Preferences")
        layout = QVBoxLayout(self)

        self.close_to_tray = QCheckBox("&Keep running in the tray when the window is closed")
        self.close_to_tray.setToolTip("The API and the workers go on; quit from the tray icon's "
                                      "menu or with File ▸ Quit (Ctrl+Q)")
        self.close_to_tray.setChecked(preferences.close_to_tray and has_tray)
        self.close_to_tray.setEnabled(has_tray)
        layout.addWidget(self.close_to_tray)
        if not has_tray:
            note = QLabel(NO_TRAY, self)
            note.setWordWrap(True)
            note.setEnabled(False)
            layout.addWidget(note)

        box = QGroupBox("Notify me when", self)
        box_layout = QVBoxLayout(box)
        self.notify_failed = QCheckBox("a task &fails for good (all its attempts spent)", box)
        self.notify_finished = QCheckBox("a task I submitted from this window &finishes", box)
        self.notify_database = QCheckBox("the &database becomes unavailable", box)
        for check, on in ((self.notify_failed, preferences.notify_failed),
                          (self.notify_finished, preferences.notify_finished),
                          (self.notify_database, preferences.notify_database)):
            check.setChecked(on)
            box_layout.addWidget(check)
        hint = QLabel("Bursts are grouped: at most one notification of each kind every 30 s.",
                      box)
        hint.setEnabled(False)
        hint.setWordWrap(True)
        box_layout.addWidget(hint)
        layout.addWidget(box)

        # Without a tray the choice shown is not the one stored: keep what the user chose
        # for a desktop that has one.
        self._stored_close_to_tray = preferences.close_to_tray
        self._has_tray = has_tray

        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def preferences(self) -> Preferences:
        """The choices as the dialog shows them."""
        return Preferences(
            close_to_tray=(self.close_to_tray.isChecked() if self._has_tray
                           else self._stored_close_to_tray),
            notify_failed=self.notify_failed.isChecked(),
            notify_finished=self.notify_finished.isChecked(),
            notify_database=self.notify_database.isChecked(),
        )
