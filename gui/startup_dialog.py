"""The dialog shown when Taskdesk cannot start (e.g. the database cannot be opened or is newer
than this version). main.py calls it after creating the QApplication and before any window.
"""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox, QWidget


def startup_error_box(message: str, parent: QWidget | None = None) -> QMessageBox:
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle("Taskdesk cannot start")
    box.setText("Taskdesk could not start.")
    # The message names the cause (file, port, schema version); it is also in the log.
    box.setInformativeText(message)
    box.setStandardButtons(QMessageBox.StandardButton.Close)
    return box


def show_startup_error(message: str) -> None:
    """Show *message* in a modal critical message box and wait until it is closed."""
    startup_error_box(message).exec()
