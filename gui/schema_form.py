"""SchemaForm: a form generated from an action's JSON Schema for its ``data`` object.

One row per property, in the schema's order, with the input its schema asks for (see
gui/schema_widgets.py). The form and a JSON editor can show the same data side by side:

- ``set_schema(schema)`` builds the rows, each showing its ``default`` (so ``value()`` then
  gives the data a new task starts with);
- ``set_value(data)`` shows *data* exactly: a property it lacks is an empty field, a property
  the schema does not name is kept aside and given back by ``value()``, and a value its field
  cannot hold (a string in an integer field, 42 where the maximum is 9) turns that field into
  a small JSON editor until the user goes back to the form field;
- ``value()`` builds the data; an empty field is left out, so a required one left empty makes
  validation say it is required. An empty value ``set_value`` gave ("", [] or false) is kept
  until the user edits its field. Text that cannot be converted raises ``FormError``, whose
  ``problems`` can go straight to ``show_errors``;
- ``changed`` fires on the user's edits only, never while set_schema or set_value fill fields.

Keeping a JSON editor in step: on ``changed``, write ``value()`` into it (or, on FormError,
``show_errors(exc.problems)``); on the JSON editor's edits, ``set_value`` its object; after
validating the data, ``show_errors`` with the messages keyed by property or path.

Threads: GUI thread only.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from gui.schema_values import UNSET, FieldError, Schema, same_json
from gui.schema_widgets import JsonEditor, make_editor
from gui.status_style import STATUS_COLORS

NO_FORM = "No form for this action: edit its data as JSON"


class FormError(ValueError):
    """Fields whose text cannot be converted; ``problems`` maps each property to why."""

    def __init__(self, problems: dict[str, str], titles: Mapping[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{titles.get(n, n)}: {m}" for n, m in problems.items()))


def top_property(key: str) -> str:
    """The top-level property an error is about: "numbers" for "numbers[1]", "numbers.0",
    "/numbers/1" or "$.numbers"; "" for the whole object."""
    return re.split(r"[.\[/]", key.removeprefix("$").lstrip("./"), maxsplit=1)[0]


def _error_label(parent: QWidget) -> QLabel:
    label = QLabel(parent)
    label.setWordWrap(True)
    label.setStyleSheet(f"color: {STATUS_COLORS['failed'].name()};")
    label.hide()
    return label


def _is_empty(value: Any) -> bool:
    return value is False or (isinstance(value, str | list) and not value)


_CANNOT = object()  # an editor refused a value


class FieldRow(QWidget):
    """One property's cell: its editor, a JSON editor for a value the editor cannot hold, and
    the property's error message."""

    edited = Signal()

    def __init__(self, schema: Schema, required: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._loading = False  # set while set_schema or set_value write into the editors
        self._kept: Any = UNSET  # an empty value set_value gave, shown as an empty field
        self.editor = make_editor(schema, required, self)
        self.fallback = JsonEditor(schema, self)
        self.json_box = QWidget(self)
        note = QLabel("This value does not fit the form field: edit it as JSON.", self.json_box)
        note.setWordWrap(True)
        self.back_button = QPushButton("Use form field", self.json_box)
        self.back_button.setToolTip("Back to the form field (a value it cannot hold is cleared)")
        json_layout = QVBoxLayout(self.json_box)
        json_layout.setContentsMargins(0, 0, 0, 0)
        json_layout.addWidget(self.fallback)
        under = QHBoxLayout()
        under.addWidget(note, 1)
        under.addWidget(self.back_button)
        json_layout.addLayout(under)
        self.json_box.hide()
        self.error = _error_label(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        for widget in (self.editor, self.json_box, self.error):
            layout.addWidget(widget)
        self.editor.edited.connect(self._on_edited)
        self.fallback.edited.connect(self._on_edited)
        self.back_button.clicked.connect(self._back_to_field)

    @property
    def as_json(self) -> bool:
        return not self.json_box.isHidden()

    def inputs(self) -> list[QWidget]:
        return [*self.editor.inputs, *self.fallback.inputs, self.back_button]

    def read(self) -> Any:
        value = (self.fallback if self.as_json else self.editor).read()
        return self._kept if value is UNSET else value

    def write(self, value: Any) -> None:
        self._loading = True
        try:
            try:
                self.editor.write(value)
                shown = self.editor.read()
            except (TypeError, ValueError, OverflowError):
                shown = _CANNOT
            empty = shown is UNSET and _is_empty(value)
            self._kept = value if empty else UNSET
            fits = empty or same_json(shown, value)
            if not fits:
                self.editor.clear()
                self.fallback.write(value)
            self._show_json(not fits)
        finally:
            self._loading = False

    def clear(self) -> None:
        self._loading = True
        try:
            self._kept = UNSET
            self.editor.clear()
            self.fallback.clear()
            self._show_json(False)
        finally:
            self._loading = False

    def set_error(self, text: str) -> None:
        self.error.setText(text)
        self.error.setHidden(not text)

    def _show_json(self, on: bool) -> None:
        self.editor.setHidden(on)
        self.json_box.setHidden(not on)

    def _on_edited(self) -> None:
        if not self._loading:
            self._kept = UNSET
            self.edited.emit()

    def _back_to_field(self) -> None:
        try:
            value = self.fallback.read()
        except FieldError:
            value = UNSET
        if value is not UNSET:
            self.write(value)
        if value is UNSET or self.as_json:
            self.clear()
        self.editor.inputs[0].setFocus()
        self.edited.emit()


class SchemaForm(QWidget):
    """A form for an object schema's properties; see the module docstring."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: dict[str, FieldRow] = {}
        self._titles: dict[str, str] = {}
        self._extra: dict[str, Any] = {}  # properties the schema does not name
        self.top_error = _error_label(self)
        self.no_form = QLabel(NO_FORM, self)
        self.no_form.setWordWrap(True)
        self.no_form.setEnabled(False)  # greyed, like the compose panel's hints
        self.scroll_area = QScrollArea(self)
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        layout = QVBoxLayout(self)
        layout.addWidget(self.top_error)
        layout.addWidget(self.no_form)
        layout.addWidget(self.scroll_area, 1)
        layout.addStretch(0)  # takes the room when there is no form
        self.set_schema(None)

    def has_fields(self) -> bool:
        return bool(self._rows)

    def row(self, name: str) -> FieldRow | None:
        return self._rows.get(name)

    def field(self, name: str) -> QWidget | None:
        """The input showing property *name* (to focus it): its editor's main widget, or the
        JSON editor that stands in for it."""
        row = self._rows.get(name)
        if row is None:
            return None
        return row.fallback.text if row.as_json else row.editor.inputs[0]

    def set_schema(self, schema: Mapping[str, Any] | None) -> None:
        old = self.scroll_area.takeWidget()
        if old is not None:
            old.deleteLater()  # not at once: this may run inside one of its signals
        self._rows, self._titles, self._extra = {}, {}, {}
        self.top_error.hide()
        schema = schema if isinstance(schema, Mapping) else {}
        properties = schema.get("properties")
        usable = schema.get("type", "object") == "object" and isinstance(properties, Mapping)
        self.no_form.setHidden(usable and bool(properties))
        self.scroll_area.setHidden(not self.no_form.isHidden())
        if not self.no_form.isHidden():
            return
        assert isinstance(properties, Mapping)
        required = schema.get("required")
        required = set(required) if isinstance(required, list) else set()
        content = QWidget()
        form = QFormLayout()
        column = QVBoxLayout(content)
        column.setContentsMargins(0, 0, 0, 0)
        column.addLayout(form)
        column.addStretch(1)  # spare height goes below the rows, not between them
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        for name, sub in properties.items():
            sub = sub if isinstance(sub, Mapping) else {}  # `true` allows anything: JSON
            row = FieldRow(sub, name in required, content)
            form.addRow(self._label(name, sub, name in required, row), row)
            if "default" in sub:
                row.write(sub["default"])
            else:
                row.clear()
            row.edited.connect(self.changed)
            self._rows[name] = row
        self.scroll_area.setWidget(content)
        inputs = [w for row in self._rows.values() for w in row.inputs()]
        for first, second in itertools.pairwise(inputs):
            QWidget.setTabOrder(first, second)

    def _label(self, name: str, schema: Schema, required: bool, row: FieldRow) -> QLabel:
        title = schema.get("title")
        title = title if isinstance(title, str) and title else name
        self._titles[name] = title
        label = QLabel(title.replace("&", "&&") + (" *" if required else ""), row.parentWidget())
        main = row.editor.inputs[0]
        label.setBuddy(main)
        description = schema.get("description")
        description = description if isinstance(description, str) else ""
        tip = "\n".join(t for t in ("Required" if required else "", description) if t)
        label.setToolTip(tip)
        main.setAccessibleName(f"{title} (required)" if required else title)
        label.setAccessibleName(main.accessibleName())
        if description:
            main.setAccessibleDescription(description)
            for widget in (main, row.fallback.text):
                widget.setToolTip(description)
        return label

    def value(self) -> dict[str, Any]:
        """The data the fields hold, then the properties the schema does not name; raises
        FormError when a field's text cannot be converted."""
        data: dict[str, Any] = {}
        problems: dict[str, str] = {}
        for name, row in self._rows.items():
            try:
                value = row.read()
            except FieldError as exc:
                problems[name] = str(exc)
                continue
            if value is not UNSET:
                data[name] = value
        if problems:
            raise FormError(problems, self._titles)
        return data | self._extra

    def set_value(self, data: Mapping[str, Any]) -> None:
        self._extra = {k: v for k, v in data.items() if k not in self._rows}
        for name, row in self._rows.items():
            if name in data:
                row.write(data[name])
            else:
                row.clear()

    def show_errors(self, errors: Mapping[str, str]) -> None:
        """Show each message beside its property's field (the key is the property or a path
        into it, e.g. "numbers[1]"); "" or an unknown property goes above the form."""
        by_row: dict[str, list[str]] = {}
        top: list[str] = []
        for key, message in errors.items():
            name = key if key in self._rows else top_property(key)
            if name in self._rows:
                by_row.setdefault(name, []).append(message if key == name else f"{key}: {message}")
            else:
                top.append(f"{key}: {message}" if key else message)
        for name, row in self._rows.items():
            row.set_error("\n".join(by_row.get(name, [])))
        self.top_error.setText("\n".join(top))
        self.top_error.setHidden(not top)
