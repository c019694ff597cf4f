# Fixtures imported from tests.gui_helpers are "redefined" as test parameters:
# ruff: noqa: F811
"""The status bar's report of plugins that failed to load (AppInfo.load_problems)."""

from __future__ import annotations

from tests.gui_helpers import (  # noqa: F401 (fixtures by name)
    WindowFactory,
    isolated_settings,
    make_window,
)

PROBLEMS = [
    "plugin /home/ana/.config/taskdesk/plugins/resize.py: SyntaxError: invalid syntax "
    "(resize.py, line 3)",
    "entry point thumbs (distribution thumbs-1.0): ModuleNotFoundError: No module named 'PIL'",
]


def test_plugins_that_failed_to_load_are_shown_in_the_status_bar_and_about_box(
    make_window: WindowFactory,
) -> None:
    window = make_window(load_problems=PROBLEMS)
    label = window.status.plugins_label
    assert label is not None and label.isVisible()
    assert label.text() == "⚠ 2 plugins failed to load"
    assert all(problem in label.toolTip() for problem in PROBLEMS)
    about = window.about_text()
    assert "Plugins that failed to load" in about
    assert "ModuleNotFoundError: No module named &#x27;PIL&#x27;" in about
    assert "SyntaxError: invalid syntax (resize.py, line 3)" in about


def test_one_plugin_and_none(make_window: WindowFactory) -> None:
    one = make_window(load_problems=PROBLEMS[:1])
    assert one.status.plugins_label is not None
    assert one.status.plugins_label.text() == "⚠ 1 plugin failed to load"
    none = make_window()
    assert none.status.plugins_label is None
    assert "failed to load" not in none.about_text()
