"""ThroughputChart: completed and failed tasks per second over the last minutes, drawn with
QPainter (QtCharts lives in PySide6-Addons, which Taskdesk does not depend on).

Threads: GUI thread only; the window feeds it ``service.rates.series(seconds)`` once a second.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QColor,
    QFontMetrics,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
)
from PySide6.QtWidgets import QSizePolicy, QWidget

from gui.status_style import COMPLETED_COLOR, FAILED_COLOR

DEFAULT_SECONDS = 180
LABEL_MARGIN = 6  # between the widget's left edge and the longest y-axis label
LABEL_GAP = 6  # between the labels and the plot


def axis_label(value: float) -> str:
    """A y-axis value as written: 0.5, 1, 2.5, 1,000 (halves of the nice ceilings)."""
    if value == int(value):
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def axis_labels(top: float) -> list[str]:
    """The y-axis labels from the top down: top, half, zero."""
    return [axis_label(top * (2 - i) / 2) for i in range(3)]


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10ⁿ at or above *value* (at least 1): a readable axis top."""
    if value <= 1:
        return 1.0
    exponent = math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        top = step * 10.0**exponent
        if top >= value:
            return top
    return 10.0 ** (exponent + 1)


class ThroughputChart(QWidget):
    def __init__(self, parent: QWidget | None = None, seconds: int = DEFAULT_SECONDS) -> None:
        super().__init__(parent)
        self.seconds = seconds
        self._series: list[tuple[int, int]] = [(0, 0)] * seconds
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setToolTip("Tasks completed and failed per second")

    def sizeHint(self) -> QSize:
        return QSize(480, 130)

    def minimumSizeHint(self) -> QSize:
        return QSize(200, 70)

    @property
    def top_value(self) -> float:
        """The value at the top of the y-axis."""
        return nice_ceiling(max((max(c, f) for c, f in self._series), default=0))

    @staticmethod
    def label_width(metrics: QFontMetrics, labels: Sequence[str]) -> int:
        """Room left of the plot for the y-axis labels: the widest of them, whichever it is
        ("0.5" is wider than the "1" above it), with margins."""
        return max(metrics.horizontalAdvance(text) for text in labels) + LABEL_MARGIN + LABEL_GAP

    @property
    def series(self) -> list[tuple[int, int]]:
        return list(self._series)

    def set_series(self, series: Sequence[tuple[int, int]]) -> None:
        """(completed, failed) per second, oldest first."""
        series = list(series)[-self.seconds :]
        padded = [(0, 0)] * (self.seconds - len(series)) + series
        if padded != self._series:
            self._series = padded
            self.update()

    # -- painting -------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text_color = palette.color(QPalette.ColorRole.WindowText)
        muted = palette.color(QPalette.ColorRole.PlaceholderText)
        painter.fillRect(self.rect(), palette.color(QPalette.ColorRole.Base))
        painter.setPen(palette.color(QPalette.ColorRole.Mid))
        painter.drawRect(QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5))

        metrics = painter.fontMetrics()
        line_h = metrics.height()
        top_value = self.top_value
        labels = axis_labels(top_value)
        label_w = self.label_width(metrics, labels)
        plot = QRectF(label_w, line_h + 12, self.width() - label_w - 12,
                      self.height() - 2 * line_h - 20)
        if plot.width() < 20 or plot.height() < 10:
            painter.end()
            return

        # Grid and axis labels.
        grid = QColor(muted)
        grid.setAlpha(60)
        painter.setPen(QPen(grid, 1))
        for i, label in enumerate(labels):
            y = plot.top() + plot.height() * i / 2
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(muted)
            painter.drawText(
                QRectF(LABEL_MARGIN, y - line_h / 2, label_w - LABEL_MARGIN - LABEL_GAP, line_h),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                label,
            )
            painter.setPen(QPen(grid, 1))
        bottom_y = plot.bottom() + 3
        minutes = self.seconds / 60
        painter.setPen(muted)
        for x, align, label in (
            (plot.left(), Qt.AlignmentFlag.AlignLeft, f"−{minutes:g} min"),
            (plot.center().x() - 60, Qt.AlignmentFlag.AlignHCenter, f"−{minutes / 2:g} min"),
            (plot.right() - 120, Qt.AlignmentFlag.AlignRight, "now"),
        ):
            painter.drawText(QRectF(x, bottom_y, 120, line_h), align, label)

        # Completed behind failed, so a few failures stay visible over many completions.
        self._draw_series(painter, plot, [c for c, _ in self._series], top_value, COMPLETED_COLOR)
        self._draw_series(painter, plot, [f for _, f in self._series], top_value, FAILED_COLOR)

        # Legend with the rates over the last 10 seconds.
        recent = self._series[-10:]
        done_rate = sum(c for c, _ in recent) / 10
        fail_rate = sum(f for _, f in recent) / 10
        x = plot.left()
        legend_y = 6.0
        for color, text in ((COMPLETED_COLOR, f"completed {done_rate:,.1f}/s"),
                            (FAILED_COLOR, f"failed {fail_rate:,.1f}/s")):
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawRoundedRect(QRectF(x, legend_y + line_h / 2 - 4, 8, 8), 2, 2)
            painter.setPen(text_color)
            width = metrics.horizontalAdvance(text)
            painter.drawText(QRectF(x + 12, legend_y, width + 4, line_h),
                             Qt.AlignmentFlag.AlignVCenter, text)
            x += 12 + width + 18
        painter.end()

    def _draw_series(
        self, painter: QPainter, plot: QRectF, values: list[int], top: float, color: QColor
    ) -> None:
        if not any(values):
            return
        step = plot.width() / max(1, len(values) - 1)
        points = [
            QPointF(plot.left() + i * step, plot.bottom() - plot.height() * min(v, top) / top)
            for i, v in enumerate(values)
        ]
        line = QPainterPath(points[0])
        for point in points[1:]:
            line.lineTo(point)
        area = QPainterPath(line)
        area.lineTo(plot.right(), plot.bottom())
        area.lineTo(plot.left(), plot.bottom())
        area.closeSubpath()
        fill = QColor(color)
        fill.setAlpha(45)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawPath(area)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(color, 1.6))
        painter.drawPath(line)
