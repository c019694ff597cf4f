"""ComposePanel: pick an action, fill its form or its JSON data, submit one or many copies.

The JSON editor is the source of truth for ``data``; the form of a known action (a text field
for ``uppercase``, a number list for ``sum``) writes its field into that JSON, and editing the
JSON updates the form. Every change re-validates with ``service.validate``, the same check the
API applies, so Submit is enabled exactly when the service would accept the task, and the
reason it would not is shown next to the button.

Threads: GUI thread only. ``service.submit`` writes one row and returns at once.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from gui.formatting import pretty_json, short_id
from gui.status_style import STATUS_COLORS
from gui.when_options import WhenOptions
from service.errors import ServiceError, ValidationError
from service.task_service import TaskService

MAX_COPIES = 10_000
HINT = "Ctrl+Enter submits"

# The data each known action starts with; other actions start with an empty object.
TEMPLATES: dict[str, dict[str, Any]] = {
    "uppercase": {"text": ""},
    "sum": {"numbers": []},
}

_INT = re.compile(r"[+-]?\d+")


class FormError(ValueError):
    """What the user typed in a form field is not usable; the message says why."""


def parse_numbers(text: str) -> list[int | float]:
    """Numbers separated by commas and/or spaces, e.g. "1, 2.5 -3"."""
    numbers: list[int | float] = []
    for token in re.split(r"[,;\s]+", text.strip()):
        if not token:
            continue
        if _INT.fullmatch(token):
            numbers.append(int(token))
            continue
        try:
            value = float(token)
        except ValueError:
            raise FormError(f"sum: “{token}” is not a number") from None
        if not math.isfinite(value):
            raise FormError(f"sum: “{token}” is not a finite number")
        numbers.append(value)
    return numbers


def format_numbers(numbers: list[Any]) -> str | None:
    """The form text for a list of numbers; None when the list holds something else."""
    if not all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers):
        return None
    return ", ".join(json.dumps(n) for n in numbers)


class ComposePanel(QWidget):
    submitted = Signal(list)  # ids of the stored tasks

    def __init__(self, service: TaskService, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._service = service
        self._syncing = False  # set while one editor writes into the other
        self._form_error: str | None = None
        self._last_action = ""

        self.action_combo = QComboBox(self)
        self.action_combo.setEditable(True)
        self.action_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.action_combo.addItems(sorted(TEMPLATES, key=lambda n: n != "uppercase"))
        self.action_combo.setToolTip(
            "uppercase and sum have a form; any other name runs the default action"
        )
        self.action_combo.setSizePolicy(
            QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed
        )
        action_edit = self.action_combo.lineEdit()
        if action_edit is not None:
            action_edit.setPlaceholderText("action name")

        self.text_edit = QLineEdit(self)
        self.text_edit.setPlaceholderText("text to upper-case")
        self.numbers_edit = QLineEdit(self)
        self.numbers_edit.setPlaceholderText("numbers, e.g. 1, 2, 3.5")
        no_form = QLabel("No form for this action: edit its data as JSON below.", self)
        no_form.setEnabled(False)
        self._form_rows = QStackedWidget(self)
        self._form_labels: dict[str, str] = {"uppercase": "Text", "sum": "Numbers", "": ""}
        self._pages: dict[str, QWidget] = {
            "uppercase": self.text_edit,
            "sum": self.numbers_edit,
            "": no_form,
        }
        for page in self._pages.values():
            self._form_rows.addWidget(page)
        self._form_rows.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

        self.json_edit = QPlainTextEdit(self)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.json_edit.setFont(mono)
        self.json_edit.setTabChangesFocus(True)  # keyboard users can tab out of the editor
        self.json_edit.setPlaceholderText("{}")
        self.json_edit.setMinimumHeight(70)

        self.copies_spin = QSpinBox(self)
        self.copies_spin.setRange(1, MAX_COPIES)
        self.copies_spin.setGroupSeparatorShown(True)
        self.copies_spin.setToolTip("Submit the same task this many times")
        self.copies_spin.setPrefix("× ")

        self.submit_button = QPushButton("Submit", self)
        self.submit_button.setToolTip("Submit (Ctrl+Enter)")
        self.submit_button.clicked.connect(self.submit)

        self.message_label = QLabel(self)
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message_label.setSizePolicy(
            QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred
        )

        self._form_label = QLabel(self)
        form = QFormLayout()
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow("&Action", self.action_combo)
        form.addRow(self._form_label, self._form_rows)
        data_label = QLabel("&Data", self)
        data_label.setBuddy(self.json_edit)
        form.addRow(data_label, self.json_edit)
        self._form_label.setBuddy(self._form_rows)

        buttons = QHBoxLayout()
        buttons.addWidget(self.message_label, 1)
        buttons.addWidget(self.copies_spin)
        buttons.addWidget(self.submit_button)

        # When and in what order it runs (gui/when_options.py): sent with every submission.
        self.when = WhenOptions(self, clock=service.clock)

        layout = QVBoxLayout(self)
        layout.addLayout(form, 1)
        layout.addWidget(self.when)
        layout.addLayout(buttons)

        self.action_combo.currentTextChanged.connect(self._on_action_changed)
        self.text_edit.textEdited.connect(self._on_form_edited)
        self.numbers_edit.textEdited.connect(self._on_form_edited)
        self.json_edit.textChanged.connect(self._on_json_edited)

        self._on_action_changed(self.action_combo.currentText())

    # -- what would be submitted ---------------------------------------------------------------

    @property
    def action(self) -> str:
        return self.action_combo.currentText().strip()

    def parsed_data(self) -> dict[str, Any]:
        """The JSON editor's object; raises ValidationError when it is not one."""
        text = self.json_edit.toPlainText().strip()
        if not text:
            return {}
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None
        if not isinstance(value, dict):
            raise ValidationError("data must be a JSON object, e.g. {\"text\": \"hi\"}")
        return value

    def problem(self) -> str | None:
        """Why Submit is disabled, or None when the service would accept the task."""
        if self._form_error is not None:
            return self._form_error
        try:
            self._service.validate(self.action, self.parsed_data())
        except ValidationError as exc:
            return str(exc)
        return None

    # -- submitting -----------------------------------------------------------------------------

    def submit(self) -> None:
        if self.problem() is not None:
            self._revalidate()
            return
        copies = self.copies_spin.value()
        try:
            data = self.parsed_data()
            options = self.when.options()
            if copies == 1:
                ids = [self._service.submit(self.action, data, **options).id]
            else:
                ids = self._service.submit_many(self.action, data, copies, **options)
        except ServiceError as exc:
            self._show_message(str(exc), kind="error")
            return
        except Exception as exc:  # e.g. the disk is full: say so instead of crashing
            self._show_message(f"could not submit: {exc}", kind="error")
            return
        if len(ids) == 1:
            self._show_message(f"Submitted task {short_id(ids[0])}")
        else:
            self._show_message(f"Submitted {len(ids):,} tasks")
        self.submitted.emit(ids)

    # -- keeping form and JSON in sync ----------------------------------------------------------

    def _on_action_changed(self, text: str) -> None:
        action = text.strip()
        page = action if action in TEMPLATES else ""
        self._form_rows.setCurrentWidget(self._pages[page])
        self._form_label.setText(self._form_labels[page])
        self._form_rows.setVisible(bool(page) or bool(action))
        previous = self._last_action
        self._last_action = action
        # Switching actions replaces the data only when the user has not made it their own.
        try:
            data = self.parsed_data()
        except ValidationError:
            data = None
        untouched = data is not None and (not data or data == TEMPLATES.get(previous))
        if untouched and (action in TEMPLATES or previous in TEMPLATES):
            self._write_json(dict(TEMPLATES.get(action, {})))
        self._form_error = None
        self._load_form()
        self._revalidate()

    def _on_form_edited(self) -> None:
        if self._syncing:
            return
        action = self.action
        try:
            data = self.parsed_data()
        except ValidationError:
            data = {}  # the form wins over JSON the user left broken
        try:
            if action == "uppercase":
                data["text"] = self.text_edit.text()
            elif action == "sum":
                data["numbers"] = parse_numbers(self.numbers_edit.text())
            self._form_error = None
        except FormError as exc:
            self._form_error = str(exc)
            self._revalidate()
            return
        self._write_json(data)
        self._revalidate()

    def _on_json_edited(self) -> None:
        if self._syncing:
            return
        self._form_error = None  # the JSON is now what will be sent
        self._load_form()
        self._revalidate()

    def _write_json(self, data: dict[str, Any]) -> None:
        self._syncing = True
        try:
            self.json_edit.setPlainText(pretty_json(data))
        finally:
            self._syncing = False

    def _load_form(self) -> None:
        """Show the JSON's field in the form, when the JSON holds a usable one."""
        try:
            data = self.parsed_data()
        except ValidationError:
            return
        self._syncing = True
        try:
            if self.action == "uppercase":
                text = data.get("text", "")
                if isinstance(text, str) and text != self.text_edit.text():
                    self.text_edit.setText(text)
            elif self.action == "sum":
                numbers = data.get("numbers", [])
                shown = format_numbers(numbers) if isinstance(numbers, list) else None
                if shown is not None:
                    try:
                        same = parse_numbers(self.numbers_edit.text()) == numbers
                    except FormError:
                        same = False
                    if not same:  # keep the user's own spacing when the values agree
                        self.numbers_edit.setText(shown)
        finally:
            self._syncing = False

    def _revalidate(self) -> None:
        problem = self.problem()
        self.submit_button.setEnabled(problem is None)
        if problem is not None:
            self._show_message(problem, kind="error")
        else:  # an edit after a submission replaces its report with the hint
            self._show_message(HINT, kind="hint")

    def _show_message(self, text: str, *, kind: str = "done") -> None:
        """kind: "error" (why Submit is disabled), "done" (what was submitted) or "hint"."""
        self.message_label.setProperty("kind", kind)
        if kind == "error":
            color = STATUS_COLORS["failed"].name()
        elif kind == "done":
            color = STATUS_COLORS["completed"].darker(115).name()
        else:
            color = self.palette().color(QPalette.ColorRole.PlaceholderText).name()
        self.message_label.setStyleSheet(f"color: {color};")
        self.message_label.setText(text)
        self.message_label.setToolTip(text)
