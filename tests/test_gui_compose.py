# pytest-qt's QtBot key and mouse helpers carry no type hints:
# mypy: disable-error-code="no-untyped-call"
# Fixtures imported from tests.gui_helpers are "redefined" as test parameters:
# ruff: noqa: F811
"""The compose panel in the window: the picker lists the registry, the form is generated from
the picked action's schema and kept in step with the JSON, validation shows beside fields."""

from __future__ import annotations

import json
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QLabel,
    QLineEdit,
    QListWidget,
    QPlainTextEdit,
    QSpinBox,
    QWidget,
)
from pytestqt.qtbot import QtBot

from gui.compose_panel import JSON_TAB, ComposePanel, schema_defaults
from gui.schema_form import NO_FORM, FieldRow
from gui.schema_widgets import ListEditor
from service.actions import Action, ActionRegistry, RunContext, default_registry
from service.task_service import TaskService
from storage import TaskQuery
from storage.sqlite import SqliteTaskStore
from tests.gui_helpers import (  # noqa: F401 (fixtures by name)
    WindowFactory,
    activate,
    clear_and_type,
    isolated_settings,
    make_window,
)

ARCHIVE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["folder", "level"],
    "additionalProperties": False,
    "properties": {
        "folder": {"type": "string", "format": "path", "x-path": "folder", "title": "Folder",
                   "description": "The folder to archive"},
        "name": {"type": "string", "title": "Archive name", "default": "backup",
                 "minLength": 1},
        "level": {"type": "integer", "minimum": 1, "maximum": 9, "default": 6,
                  "description": "Compression level"},
        "mode": {"enum": ["fast", "small"], "default": "fast"},
        "verbose": {"type": "boolean"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "sizes": {"type": "array", "items": {"type": "integer", "maximum": 100}},
        "extra": {"type": "object"},
    },
}
ARCHIVE_DEFAULTS = {"name": "backup", "level": 6, "mode": "fast"}


def _archive(data: dict[str, Any], ctx: RunContext) -> Any:
    return {"output": "archived"}


ARCHIVE = Action("archive", "Pack a folder into an archive", ARCHIVE_SCHEMA, "python",
                 _archive, "plugin /plugins/archive.py")


def registry(unknown: str = "accept") -> ActionRegistry:
    made = default_registry(unknown)  # type: ignore[arg-type]
    made.register(ARCHIVE)
    return made


@pytest.fixture
def archive_service(store: SqliteTaskStore) -> TaskService:
    return TaskService(store, registry())


@pytest.fixture
def compose(make_window: WindowFactory, archive_service: TaskService) -> ComposePanel:
    return make_window(svc=archive_service).compose


def pick(compose: ComposePanel, name: str) -> None:
    index = compose.action_combo.findText(name)
    assert index >= 0, name
    compose.action_combo.setCurrentIndex(index)


def json_data(compose: ComposePanel) -> Any:
    return json.loads(compose.json_edit.toPlainText())


def field(compose: ComposePanel, name: str) -> Any:
    widget = compose.form.field(name)
    assert widget is not None, name
    return widget


def row(compose: ComposePanel, name: str) -> FieldRow:
    found = compose.form.row(name)
    assert found is not None, name
    return found


def error_beside(compose: ComposePanel, name: str) -> str:
    """The message shown beside a field; "" when none is shown."""
    label = row(compose, name).error
    return label.text() if label.isVisible() else ""


def add_list_item(qtbot: QtBot, compose: ComposePanel, name: str, text: str) -> None:
    editor = row(compose, name).editor
    assert isinstance(editor, ListEditor)
    qtbot.mouseClick(editor.add_button, Qt.MouseButton.LeftButton)
    line = editor.list.viewport().findChild(QLineEdit)  # Add opened the new item's editor
    assert line is not None
    qtbot.keyClicks(line, text)
    qtbot.keyClick(line, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: editor.list.viewport().findChild(QLineEdit) is None)


def set_json(compose: ComposePanel, data: Any) -> None:
    compose.json_edit.setPlainText(json.dumps(data))


# -- the picker -------------------------------------------------------------------------------


def test_picker_lists_every_registered_action_with_its_description(
    compose: ComposePanel, archive_service: TaskService
) -> None:
    combo = compose.action_combo
    names = [combo.itemText(i) for i in range(combo.count())]
    assert names == ["archive", "sum", "uppercase"] == archive_service.registry.names()
    tips = [combo.itemData(i, Qt.ItemDataRole.ToolTipRole) for i in range(combo.count())]
    assert tips == [a.description for a in archive_service.registry.actions()]
    assert compose.action == "archive"  # the first, in the registry's order
    assert combo.toolTip() == "Pack a folder into an archive"
    pick(compose, "sum")
    assert combo.toolTip() == 'data.numbers → {"output": total}'


def test_any_other_name_is_accepted_when_the_registry_accepts_it(
    qtbot: QtBot, compose: ComposePanel, store: SqliteTaskStore
) -> None:
    combo = compose.action_combo
    assert combo.isEditable()
    line = combo.lineEdit()
    assert line is not None
    clear_and_type(qtbot, line, "resize-image")
    assert compose.action == "resize-image"
    assert not compose.form.has_fields() and compose.form.no_form.text() == NO_FORM
    assert combo.toolTip() == "Any other name runs the default action"
    set_json(compose, {"width": 64})
    assert compose.submit_button.isEnabled()
    qtbot.mouseClick(compose.submit_button, Qt.MouseButton.LeftButton)
    [task] = store.page(TaskQuery(), 10)
    assert (task.action, task.data) == ("resize-image", {"width": 64})


def test_the_picker_is_a_plain_list_when_unknown_names_are_refused(
    qtbot: QtBot, make_window: WindowFactory, store: SqliteTaskStore
) -> None:
    compose = make_window(svc=TaskService(store, registry("refuse"))).compose
    combo = compose.action_combo
    assert not combo.isEditable() and combo.lineEdit() is None
    assert [combo.itemText(i) for i in range(combo.count())] == ["archive", "sum", "uppercase"]
    pick(compose, "uppercase")
    clear_and_type(qtbot, field(compose, "text"), "hi")
    qtbot.mouseClick(compose.submit_button, Qt.MouseButton.LeftButton)
    [task] = store.page(TaskQuery(), 10)
    assert (task.action, task.data) == ("uppercase", {"text": "hi"})


def test_no_form_note_for_an_action_whose_schema_has_no_properties(
    make_window: WindowFactory, store: SqliteTaskStore
) -> None:
    reg = default_registry()
    reg.register(Action("anything", "takes any object", {"type": "object"}, "python",
                        _archive, "test"))
    compose = make_window(svc=TaskService(store, reg)).compose
    pick(compose, "anything")
    assert not compose.form.has_fields()
    assert compose.form.no_form.isVisible() and compose.form.no_form.text() == NO_FORM
    compose.tabs.setCurrentIndex(JSON_TAB)
    set_json(compose, {"free": [1, 2]})
    assert compose.submit_button.isEnabled()


# -- the generated form -----------------------------------------------------------------------


def test_form_has_a_widget_per_schema_type_with_defaults_marks_and_tooltips(
    compose: ComposePanel,
) -> None:
    kinds: dict[str, type[QWidget]] = {
        "folder": QLineEdit, "name": QLineEdit, "level": QSpinBox, "mode": QComboBox,
        "verbose": QCheckBox, "tags": QListWidget, "sizes": QListWidget,
        "extra": QPlainTextEdit,
    }
    for name, kind in kinds.items():
        assert isinstance(field(compose, name), kind), name
    assert row(compose, "folder").editor.inputs[1].accessibleName() == "Choose a folder"
    level = field(compose, "level")
    assert (level.minimum() + 1, level.maximum(), level.text()) == (1, 9, "6")
    assert field(compose, "mode").currentText() == "fast"
    # The JSON starts from the schema's defaults, as the form shows them.
    assert json_data(compose) == ARCHIVE_DEFAULTS
    labels = {label.buddy(): label for label in compose.form.findChildren(QLabel)
              if label.buddy() is not None}
    assert labels[field(compose, "folder")].text() == "Folder *"
    assert labels[level].text() == "level *"
    assert labels[field(compose, "name")].text() == "Archive name"
    assert field(compose, "folder").toolTip() == "The folder to archive"
    assert "Compression level" in labels[level].toolTip()
    assert compose.tabs.tabText(0) == "Form" and compose.tabs.tabText(1) == "JSON"
    assert compose.tabs.currentWidget() is compose.form


def test_each_field_drives_the_json_and_the_json_drives_the_fields(
    qtbot: QtBot, compose: ComposePanel
) -> None:
    clear_and_type(qtbot, field(compose, "folder"), "/data/photos")
    assert json_data(compose) == {**ARCHIVE_DEFAULTS, "folder": "/data/photos"}
    clear_and_type(qtbot, field(compose, "name"), "")  # an empty field is left out
    assert "name" not in json_data(compose)
    clear_and_type(qtbot, field(compose, "level"), "9")
    field(compose, "mode").setCurrentIndex(field(compose, "mode").findText("small"))
    qtbot.mouseClick(field(compose, "verbose"), Qt.MouseButton.LeftButton)
    add_list_item(qtbot, compose, "tags", "holiday")
    add_list_item(qtbot, compose, "tags", "2024")  # a string, as the items' schema says
    add_list_item(qtbot, compose, "sizes", "42")
    clear_and_type(qtbot, field(compose, "extra"), '{"keep": [1, null]}')
    expected = {"folder": "/data/photos", "level": 9, "mode": "small", "verbose": True,
                "tags": ["holiday", "2024"], "sizes": [42], "extra": {"keep": [1, None]}}
    assert json_data(compose) == expected
    assert compose.submit_button.isEnabled()

    # And back: the JSON's values in the fields.
    set_json(compose, {"folder": "/tmp/x", "level": 2, "mode": "fast", "verbose": False,
                       "tags": ["a"], "sizes": [1, 2], "extra": [], "name": "n"})
    assert field(compose, "folder").text() == "/tmp/x"
    assert field(compose, "level").text() == "2"
    assert field(compose, "mode").currentText() == "fast"
    assert not field(compose, "verbose").isChecked()
    tags = field(compose, "tags")
    assert [tags.item(i).text() for i in range(tags.count())] == ["a"]
    assert field(compose, "sizes").count() == 2
    assert json.loads(field(compose, "extra").toPlainText()) == []
    assert field(compose, "name").text() == "n"
    # A value the field cannot hold is shown as JSON in its row, and kept.
    set_json(compose, {"folder": "/f", "level": "max"})
    assert row(compose, "level").as_json
    assert compose.form.value() == {"folder": "/f", "level": "max"}


def test_validation_messages_show_beside_the_fields_and_disable_submit(
    qtbot: QtBot, compose: ComposePanel, store: SqliteTaskStore
) -> None:
    # The defaults lack the required folder.
    assert not compose.submit_button.isEnabled()
    assert error_beside(compose, "folder") == "required"
    assert "data.folder: required" in compose.message_label.text()
    clear_and_type(qtbot, field(compose, "folder"), "/data")
    assert error_beside(compose, "folder") == ""
    assert compose.submit_button.isEnabled()
    assert compose.message_label.text() == "Ctrl+Enter submits"

    set_json(compose, {"folder": "/data", "level": 6, "sizes": [5, 500], "name": "",
                       "bogus": 1})
    assert "500 is greater than the maximum of 100" in error_beside(compose, "sizes")
    assert error_beside(compose, "sizes").startswith("sizes[1]: ")
    assert "should be non-empty" in error_beside(compose, "name")
    top = compose.form.top_error
    assert top.isVisible() and top.text() == "bogus: not allowed (no such field)"
    message = compose.message_label.text()
    assert "data.sizes[1]: 500 is greater than the maximum of 100" in message
    assert not compose.submit_button.isEnabled()

    # Text a field cannot convert: named beside the field, the JSON left as it was.
    set_json(compose, {"folder": "/data", "level": 6})
    add_list_item(qtbot, compose, "sizes", "ten")
    assert error_beside(compose, "sizes") == "item 1: “ten” is not a whole number"
    assert compose.message_label.text() == "sizes: item 1: “ten” is not a whole number"
    assert json_data(compose) == {"folder": "/data", "level": 6}
    assert not compose.submit_button.isEnabled()
    qtbot.mouseClick(compose.submit_button, Qt.MouseButton.LeftButton)
    assert store.count(TaskQuery()) == 0


def test_submit_stores_exactly_the_forms_data(
    qtbot: QtBot, make_window: WindowFactory, archive_service: TaskService,
    store: SqliteTaskStore,
) -> None:
    window = make_window(svc=archive_service)
    compose = window.compose
    clear_and_type(qtbot, field(compose, "folder"), "/srv/www")
    clear_and_type(qtbot, field(compose, "level"), "3")
    add_list_item(qtbot, compose, "tags", "web")
    expected = {"folder": "/srv/www", "name": "backup", "level": 3, "mode": "fast",
                "tags": ["web"]}
    assert compose.form.value() == expected
    compose.copies_spin.setValue(3)
    activate(qtbot, window)
    qtbot.keyClick(field(compose, "name"), Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    tasks = store.page(TaskQuery(), 10)
    assert len(tasks) == 3
    assert all(t.action == "archive" and t.data == expected for t in tasks)
    assert compose.message_label.text() == "Submitted 3 tasks"


def test_switching_actions_keeps_each_actions_data(
    qtbot: QtBot, compose: ComposePanel
) -> None:
    clear_and_type(qtbot, field(compose, "folder"), "/mine")
    pick(compose, "uppercase")
    assert json_data(compose) == {}  # uppercase's defaults: none
    assert [compose.form.row(n) is not None for n in ("text", "folder")] == [True, False]
    clear_and_type(qtbot, field(compose, "text"), "hello")
    pick(compose, "sum")
    add_list_item(qtbot, compose, "numbers", "2.5")
    assert json_data(compose) == {"numbers": [2.5]}
    pick(compose, "archive")  # its draft comes back, in the JSON and in the form
    assert json_data(compose) == {**ARCHIVE_DEFAULTS, "folder": "/mine"}
    assert field(compose, "folder").text() == "/mine"
    pick(compose, "uppercase")
    assert json_data(compose) == {"text": "hello"} and field(compose, "text").text() == "hello"

    # Typing a name goes through names no action has: the data stays, and data typed for
    # such a name is taken over by the action picked next.
    line = compose.action_combo.lineEdit()
    assert line is not None
    clear_and_type(qtbot, line, "upload")
    assert json_data(compose) == {"text": "hello"}
    set_json(compose, {"url": "https://example.com"})
    pick(compose, "uppercase")
    assert json_data(compose) == {"url": "https://example.com"}
    assert compose.submit_button.isEnabled()
    pick(compose, "sum")  # that data is now uppercase's draft; sum's own comes back
    assert json_data(compose) == {"numbers": [2.5]}


def test_tab_walks_from_the_picker_through_the_form(
    qtbot: QtBot, make_window: WindowFactory, archive_service: TaskService
) -> None:
    window = make_window(svc=archive_service)
    compose = window.compose
    pick(compose, "uppercase")
    pick(compose, "archive")  # a form built after the window's tab order was set
    activate(qtbot, window)
    compose.action_combo.setFocus()
    order = []
    for _ in range(4):
        qtbot.keyClick(focused(), Qt.Key.Key_Tab)
        order.append(focused())
    assert order[:3] == [compose.tabs.tabBar(), field(compose, "folder"),
                         row(compose, "folder").editor.inputs[1]]
    assert order[3] is field(compose, "name")


def focused() -> QWidget:
    widget = QApplication.focusWidget()
    assert widget is not None
    return widget


def test_schema_defaults() -> None:
    assert schema_defaults(ARCHIVE_SCHEMA) == ARCHIVE_DEFAULTS
    assert schema_defaults({"type": "object"}) == {}
    assert schema_defaults({"properties": {"a": True, "b": {"default": None}}}) == {"b": None}


def test_a_check_that_raises_is_reported_not_raised(
    qtbot: QtBot, make_window: WindowFactory, store: SqliteTaskStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_check(data: dict[str, Any]) -> None:
        raise KeyError("oops")

    reg = default_registry()
    reg.register(Action("flaky", "a plugin with a bug", {"type": "object"}, "python",
                        _archive, "test", check=broken_check))
    compose = make_window(svc=TaskService(store, reg)).compose
    pick(compose, "flaky")
    assert not compose.submit_button.isEnabled()
    assert compose.message_label.text() == "Could not check the data: KeyError: 'oops'"
    set_json(compose, {"a": 1})
    set_json(compose, {"a": 2})
    assert [r.getMessage() for r in caplog.records if r.name == "taskdesk.gui"] == [
        "checking data for action 'flaky' failed: KeyError"]  # once, not per keystroke
    qtbot.mouseClick(compose.submit_button, Qt.MouseButton.LeftButton)
    assert store.count(TaskQuery()) == 0
