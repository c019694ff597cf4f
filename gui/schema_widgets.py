"""The input widgets of a schema form, one editor class per kind of JSON Schema property.

Every editor has the same three operations: ``read()`` gives the value typed, ``UNSET`` for
an empty field, or raises ``FieldError`` when the text cannot be converted; ``write(value)``
shows a value as well as the editor can (it may raise TypeError, or show something else: the
form reads every written value back and shows it as JSON when it does not come back the same);
``clear()`` empties the field. ``edited`` fires on every change, programmatic ones included:
the form filters those out.
SchemaForm (gui/schema_form.py) picks an editor with ``make_editor`` and lays the rows out.

Numbers: a spin box needs bounds, so an integer gets a QSpinBox only when the schema gives a
minimum and a maximum that fit its 32 bits, a number a QDoubleSpinBox only when both are given
and below 1e15; anything else is a line edit that accepts only number characters. The spin
boxes (gui/optional_spin_boxes.py) can be empty, for "not set".
"""

from __future__ import annotations

import json
import math
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QRegularExpression, Qt, Signal
from PySide6.QtGui import QFontDatabase, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gui.optional_spin_boxes import IntegerSpinBox, NumberSpinBox
from gui.schema_values import (
    HUGE,
    INT32_MAX,
    INT32_MIN,
    MAX_DECIMALS,
    PARTIAL_INTEGER,
    PARTIAL_NUMBER,
    UNSET,
    Bounds,
    FieldError,
    Schema,
    choice_label,
    choices,
    field_kind,
    format_number,
    is_number,
    parse_scalar,
    read_number,
    same_json,
    scalar_text,
    schema_type,
)


class FieldEditor(QWidget):
    """The input widgets of one property; see the module docstring for the protocol."""

    edited = Signal()

    def __init__(self, schema: Schema, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.schema = schema
        self.inputs: list[QWidget] = []  # what takes focus, in tab order; [0] is the buddy
        self.box = QHBoxLayout(self)
        self.box.setContentsMargins(0, 0, 0, 0)

    def read(self) -> Any:
        raise NotImplementedError

    def write(self, value: Any) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def add(self, widget: QWidget, stretch: int = 0) -> None:
        self.box.addWidget(widget, stretch)
        self.inputs.append(widget)

    def _emit_edited(self, *_: object) -> None:
        self.edited.emit()

    def placeholder(self) -> str:
        examples = self.schema.get("examples")
        return choice_label(examples[0]) if isinstance(examples, list) and examples else ""


class LineEditor(FieldEditor):
    """A string; a path, with a "…" button; or a number a spin box cannot hold, taking only
    number characters. The path button opens a folder dialog for ``"x-path": "folder"``, a
    save dialog for ``"x-path": "save"``, an open-file dialog otherwise."""

    def __init__(self, schema: Schema, parent: QWidget | None = None) -> None:
        super().__init__(schema, parent)
        self.kind = field_kind(schema)
        self.line = QLineEdit(self)
        self.line.setPlaceholderText(self.placeholder())
        self.add(self.line, 1)
        if isinstance(schema.get("maxLength"), int) and schema["maxLength"] >= 0:
            self.line.setMaxLength(schema["maxLength"])
        if self.kind in ("integer", "number"):
            pattern = PARTIAL_INTEGER if self.kind == "integer" else PARTIAL_NUMBER
            validator = QRegularExpressionValidator(QRegularExpression(pattern), self.line)
            self.line.setValidator(validator)
        if self.kind == "path":
            self.folder = schema.get("x-path") == "folder"
            self.browse_button = QToolButton(self)
            self.browse_button.setText("…")
            self.browse_button.setAccessibleName(f"Choose a {'folder' if self.folder else 'file'}")
            self.browse_button.setToolTip(self.browse_button.accessibleName())
            self.add(self.browse_button)
            self.browse_button.clicked.connect(self.browse)
        self.line.textChanged.connect(self._emit_edited)

    def read(self) -> Any:
        if self.kind in ("integer", "number"):
            return read_number(self.line.text(), self.kind == "integer", Bounds.of(self.schema))
        return self.line.text() or UNSET

    def write(self, value: Any) -> None:
        self.line.setText(value if isinstance(value, str) else json.dumps(value))

    def clear(self) -> None:
        self.line.clear()

    def browse(self) -> None:
        start = self.line.text()
        if self.folder:
            path = QFileDialog.getExistingDirectory(self, "Choose a folder", start)
        elif self.schema.get("x-path") == "save":
            path, _ = QFileDialog.getSaveFileName(self, "Choose a file", start)
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose a file", start)
        if path:
            self.line.setText(path)


class SpinEditor(FieldEditor):
    """An integer or number with bounds a spin box can hold (see ``fits``)."""

    def __init__(self, schema: Schema, parent: QWidget | None = None) -> None:
        super().__init__(schema, parent)
        self.integer = schema_type(schema) == "integer"
        bounds = Bounds.of(schema)
        low, high = bounds.integers()
        if self.integer and low is not None and high is not None:
            self.spin: IntegerSpinBox | NumberSpinBox = IntegerSpinBox(low, high, self)
        else:
            self.spin = NumberSpinBox(bounds, self.step(schema, bounds), self)
        low_, high_ = self.spin.bounds.low, self.spin.bounds.high
        span = f"{format_number(low_ or 0)}–{format_number(high_ or 0)}"  # of the empty field
        self.spin.lineEdit().setPlaceholderText(self.placeholder() or span)
        self.spin.setMinimumWidth(self.spin.fontMetrics().horizontalAdvance("0") * 12)
        self.add(self.spin)
        self.box.addStretch(1)
        self.spin.textChanged.connect(self._emit_edited)

    def read(self) -> Any:
        return read_number(self.spin.cleanText(), self.integer, self.spin.bounds)

    def write(self, value: Any) -> None:
        self.spin.show_value(value)  # clamped when out of bounds: the form reads it back

    def clear(self) -> None:
        self.spin.unset()

    @staticmethod
    def step(schema: Schema, bounds: Bounds) -> float:
        """``multipleOf``, else a tenth of the range's order of magnitude, at most 1."""
        multiple = schema.get("multipleOf")
        if is_number(multiple) and multiple >= 10**-MAX_DECIMALS:
            return float(multiple)
        span = (bounds.high or 0) - (bounds.low or 0)
        return min(1.0, 10.0 ** (math.floor(math.log10(span)) - 1)) if span > 0 else 1.0

    @staticmethod
    def fits(schema: Schema) -> bool:
        bounds = Bounds.of(schema)
        if schema_type(schema) == "integer":
            low, high = bounds.integers()
            return low is not None and high is not None and INT32_MIN < low <= high <= INT32_MAX
        low_, high_ = bounds.low, bounds.high
        return low_ is not None and high_ is not None and -HUGE < low_ < high_ < HUGE


class ChoiceEditor(FieldEditor):
    """An enum: a combo box of its values, with an empty first choice unless required."""

    def __init__(self, schema: Schema, required: bool, parent: QWidget | None = None) -> None:
        super().__init__(schema, parent)
        self.values = choices(schema) or []
        self.combo = QComboBox(self)
        self.offset = 0 if required else 1
        self.combo.addItems([""] * self.offset + [choice_label(v) for v in self.values])
        self.combo.setPlaceholderText("choose…")
        self.add(self.combo)
        self.box.addStretch(1)
        self.clear()
        self.combo.currentIndexChanged.connect(self._emit_edited)

    def read(self) -> Any:
        index = self.combo.currentIndex() - self.offset
        return self.values[index] if index >= 0 else UNSET

    def write(self, value: Any) -> None:
        for index, option in enumerate(self.values):
            if same_json(option, value):
                self.combo.setCurrentIndex(index + self.offset)

    def clear(self) -> None:
        self.combo.setCurrentIndex(self.offset - 1)


class BoolEditor(FieldEditor):
    """A check box. Unchecked leaves an optional property out when that means the same as
    false (no ``default: true``); otherwise it is false, and "not set" is the partial state."""

    def __init__(self, schema: Schema, required: bool, parent: QWidget | None = None) -> None:
        super().__init__(schema, parent)
        self.check = QCheckBox(self)
        self.add(self.check)
        self.box.addStretch(1)
        self.unchecked_is_false = required or schema.get("default") is True
        self.check.toggled.connect(self._emit_edited)
        self.check.clicked.connect(lambda: self.check.setTristate(False))  # no way back to it

    def read(self) -> Any:
        state = self.check.checkState()
        if state == Qt.CheckState.Checked:
            return True
        unchecked = state == Qt.CheckState.Unchecked
        return False if unchecked and self.unchecked_is_false else UNSET

    def write(self, value: Any) -> None:
        if isinstance(value, bool):
            self.check.setTristate(False)
            self.check.setChecked(value)

    def clear(self) -> None:
        self.check.setTristate(self.unchecked_is_false)
        partial = Qt.CheckState.PartiallyChecked
        self.check.setCheckState(partial if self.unchecked_is_false else Qt.CheckState.Unchecked)


class ListEditor(FieldEditor):
    """An array of scalars: editable list items (typed per ``items``) with Add and Remove."""

    def __init__(self, schema: Schema, parent: QWidget | None = None) -> None:
        super().__init__(schema, parent)
        self.items: Schema = schema["items"]
        self.list = QListWidget(self)
        triggers = QAbstractItemView.EditTrigger
        self.list.setEditTriggers(
            triggers.DoubleClicked | triggers.EditKeyPressed | triggers.AnyKeyPressed
        )
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.setFixedHeight(self.list.fontMetrics().lineSpacing() * 4 + 12)
        self.add(self.list, 1)
        buttons = QVBoxLayout()
        self.box.addLayout(buttons)
        self.add_button = QPushButton("Add", self)
        self.remove_button = QPushButton("Remove", self)
        for button in (self.add_button, self.remove_button):
            buttons.addWidget(button)
            self.inputs.append(button)
        buttons.addStretch(1)
        self.add_button.clicked.connect(self.add_item)
        self.remove_button.clicked.connect(self.remove_selected)
        model = self.list.model()
        for signal in (model.rowsInserted, model.rowsRemoved, model.dataChanged):
            signal.connect(self._emit_edited)

    def read(self) -> Any:
        values = []
        for row in range(self.list.count()):
            try:
                values.append(parse_scalar(self.list.item(row).text(), self.items))
            except FieldError as exc:
                raise FieldError(f"item {row + 1}: {exc}") from None
        return values or UNSET

    def write(self, value: Any) -> None:
        self.list.clear()
        for item in value if isinstance(value, list) else []:
            self._append(scalar_text(item, self.items))

    def clear(self) -> None:
        self.list.clear()

    def add_item(self) -> None:
        item = self._append("")
        self.list.setCurrentItem(item, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.list.editItem(item)

    def remove_selected(self) -> None:
        for item in self.list.selectedItems():
            self.list.takeItem(self.list.row(item))

    def _append(self, text: str) -> QListWidgetItem:
        item = QListWidgetItem(text)
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
        self.list.addItem(item)
        return item


class JsonEditor(FieldEditor):
    """Any value as JSON text: objects, arrays of objects, oneOf, no type."""

    def __init__(self, schema: Schema, parent: QWidget | None = None) -> None:
        super().__init__(schema, parent)
        self.text = QPlainTextEdit(self)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.text.setTabChangesFocus(True)
        examples = {"object": "a JSON object, e.g. {}", "array": "a JSON array, e.g. []"}
        self.text.setPlaceholderText(examples.get(schema_type(schema) or "", "a JSON value"))
        self.text.setFixedHeight(self.text.fontMetrics().lineSpacing() * 4 + 12)
        self.add(self.text)
        self.text.textChanged.connect(self._emit_edited)

    def read(self) -> Any:
        text = self.text.toPlainText()
        if not text.strip():
            return UNSET
        try:
            return json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as exc:
            raise FieldError(
                f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
            ) from None

    def write(self, value: Any) -> None:
        self.text.setPlainText(json.dumps(value, ensure_ascii=False, indent=2))

    def clear(self) -> None:
        self.text.clear()


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not JSON", name, 0)


def make_editor(schema: Schema, required: bool, parent: QWidget | None = None) -> FieldEditor:
    kind = field_kind(schema)
    if kind in ("integer", "number") and SpinEditor.fits(schema):
        return SpinEditor(schema, parent)
    if kind in ("text", "path", "integer", "number"):
        return LineEditor(schema, parent)
    if kind == "enum":
        return ChoiceEditor(schema, required, parent)
    if kind == "boolean":
        return BoolEditor(schema, required, parent)
    return ListEditor(schema, parent) if kind == "list" else JsonEditor(schema, parent)
