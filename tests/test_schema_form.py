# pytest-qt's QtBot key and mouse helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
"""SchemaForm: widgets per schema type, value round trips, unset fields, errors, signals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import shiboken6
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)
from pytestqt.qtbot import QtBot

from gui.schema_form import NO_FORM, FieldRow, FormError, SchemaForm, top_property
from gui.schema_values import Bounds, same_json
from gui.schema_widgets import ListEditor
from gui.status_style import STATUS_COLORS

UPPERCASE: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "title": "Text", "description": "The text to upper-case"}
    },
    "additionalProperties": True,
}
SUM: dict[str, Any] = {
    "type": "object",
    "properties": {
        "numbers": {"type": "array", "title": "Numbers", "items": {"type": "number"},
                    "description": "The numbers to add"}
    },
}
ARCHIVE: dict[str, Any] = {
    "type": "object",
    "required": ["folder", "output"],
    "properties": {
        "folder": {"type": "string", "title": "Folder", "format": "path"},
        "output": {"type": "string", "title": "Archive file"},
        "level": {"type": "integer", "minimum": 1, "maximum": 9, "default": 6},
        "mode": {"enum": ["fast", "small"]},
        "verbose": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "extra": {"type": "object"},
    },
}


def one_field(schema: dict[str, Any], required: bool = False) -> dict[str, Any]:
    return {"type": "object", "properties": {"x": schema}, "required": ["x"] if required else []}


@pytest.fixture
def form(qtbot: QtBot) -> SchemaForm:
    form = SchemaForm()
    qtbot.addWidget(form)
    form.resize(520, 480)
    form.show()
    qtbot.waitExposed(form)
    return form


def row(form: SchemaForm, name: str) -> FieldRow:
    found = form.row(name)
    assert found is not None
    return found


def list_editor(form: SchemaForm, name: str) -> ListEditor:
    editor = row(form, name).editor
    assert isinstance(editor, ListEditor)
    return editor


def field(form: SchemaForm, name: str) -> Any:
    widget = form.field(name)
    assert widget is not None
    return widget


def row_labels(form: SchemaForm) -> list[QLabel]:
    rows = form.scroll_area.widget()
    assert rows is not None
    return [label for label in rows.findChildren(QLabel) if label.buddy() is not None]


def clear_and_type(qtbot: QtBot, widget: QWidget, text: str) -> None:
    widget.setFocus()
    qtbot.keyClick(widget, Qt.Key.Key_A, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(widget, Qt.Key.Key_Delete)
    if text:
        qtbot.keyClicks(widget, text)


# -- widgets ------------------------------------------------------------------------------------


def test_archive_schema_gets_a_widget_per_type(form: SchemaForm) -> None:
    form.set_schema(ARCHIVE)
    assert form.has_fields()
    kinds = {
        "folder": QLineEdit, "output": QLineEdit, "level": QSpinBox, "mode": QComboBox,
        "verbose": QCheckBox, "tags": QListWidget, "extra": QPlainTextEdit,
    }
    for name, kind in kinds.items():
        assert isinstance(field(form, name), kind), name
    assert row(form, "folder").editor.inputs[1].accessibleName() == "Choose a file"
    assert len(row(form, "output").editor.inputs) == 1  # no "…" without format: path


@pytest.mark.parametrize(
    ("schema", "widget"),
    [
        ({"type": "number", "minimum": 0, "maximum": 1}, QDoubleSpinBox),
        ({"type": "integer", "minimum": -5, "maximum": 5}, QSpinBox),
        ({"type": ["integer", "null"], "minimum": 0, "maximum": 5}, QSpinBox),
        ({"type": "integer"}, QLineEdit),  # unbounded: a spin box would cap it
        ({"type": "integer", "minimum": 0}, QLineEdit),
        ({"type": "integer", "minimum": 0, "maximum": 2**31}, QLineEdit),  # beyond 32 bits
        ({"type": "integer", "minimum": -(2**31), "maximum": 0}, QLineEdit),  # no room to empty
        ({"type": "number"}, QLineEdit),
        ({"type": "number", "minimum": 0, "maximum": 1e20}, QLineEdit),  # huge
        ({"enum": [1, 2, 3]}, QComboBox),
        ({"type": "string", "enum": ["a", "b"]}, QComboBox),
        ({"const": "only"}, QComboBox),
        ({"type": "array", "items": {"type": "integer"}}, QListWidget),
        ({"type": "array", "items": {"enum": ["x", "y"]}}, QListWidget),
        ({"type": "array", "items": {"type": "object"}}, QPlainTextEdit),
        ({"type": "array", "items": {"type": "string", "oneOf": [{"format": "uri"}]}},
         QPlainTextEdit),
        ({"type": "array"}, QPlainTextEdit),
        ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, QPlainTextEdit),
        ({"type": "string", "anyOf": [{"maxLength": 2}]}, QPlainTextEdit),
        ({}, QPlainTextEdit),
        ({"type": ["string", "integer"]}, QPlainTextEdit),
    ],
)
def test_schema_picks_the_widget(form: SchemaForm, schema: dict[str, Any], widget: type) -> None:
    form.set_schema(one_field(schema))
    assert isinstance(field(form, "x"), widget)


@pytest.mark.parametrize(
    "schema", [None, {"type": "string"}, {"type": "object"}, {"type": "object", "properties": {}},
               {"type": "array", "properties": {"a": {}}}, {"properties": []}],
)
def test_no_form_for_schemas_that_are_not_objects_with_properties(
    form: SchemaForm, schema: Any
) -> None:
    form.set_schema(ARCHIVE)
    form.set_schema(schema)
    assert not form.has_fields()
    assert form.no_form.text() == NO_FORM and form.no_form.isVisible()
    assert not form.scroll_area.isVisible()
    form.set_value({"anything": [1, {"a": None}]})  # the JSON editor's data passes through
    assert form.value() == {"anything": [1, {"a": None}]}


def test_bounds_defaults_and_hints(form: SchemaForm) -> None:
    form.set_schema({"type": "object", "properties": {
        "level": ARCHIVE["properties"]["level"],
        "open": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
        "ratio": {"type": "number", "minimum": 0, "maximum": 1, "multipleOf": 0.05,
                  "default": 0.25},
        "name": {"type": "string", "maxLength": 5, "examples": ["hello"], "default": "abc"},
        "mode": {"enum": ["fast", "small"], "default": "small"},
        "on": {"type": "boolean", "default": True},
        "tags": {"type": "array", "items": {"type": "string"}, "default": ["a", "b"]},
        "extra": {"type": "object", "default": {"k": [1]}},
    }})
    level, open_, ratio = field(form, "level"), field(form, "open"), field(form, "ratio")
    assert (level.text(), level.maximum()) == ("6", 9)
    assert (open_.text(), open_.minimum() + 1, open_.maximum()) == ("", 1, 9)
    assert (ratio.text(), ratio.singleStep()) == ("0.25", 0.05)
    name = field(form, "name")
    assert (name.text(), name.maxLength(), name.placeholderText()) == ("abc", 5, "hello")
    assert field(form, "mode").currentText() == "small"
    assert field(form, "on").isChecked()
    assert [field(form, "tags").item(i).text() for i in range(2)] == ["a", "b"]
    assert form.value() == {"level": 6, "ratio": 0.25, "name": "abc", "mode": "small",
                            "on": True, "tags": ["a", "b"], "extra": {"k": [1]}}
    form.set_value({"level": 9, "ratio": 1})
    assert (level.text(), ratio.text()) == ("9", "1")
    form.set_value({"level": 10, "open": 10, "ratio": 1.01})  # out of bounds: shown as JSON
    assert all(isinstance(field(form, n), QPlainTextEdit) for n in ("level", "open", "ratio"))
    assert form.value() == {"level": 10, "open": 10, "ratio": 1.01}


def test_required_marks_tooltips_and_buddies(form: SchemaForm) -> None:
    form.set_schema(ARCHIVE)
    labels = {label.buddy(): label for label in row_labels(form)}
    folder = labels[field(form, "folder")]
    assert folder.text() == "Folder *"
    assert folder.accessibleName() == field(form, "folder").accessibleName() == "Folder (required)"
    assert folder.toolTip() == "Required"
    assert labels[field(form, "output")].text() == "Archive file *"
    assert labels[field(form, "level")].text() == "level"  # the name when there is no title
    assert field(form, "level").accessibleName() == "level"
    assert len(labels) == len(ARCHIVE["properties"])

    form.set_schema(UPPERCASE)
    [text_label] = row_labels(form)
    assert text_label.text() == "Text"
    assert text_label.toolTip() == field(form, "text").toolTip() == "The text to upper-case"
    form.set_schema(SUM)
    assert field(form, "numbers").toolTip() == "The numbers to add"


def test_tab_order_follows_the_rows(form: SchemaForm, qtbot: QtBot) -> None:
    form.set_schema(ARCHIVE)
    form.activateWindow()
    qtbot.waitUntil(form.isActiveWindow)
    field(form, "folder").setFocus()
    seen = []
    for _ in range(9):
        seen.append(QApplication.focusWidget())
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    seen.append(QApplication.focusWidget())
    tags = list_editor(form, "tags")
    assert seen == [
        field(form, "folder"), row(form, "folder").editor.inputs[1], field(form, "output"),
        field(form, "level"), field(form, "mode"), field(form, "verbose"), tags.list,
        tags.add_button, tags.remove_button, field(form, "extra"),
    ]


# -- values -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"folder": "/home/me/photos", "output": "a.tar", "level": 1, "mode": "fast",
         "verbose": True, "tags": ["x", "", "y z"], "extra": {"nested": [1, {"b": None}]}},
        {},  # every field omitted
        {"level": 9, "mode": "small"},
        {"output": "", "verbose": False, "tags": []},  # explicit empties are kept
        {"folder": "f", "unknown": {"deep": [1, 2]}, "also": None},  # extra properties
    ],
)
def test_value_round_trips_set_value(form: SchemaForm, data: dict[str, Any]) -> None:
    form.set_schema(ARCHIVE)
    form.set_value(data)
    assert form.value() == data
    assert all(not row(form, n).as_json for n in ARCHIVE["properties"])


def test_fields_show_what_set_value_gives(form: SchemaForm) -> None:
    form.set_schema(ARCHIVE)
    form.set_value({"folder": "/f", "level": 3, "mode": "small", "verbose": True,
                    "tags": ["a", "b"], "extra": {"k": 1}})
    assert field(form, "folder").text() == "/f"
    assert field(form, "output").text() == ""
    assert field(form, "level").text() == "3"
    assert field(form, "mode").currentText() == "small"
    assert field(form, "verbose").isChecked()
    assert [field(form, "tags").item(i).text() for i in range(field(form, "tags").count())] == [
        "a", "b"]
    assert '"k": 1' in field(form, "extra").toPlainText()
    form.set_value({})
    assert field(form, "level").text() == "" and field(form, "mode").currentText() == ""
    assert field(form, "tags").count() == 0 and not field(form, "verbose").isChecked()


@pytest.mark.parametrize(
    ("schema", "values"),
    [
        ({"type": "string"}, ["", "é ü — 😀", " spaced "]),
        ({"type": "integer", "minimum": -3, "maximum": 3}, [-3, 0, 3]),
        ({"type": "integer"}, [-(2**40), 0, 2**63]),
        ({"type": "number", "minimum": -1, "maximum": 1}, [-1, -0.5, 0, 0.123456789, 1]),
        ({"type": "number"}, [1e300, -2.5, 0.1, 7]),
        ({"enum": [1, "1", True, None, {"a": 1}]}, [1, "1", True, None, {"a": 1}]),
        ({"type": "boolean"}, [True, False]),
        ({"type": "array", "items": {"type": "number"}}, [[1, 2.5, -3e-7], []]),
        ({"type": "array", "items": {"type": "boolean"}}, [[True, False]]),
        ({"type": "array", "items": {"enum": ["a", 2]}}, [["a", 2, 2]]),
        ({"oneOf": [{"type": "string"}]}, ["s", [1], None]),
    ],
)
def test_each_type_round_trips_and_stays_a_field(
    form: SchemaForm, schema: dict[str, Any], values: list[Any]
) -> None:
    form.set_schema(one_field(schema))
    for value in values:
        form.set_value({"x": value})
        assert form.value() == {"x": value}
        assert type(form.value()["x"]) is type(value) or isinstance(value, float)
        assert not row(form, "x").as_json, value


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ({"type": "integer", "minimum": 1, "maximum": 9}, "abc"),
        ({"type": "integer", "minimum": 1, "maximum": 9}, 3.5),
        ({"type": "integer", "minimum": 1, "maximum": 9}, True),
        ({"type": "integer", "minimum": 1, "maximum": 9}, 0),
        ({"type": "integer"}, "12"),
        ({"type": "number", "minimum": 0, "maximum": 1}, 1e-12),  # more decimals than shown
        ({"type": "number"}, [1]),
        ({"type": "string"}, 5),
        ({"type": "string"}, None),
        ({"type": "string", "maxLength": 3}, "abcd"),
        ({"enum": ["fast", "small"]}, "medium"),
        ({"enum": [1, 2]}, True),
        ({"type": "boolean"}, "yes"),
        ({"type": "array", "items": {"type": "string"}}, ["a", 1]),
        ({"type": "array", "items": {"type": "number"}}, [1, "2"]),
        ({"type": "array", "items": {"type": "string"}}, "not a list"),
    ],
)
def test_a_value_the_field_cannot_show_is_edited_as_json(
    form: SchemaForm, schema: dict[str, Any], value: Any
) -> None:
    form.set_schema(one_field(schema))
    form.set_value({"x": value})
    assert isinstance(field(form, "x"), QPlainTextEdit)
    assert row(form, "x").json_box.isVisible() and not row(form, "x").editor.isVisible()
    assert form.value() == {"x": value}
    form.set_value({})  # a value the field can show brings the field back
    assert not row(form, "x").as_json and form.value() == {}


def test_nan_is_shown_but_not_sent(form: SchemaForm) -> None:
    form.set_schema(one_field({"type": "number", "title": "Ratio"}))
    form.set_value({"x": float("nan")})  # Python's json module reads NaN; JSON has none
    assert field(form, "x").toPlainText() == "NaN"
    with pytest.raises(FormError, match=r"^Ratio: invalid JSON .*NaN is not JSON"):
        form.value()


def test_back_from_json_to_the_field(form: SchemaForm, qtbot: QtBot) -> None:
    form.set_schema(ARCHIVE)
    form.set_value({"level": "high"})
    fallback = field(form, "level")
    clear_and_type(qtbot, fallback, "4")  # now a value the spin box can hold
    assert form.value() == {"level": 4}
    with qtbot.waitSignal(form.changed):
        qtbot.mouseClick(row(form, "level").back_button, Qt.MouseButton.LeftButton)
    assert isinstance(field(form, "level"), QSpinBox) and field(form, "level").text() == "4"
    assert form.value() == {"level": 4}
    form.set_value({"level": 99})
    qtbot.mouseClick(row(form, "level").back_button, Qt.MouseButton.LeftButton)
    assert form.value() == {}  # the user chose the field over a value it cannot hold


def test_empty_optional_fields_are_omitted(form: SchemaForm, qtbot: QtBot) -> None:
    form.set_schema(ARCHIVE)
    form.set_value({"output": "a", "level": 5, "mode": "fast", "verbose": False,
                    "tags": ["t"], "extra": {"a": 1}})
    clear_and_type(qtbot, field(form, "output"), "")
    clear_and_type(qtbot, field(form, "level"), "")
    assert field(form, "level").text() == ""
    clear_and_type(qtbot, field(form, "extra"), "")
    field(form, "mode").setFocus()
    qtbot.keyClick(field(form, "mode"), Qt.Key.Key_Home)  # the empty choice
    qtbot.mouseClick(field(form, "verbose"), Qt.MouseButton.LeftButton)
    qtbot.mouseClick(field(form, "verbose"), Qt.MouseButton.LeftButton)  # on, then off
    tags = list_editor(form, "tags")
    tags.list.setCurrentRow(0)
    qtbot.mouseClick(tags.remove_button, Qt.MouseButton.LeftButton)
    assert form.value() == {}
    clear_and_type(qtbot, field(form, "output"), "out")
    assert form.value() == {"output": "out"}


def test_spin_box_steps_into_and_out_of_the_empty_state(form: SchemaForm, qtbot: QtBot) -> None:
    form.set_schema({"type": "object", "properties": {
        "level": {"type": "integer", "minimum": 1, "maximum": 9},
        "ratio": {"type": "number", "minimum": 0.5, "maximum": 3},
    }})
    level, ratio = field(form, "level"), field(form, "ratio")
    assert form.value() == {}
    qtbot.keyClick(level, Qt.Key.Key_Up)
    assert level.text() == "1" and form.value() == {"level": 1}
    qtbot.keyClick(level, Qt.Key.Key_Down)
    assert level.text() == "" and form.value() == {}
    assert ratio.singleStep() == 0.1  # a tenth of the range's order of magnitude
    qtbot.keyClick(ratio, Qt.Key.Key_Up)
    qtbot.keyClick(ratio, Qt.Key.Key_Up)
    assert form.value() == {"ratio": 0.6}
    clear_and_type(qtbot, ratio, "2.95")
    for _ in range(2):
        qtbot.keyClick(ratio, Qt.Key.Key_Up)
    assert form.value() == {"ratio": 3}  # stops at the maximum
    clear_and_type(qtbot, ratio, "0.55")
    qtbot.keyClick(ratio, Qt.Key.Key_Down)
    assert form.value() == {"ratio": 0.5}  # not below the minimum: to it
    qtbot.keyClick(ratio, Qt.Key.Key_Down)
    assert ratio.text() == "" and form.value() == {}


def test_booleans_omit_unchecked_only_when_that_means_false(
    form: SchemaForm, qtbot: QtBot
) -> None:
    form.set_schema({"type": "object", "required": ["must"], "properties": {
        "plain": {"type": "boolean"},
        "on": {"type": "boolean", "default": True},
        "must": {"type": "boolean"},
    }})
    assert form.value() == {"on": True}
    must = field(form, "must")
    assert must.checkState() == Qt.CheckState.PartiallyChecked  # required, not answered yet
    qtbot.mouseClick(field(form, "on"), Qt.MouseButton.LeftButton)
    qtbot.mouseClick(must, Qt.MouseButton.LeftButton)
    assert form.value() == {"on": False, "must": True}
    qtbot.mouseClick(must, Qt.MouseButton.LeftButton)
    assert must.checkState() == Qt.CheckState.Unchecked
    assert form.value() == {"on": False, "must": False}
    form.set_value({})
    assert form.value() == {}
    assert field(form, "on").checkState() == Qt.CheckState.PartiallyChecked


# -- conversion problems ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "typed", "message"),
    [
        ({"type": "integer"}, "-", "“-” is not a whole number"),
        ({"type": "number"}, "1e", "“1e” is not a number"),
        ({"type": "integer", "minimum": 1, "maximum": 9, "title": "Level"}, "0",
         "0 is out of range: must be ≥ 1 and ≤ 9"),
        ({"type": "number", "minimum": 0, "maximum": 1}, "-", "“-” is not a number"),
        ({"type": "object"}, '{"a": ', "invalid JSON at line 1, column 7"),
        ({"type": "object"}, "NaN", "NaN is not JSON"),
    ],
)
def test_text_that_cannot_be_converted_raises_form_error_naming_the_field(
    form: SchemaForm, qtbot: QtBot, schema: dict[str, Any], typed: str, message: str
) -> None:
    form.set_schema({"type": "object", "properties": {"ok": {"type": "string"}, "x": schema}})
    form.set_value({"ok": "fine"})
    clear_and_type(qtbot, field(form, "x"), typed)
    with pytest.raises(FormError) as caught:
        form.value()
    title = schema.get("title", "x")
    assert str(caught.value).startswith(f"{title}: ")
    assert message in str(caught.value)
    assert list(caught.value.problems) == ["x"] and message in caught.value.problems["x"]


def test_line_edits_refuse_letters_in_numbers(form: SchemaForm, qtbot: QtBot) -> None:
    form.set_schema(one_field({"type": "integer"}))
    qtbot.keyClicks(field(form, "x"), "1a2b")
    assert field(form, "x").text() == "12" and form.value() == {"x": 12}


@pytest.mark.parametrize(
    ("items", "typed", "message"),
    [
        ({"type": "number"}, ["1", "abc"], "item 2: “abc” is not a number"),
        ({"type": "integer"}, ["1.5"], "item 1: “1.5” is not a whole number"),
        ({"type": "boolean"}, ["yes"], "item 1: “yes” is not true or false"),
        ({"enum": ["a", "b"]}, ["c"], "item 1: “c” is not one of a, b"),
    ],
)
def test_list_items_that_cannot_be_converted_raise_form_error(
    form: SchemaForm, qtbot: QtBot, items: dict[str, Any], typed: list[str], message: str
) -> None:
    form.set_schema(one_field({"type": "array", "items": items, "title": "Items"}))
    for text in typed:
        add_list_item(form, qtbot, "x", text)
    with pytest.raises(FormError, match=f"^Items: {re.escape(message)}$"):
        form.value()


def add_list_item(form: SchemaForm, qtbot: QtBot, name: str, text: str) -> None:
    editor = list_editor(form, name)
    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    type_into_item(qtbot, editor.list, text)  # Add opened the new item's editor


def type_into_item(qtbot: QtBot, view: QListWidget, text: str) -> None:
    line = view.viewport().findChild(QLineEdit)
    assert line is not None and view.state() == QListWidget.State.EditingState
    line.selectAll()
    qtbot.keyClicks(line, text)
    qtbot.keyClick(line, Qt.Key.Key_Return)  # commits from the event loop
    qtbot.waitUntil(lambda: view.viewport().findChild(QLineEdit) is None)


# -- the list editor and the path button ----------------------------------------------------


def test_list_editor_adds_and_removes_items(form: SchemaForm, qtbot: QtBot) -> None:
    form.set_schema(SUM)
    for text in ("1", "2.5", "-3"):
        add_list_item(form, qtbot, "numbers", text)
    assert form.value() == {"numbers": [1, 2.5, -3]}
    editor = list_editor(form, "numbers")
    second = editor.list.visualItemRect(editor.list.item(1)).center()
    qtbot.mouseClick(editor.list.viewport(), Qt.MouseButton.LeftButton, pos=second)
    with qtbot.waitSignal(form.changed):
        qtbot.mouseClick(editor.remove_button, Qt.MouseButton.LeftButton)
    assert form.value() == {"numbers": [1, -3]}
    editor.list.setCurrentRow(0)
    qtbot.keyClick(editor.list, Qt.Key.Key_F2)  # edit an item in place
    type_into_item(qtbot, editor.list, "10")
    assert form.value() == {"numbers": [10, -3]}


@pytest.mark.parametrize(
    ("hint", "dialog", "answer"),
    [
        (None, "getOpenFileName", ("/data/in.txt", "All files (*)")),
        ("folder", "getExistingDirectory", "/data/photos"),
        ("save", "getSaveFileName", ("/data/out.zip", "")),
    ],
)
def test_path_button_opens_a_file_dialog(
    form: SchemaForm, qtbot: QtBot, monkeypatch: pytest.MonkeyPatch,
    hint: str | None, dialog: str, answer: Any,
) -> None:
    asked: list[tuple[Any, ...]] = []

    def fake(*args: Any) -> Any:
        asked.append(args)
        return answer

    for name in ("getOpenFileName", "getExistingDirectory", "getSaveFileName"):
        monkeypatch.setattr(QFileDialog, name, fake if name == dialog else None)
    schema = {"type": "string", "format": "path", **({"x-path": hint} if hint else {})}
    form.set_schema(one_field(schema))
    form.set_value({"x": "/data/old"})
    button = row(form, "x").editor.inputs[1]
    with qtbot.waitSignal(form.changed):
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    path = answer if isinstance(answer, str) else answer[0]
    assert field(form, "x").text() == path and form.value() == {"x": path}
    assert asked[0][2] == "/data/old"  # the dialog starts from the current path

    monkeypatch.setattr(QFileDialog, dialog, lambda *a: "" if isinstance(answer, str) else ("", ""))
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # cancelled: the path stays
    assert form.value() == {"x": path}


# -- errors ---------------------------------------------------------------------------------


def test_same_json_and_bounds() -> None:
    assert same_json(2, 2.0) and same_json([1, {"a": None}], [1.0, {"a": None}])
    assert not same_json(True, 1) and not same_json("1", 1) and not same_json(0, False)
    assert not same_json({"a": 1}, {"a": 1, "b": 2}) and not same_json([1], [1, 1])
    bounds = Bounds.of({"minimum": 0, "exclusiveMinimum": 0, "maximum": 10.5})
    assert (bounds.admits(0), bounds.admits(1e-9), bounds.admits(10.5)) == (False, True, True)
    assert bounds.integers() == (1, 10)
    assert bounds.describe() == "must be > 0 and ≤ 10.5"
    assert Bounds.of({"minimum": 2, "exclusiveMinimum": 1}).describe() == "must be ≥ 2"


def test_top_property_of_error_paths() -> None:
    assert [top_property(k) for k in (
        "numbers", "numbers[1]", "numbers.0", "/numbers/1", "$.numbers[0]", "", "a.b.c"
    )] == ["numbers", "numbers", "numbers", "numbers", "numbers", "", "a"]


def test_show_errors_beside_fields_and_clear_them(form: SchemaForm) -> None:
    form.set_schema(ARCHIVE)
    form.show_errors({
        "folder": "'folder' is a required property",
        "tags[1]": "1 is not of type 'string'",
        "tags": "too many",
        "": "the whole object is wrong",
        "unknown": "not allowed",
    })
    red = STATUS_COLORS["failed"].name()
    folder_error = row(form, "folder").error
    assert folder_error.isVisible() and folder_error.text() == "'folder' is a required property"
    assert red in folder_error.styleSheet()
    assert row(form, "tags").error.text() == "tags[1]: 1 is not of type 'string'\ntoo many"
    assert not row(form, "level").error.isVisible()
    assert form.top_error.isVisible() and red in form.top_error.styleSheet()
    assert form.top_error.text() == "the whole object is wrong\nunknown: not allowed"
    # The message sits in the field's row, under the field.
    folder_box = folder_error.geometry()
    assert folder_box.top() >= field(form, "folder").geometry().bottom()
    form.show_errors({"level": "must be at most 9"})
    assert not folder_error.isVisible() and not row(form, "tags").error.isVisible()
    assert row(form, "level").error.text() == "must be at most 9"
    assert not form.top_error.isVisible()
    form.show_errors({})
    assert not row(form, "level").error.isVisible()


def test_form_error_problems_feed_show_errors(form: SchemaForm, qtbot: QtBot) -> None:
    form.set_schema(ARCHIVE)
    clear_and_type(qtbot, field(form, "extra"), "{")
    with pytest.raises(FormError) as caught:
        form.value()
    form.show_errors(caught.value.problems)
    assert row(form, "extra").error.text().startswith("invalid JSON")


# -- signals --------------------------------------------------------------------------------


def test_changed_fires_on_user_edits_only(form: SchemaForm, qtbot: QtBot) -> None:
    with qtbot.assertNotEmitted(form.changed):
        form.set_schema(ARCHIVE)
        form.set_value({"folder": "/x", "level": 3, "mode": "fast", "verbose": True,
                        "tags": ["a"], "extra": {"b": 2}, "other": 1})
        form.set_value({"level": "not a number"})  # into the JSON state, quietly
        form.set_value({})
        form.show_errors({"level": "x"})
        old_rows = form.scroll_area.widget()
        form.set_schema(SUM)
        form.set_value({"numbers": [1, 2]})
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
        assert not shiboken6.isValid(old_rows)  # the old rows are gone, quietly
    form.set_schema(ARCHIVE)
    edits = [
        lambda: qtbot.keyClicks(field(form, "output"), "o"),
        lambda: qtbot.keyClick(field(form, "level"), Qt.Key.Key_Up),
        lambda: qtbot.keyClick(field(form, "mode"), Qt.Key.Key_Down),
        lambda: qtbot.mouseClick(field(form, "verbose"), Qt.MouseButton.LeftButton),
        lambda: qtbot.mouseClick(list_editor(form, "tags").add_button, Qt.MouseButton.LeftButton),
        lambda: qtbot.keyClicks(field(form, "extra"), "{"),
    ]
    for edit in edits:
        with qtbot.waitSignal(form.changed, timeout=1000):
            edit()


def test_grab_archive_form_as_png(form: SchemaForm, tmp_path: Path) -> None:
    form.set_schema(ARCHIVE)
    form.set_value({"folder": "/home/me/photos", "output": "photos.tar.gz", "mode": "small",
                    "verbose": True, "tags": ["holiday", "2024"], "extra": {"owner": "me"}})
    form.show_errors({"output": "'photos.tar.gz' already exists"})
    path = tmp_path / "archive_form.png"
    assert form.grab().save(str(path))
    image = QImage(str(path))
    assert image.width() >= 500 and image.height() >= 400
    colours = {image.pixel(x, y) for x in range(0, image.width(), 7)
               for y in range(0, image.height(), 7)}
    assert len(colours) > 10  # text, frames and the red message, not a blank grab
