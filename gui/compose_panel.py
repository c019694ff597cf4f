"""ComposePanel: pick an action, fill its form or its JSON data, submit one or many copies.

The picker lists every registered action, its description as tooltip. When the registry
accepts names no action has (they run the default action) the picker is editable, so any
other name can be typed; when it refuses them it is a plain pick-list.

Form and JSON are two tabs over the same data. The form is generated from the action's JSON
Schema (gui/schema_form.py); the JSON editor holds what will be submitted. Every edit of the
form writes its value into the JSON; every edit of the JSON is shown in the form. A form
field whose text cannot be converted (letters in a number) leaves the JSON as it was and
names the field instead. Every change re-validates with ``service.validate``, the same check
the API applies, so Submit is enabled exactly when the service would accept the task: the
reason it would not is shown next to the button, and each field's own problem beside it.

Switching actions loses nothing: the data of a registered action is kept as its draft while
another one is picked, and comes back with it; an action picked for the first time starts
from its schema's defaults. Data typed while the picker holds a name no action has is the
user's own, and the next action picked takes it over instead of replacing it (typing a name
passes through every prefix of it, so "su" must not throw away what was typed for "sum").

Layout: a QVBoxLayout of sections (the picker, the tabs, then the Submit row); ``add_section``
puts another group above the Submit row. Every submission reaches the service in ``_store``.

Threads: GUI thread only. ``service.submit`` (or ``submit_many`` for × N, one commit for all
copies) returns once the task is committed and durable, so the GUI thread waits for that group
commit: an fsync, a few milliseconds, longer only while another program holds the database
lock (up to the 5 s busy timeout). We accept the wait for a click, rather than hand the write
to a thread, because "Submitted" then means stored, as a 202 from the API does. When the write
fails (disk full, locked, damaged) nothing was stored; the message beside the button says so
and the status bar shows the problem (gui/database_status.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from itertools import pairwise
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.database_status import DatabaseStatus, Failed
from gui.formatting import pretty_json, short_id
from gui.schema_form import FormError, SchemaForm
from gui.status_style import STATUS_COLORS
from gui.when_options import WhenOptions
from service.actions import Action
from service.errors import ValidationError
from service.task_service import TaskService

log = logging.getLogger("taskdesk.gui")

MAX_COPIES = 10_000
HINT = "Ctrl+Enter submits"
FORM_TAB, JSON_TAB = 0, 1


def schema_defaults(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The data a new task of this schema starts with: each property's ``default``."""
    properties = schema.get("properties")
    if not isinstance(properties, Mapping):
        return {}
    return {name: sub["default"] for name, sub in properties.items()
            if isinstance(sub, Mapping) and "default" in sub}


class ComposePanel(QWidget):
    submitted = Signal(list)  # ids of the stored tasks

    def __init__(
        self, service: TaskService, database: DatabaseStatus, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self._service = service
        self._database = database
        self._syncing = False  # set while the panel writes into the JSON editor
        self._form_error: FormError | None = None
        # The registered action whose data the editors hold; None when the data is the
        # user's own, typed while the picker held a name no action has.
        self._owner: str | None = None
        self._drafts: dict[str, str] = {}  # action name → its JSON text while not picked
        self._form_action: Action | None = None  # whose schema the form shows
        self._reported_bug: str | None = None

        registry = service.registry
        self.accepts_any_name = registry.unknown == "accept"
        self.action_combo = QComboBox(self)
        self.action_combo.setEditable(self.accepts_any_name)
        for action in registry.actions():
            self.action_combo.addItem(action.name)
            self.action_combo.setItemData(self.action_combo.count() - 1, action.description,
                                          Qt.ItemDataRole.ToolTipRole)
        self.action_combo.setSizePolicy(
            QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed
        )
        if self.accepts_any_name:
            self.action_combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
            action_edit = self.action_combo.lineEdit()
            if action_edit is not None:
                action_edit.setPlaceholderText("action name")

        self.form = SchemaForm(self)
        self.json_edit = QPlainTextEdit(self)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.json_edit.setFont(mono)
        self.json_edit.setTabChangesFocus(True)  # keyboard users can tab out of the editor
        self.json_edit.setPlaceholderText("{}")
        self.tabs = QTabWidget(self)
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.form, "Form")
        self.tabs.addTab(self.json_edit, "JSON")
        self.tabs.setTabToolTip(FORM_TAB, "A form made from the action's schema")
        self.tabs.setTabToolTip(JSON_TAB, "The task's data as JSON: what will be submitted")
        self.tabs.setMinimumHeight(120)

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

        picker = QFormLayout()
        picker.setContentsMargins(0, 0, 0, 0)
        picker.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        picker.addRow("&Action", self.action_combo)

        buttons = QHBoxLayout()
        buttons.addWidget(self.message_label, 1)
        buttons.addWidget(self.copies_spin)
        buttons.addWidget(self.submit_button)

        # When and in what order it runs (gui/when_options.py): sent with every submission.
        self.when = WhenOptions(self, clock=service.clock)

        self.sections = QVBoxLayout(self)
        self.sections.setContentsMargins(0, 0, 0, 0)
        self.sections.addLayout(picker)
        self.sections.addWidget(self.tabs, 1)
        self.sections.addWidget(self.when)
        self.sections.addLayout(buttons)

        self.action_combo.currentTextChanged.connect(self._on_action_changed)
        self.form.changed.connect(self._on_form_edited)
        self.json_edit.textChanged.connect(self._on_json_edited)

        self._on_action_changed(self.action_combo.currentText())

    def add_section(self, widget: QWidget) -> None:
        """Show *widget* below the data, above the Submit row."""
        self.sections.insertWidget(self.sections.count() - 1, widget)

    def focus_chain(self) -> list[QWidget]:
        """The panel's inputs in Tab order (the form's change with the action)."""
        inputs: list[QWidget] = []
        if self._form_action is not None and self.form.has_fields():
            properties = self._form_action.schema.get("properties", {})
            for name in properties:
                row = self.form.row(name)
                if row is not None:
                    inputs += row.inputs()
        when = self.when
        return [self.action_combo, self.tabs.tabBar(), *inputs, self.json_edit,
                when.toggle, when.start_combo, when.priority_spin, when.after_list,
                when.add_button, self.copies_spin, self.submit_button]

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
        return self._check()[0]

    def _check(self) -> tuple[str | None, Mapping[str, str]]:
        """Why the task cannot be submitted, and the problems of single fields by path."""
        if self._form_error is not None:
            return str(self._form_error), self._form_error.problems
        try:
            data = self.parsed_data()
        except ValidationError as exc:
            return str(exc), {}
        try:
            self._service.validate(self.action, data)
        except ValidationError as exc:
            return str(exc), exc.fields
        except Exception as exc:
            # A plugin's check is foreign code, run on every keystroke: its bug must not
            # escape into Qt's event loop, nor fill the log at typing speed. Not through
            # DatabaseStatus: no database is involved, and a success there would clear the
            # status bar's report of a real fault.
            text = f"Could not check the data: {type(exc).__name__}: {exc}"
            if text != self._reported_bug:
                self._reported_bug = text
                log.error("checking data for action %r failed: %s", self.action,
                          type(exc).__name__, exc_info=exc)
            return text, {}
        return None, {}

    # -- submitting -----------------------------------------------------------------------------

    def submit(self) -> None:
        if self.problem() is not None:
            self._revalidate()
            return
        copies = self.copies_spin.value()
        action, data = self.action, self.parsed_data()  # problem() is None: it parses
        what = "submit the task" if copies == 1 else f"submit {copies:,} tasks"
        ids = self._database.call(what, lambda: self._store(action, data, copies))
        if isinstance(ids, Failed):
            # Beside the button rather than in a dialog: the form keeps what was typed, so
            # submitting again once the database is back is one more click.
            self._show_message(ids.explain().replace("\n\n", " "), kind="error")
            return
        if len(ids) == 1:
            self._show_message(f"Submitted task {short_id(ids[0])}")
        else:
            self._show_message(f"Submitted {len(ids):,} tasks")
        self.submitted.emit(ids)

    def _store(self, action: str, data: dict[str, Any], copies: int) -> list[str]:
        """Store the task(s) with the When options; the one place a submission reaches the
        service."""
        options = self.when.options()
        if copies == 1:
            return [self._service.submit(action, data, **options).id]
        return self._service.submit_many(action, data, copies, **options)

    # -- actions, drafts, and keeping form and JSON in step -------------------------------------

    def _on_action_changed(self, text: str) -> None:
        name = text.strip()
        action = self._service.registry.get(name)
        tip = action.description if action is not None else (
            "Any other name runs the default action" if name else "")
        self.action_combo.setToolTip(tip)
        if action is not None and self._owner != name:
            if self._owner is not None:
                self._drafts[self._owner] = self.json_edit.toPlainText()
                fresh = True
            else:  # the user's own data: kept, unless there is none to keep
                fresh = self._holds_no_data()
            if fresh:
                draft = self._drafts.pop(name, None)
                self._write_json_text(draft if draft is not None
                                      else pretty_json(schema_defaults(action.schema)))
            self._owner = name
        if action is not self._form_action:
            self._form_action = action
            self.form.set_schema(action.schema if action is not None else None)
            for before, after in pairwise(self.focus_chain()):
                QWidget.setTabOrder(before, after)
            self._form_error = None
            self._load_form()
        self._revalidate()

    def _holds_no_data(self) -> bool:
        try:
            return not self.parsed_data()
        except ValidationError:
            return False

    def _on_form_edited(self) -> None:
        try:
            data = self.form.value()
        except FormError as exc:
            self._form_error = exc  # the JSON keeps the last data the form could give
        else:
            self._form_error = None
            self._write_json_text(pretty_json(data))
        self._took_ownership()
        self._revalidate()

    def _on_json_edited(self) -> None:
        if self._syncing:
            return
        self._form_error = None  # the JSON is now what will be sent
        self._took_ownership()
        self._load_form()
        self._revalidate()

    def _took_ownership(self) -> None:
        """The user edited the data: it belongs to the action picked, if it is one."""
        self._owner = self.action if self._service.registry.get(self.action) else None

    def _write_json_text(self, text: str) -> None:
        self._syncing = True
        try:
            self.json_edit.setPlainText(text)
        finally:
            self._syncing = False

    def _load_form(self) -> None:
        """Show the JSON's data in the form, when the JSON holds an object."""
        try:
            data = self.parsed_data()
        except ValidationError:
            return  # the form keeps what it showed; the message says what is wrong
        self.form.set_value(data)

    def _revalidate(self) -> None:
        problem, fields = self._check()
        self.form.show_errors(fields)
        self.submit_button.setEnabled(problem is None)
        if problem is not None:
            self._show_message(problem, kind="error")
        else:  # an edit after a submission replaces its report with the hint
            self._show_message(HINT, kind="hint")

    def _show_message(self, text: str, *, kind: str = "done") -> None:
        """kind: "error" (why Submit is disabled, or why a submission was not stored), "done"
        (what was submitted) or "hint"."""
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
