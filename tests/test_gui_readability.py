"""What must stay readable whatever the scaling and palette: the chart's y-axis labels, and
status colours used as text on light and dark backgrounds."""

from __future__ import annotations

from PySide6.QtGui import QColor, QPalette
from pytestqt.qtbot import QtBot

from gui.database_status import DatabaseStatus
from gui.details_panel import DetailsPanel
from gui.status_style import (
    READABLE_CONTRAST,
    STATUS_COLORS,
    contrast,
    readable_color,
    status_color,
)
from gui.throughput_chart import LABEL_MARGIN, ThroughputChart, axis_label, axis_labels
from service.task_service import TaskService
from tests.test_gui_parts import make_task


def palette_with_base(base: str, text: str) -> QPalette:
    palette = QPalette()
    for role in (QPalette.ColorRole.Base, QPalette.ColorRole.Window):
        palette.setColor(role, QColor(base))
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText):
        palette.setColor(role, QColor(text))
    return palette


LIGHT = palette_with_base("#ffffff", "#000000")
DARK = palette_with_base("#1e1e1e", "#e6e6e6")


def test_axis_labels_say_halves_exactly() -> None:
    assert [axis_label(v) for v in (0, 0.5, 1, 2.5, 25, 1000, 2500)] == [
        "0", "0.5", "1", "2.5", "25", "1,000", "2,500"]
    assert axis_labels(1) == ["1", "0.5", "0"]
    assert axis_labels(5) == ["5", "2.5", "0"]  # was "2": a half rounded away


def test_the_widest_axis_label_is_not_clipped(qtbot: QtBot) -> None:
    """With 1 at the top, "0.5" is wider than "1": its room must come from it, or its first
    digit is drawn left of the widget (".5" was all that showed)."""
    chart = ThroughputChart(seconds=60)
    qtbot.addWidget(chart)
    chart.resize(400, 140)
    chart.set_series([(1, 0)] + [(0, 0)] * 59)
    assert chart.top_value == 1
    image = chart.grab().toImage()
    base = chart.palette().color(QPalette.ColorRole.Base).rgb()
    # Left of the labels, inside the 1 px frame, nothing but the background.
    margin = {image.pixel(x, y) for x in range(1, LABEL_MARGIN - 1)
              for y in range(1, image.height() - 1)}
    assert margin == {base}
    metrics = chart.fontMetrics()
    width = chart.label_width(metrics, axis_labels(1))
    assert width >= metrics.horizontalAdvance("0.5") + LABEL_MARGIN


def test_status_colours_as_text_reach_the_contrast_text_needs() -> None:
    for palette in (LIGHT, DARK):
        base = palette.color(QPalette.ColorRole.Base)
        for status, hue in STATUS_COLORS.items():
            shown = readable_color(hue, palette)
            assert contrast(shown, base) >= READABLE_CONTRAST, (status, base.name())
    # Already readable: left as chosen.
    assert readable_color(status_color("failed"), LIGHT) == status_color("failed")
    # Red on a dark background, and green on white, are not: they are lightened or darkened.
    assert contrast(status_color("failed"), DARK.color(QPalette.ColorRole.Base)) < 4.5
    assert readable_color(status_color("failed"), DARK).lightness() > status_color(
        "failed").lightness()
    assert readable_color(status_color("completed"), LIGHT).lightness() < status_color(
        "completed").lightness()


def test_the_details_error_text_is_readable_on_a_dark_palette(
    qtbot: QtBot, service: TaskService
) -> None:
    panel = DetailsPanel([], service, DatabaseStatus(service))
    qtbot.addWidget(panel)
    panel.setPalette(DARK)
    panel.show_tasks([make_task(status="failed", error="ValueError: no")])
    expected = readable_color(status_color("failed"), DARK).name()
    assert expected != status_color("failed").name()
    assert f"color:{expected}" in panel.view.toHtml().replace(" ", "")
