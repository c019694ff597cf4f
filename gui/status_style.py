"""Colours and labels of the five task statuses, and the badge that draws them in the table.

Each status has one hue used everywhere (table badge, filter buttons, details, chart), picked
to stay readable on light and dark palettes: the badge fills a pale tint of the hue and writes
the label in a strong shade of it. A running task that reports how far it is gets a badge
that fills up like a progress bar ("Running 45 %"); one asked to stop shows "Cancelling…" in
the hue of cancelled tasks, which is how it will end.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFontMetrics, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from storage import STATUSES, Task, TaskStatus

STATUS_LABELS: dict[str, str] = {s: s.capitalize() for s in STATUSES}
# A running task asked to stop: a badge of its own, though not a status of its own.
CANCELLING = "cancelling"
CANCELLING_LABEL = "Cancelling…"

# Item data roles of a status cell: the badge it paints (a status, or CANCELLING), and for a
# running task that reports its progress, the fraction done (0–1; unset otherwise).
STATUS_ROLE = Qt.ItemDataRole.UserRole + 3
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 4

STATUS_COLORS: dict[str, QColor] = {
    "queued": QColor("#6b7280"),  # slate: waiting, nothing wrong
    "running": QColor("#2563eb"),  # blue: in progress
    "completed": QColor("#16a34a"),  # green
    "failed": QColor("#dc2626"),  # red
    "cancelled": QColor("#b45309"),  # amber: stopped by a person, not an error
}

COMPLETED_COLOR = STATUS_COLORS["completed"]
FAILED_COLOR = STATUS_COLORS["failed"]


_UNKNOWN_COLOR = QColor("#6b7280")
_BADGE_COLORS = {**STATUS_COLORS, CANCELLING: STATUS_COLORS["cancelled"]}


def status_color(status: str) -> QColor:
    """The hue of a status, or of a badge (CANCELLING)."""
    return _BADGE_COLORS.get(status, _UNKNOWN_COLOR)


def badge_of(task: Task) -> str:
    """Which badge shows *task*: its status, or CANCELLING."""
    if task.status == TaskStatus.RUNNING and task.cancel_requested:
        return CANCELLING
    return task.status


def shown_progress(task: Task) -> float | None:
    """The fraction done a running task reported, clamped to 0–1; None when it reported none
    (or is not running: what an earlier attempt reported means nothing now)."""
    if task.status != TaskStatus.RUNNING or task.progress is None:
        return None
    return min(1.0, max(0.0, float(task.progress)))


def format_progress(fraction: float) -> str:
    # Floor, so that a task at 99.6 % does not read as done.
    return f"{int(fraction * 100)} %"


def status_label(task: Task) -> str:
    """The words on a task's badge: "Queued", "Running 45 %", "Cancelling…"."""
    badge = badge_of(task)
    if badge == CANCELLING:
        return CANCELLING_LABEL
    fraction = shown_progress(task)
    label = STATUS_LABELS.get(badge, badge)
    return label if fraction is None else f"{label} {format_progress(fraction)}"


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


def mix(a: QColor, b: QColor, amount: float) -> QColor:
    """*amount* of *a* over *b*, opaque (rich text and some styles ignore alpha)."""
    return QColor(
        round(a.red() * amount + b.red() * (1 - amount)),
        round(a.green() * amount + b.green() * (1 - amount)),
        round(a.blue() * amount + b.blue() * (1 - amount)),
    )


def luminance(color: QColor) -> float:
    """WCAG relative luminance, 0 (black) to 1 (white)."""

    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.red()) + 0.7152 * channel(color.green()) + 0.0722 * channel(
        color.blue())


def contrast(a: QColor, b: QColor) -> float:
    """WCAG contrast ratio of two colours, 1 to 21."""
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


READABLE_CONTRAST = 4.5  # WCAG AA for text of ordinary size


def readable_color(
    color: QColor, palette: QPalette, role: QPalette.ColorRole = QPalette.ColorRole.Base
) -> QColor:
    """*color* as text on *palette*'s *role*: as it is where it reads well enough, else mixed
    towards white (dark palettes) or black (light ones) until it does. The status hues are
    chosen for light backgrounds; red and blue text on a dark one, or green on white, fall
    short of the contrast text needs."""
    background = palette.color(role)
    if contrast(color, background) >= READABLE_CONTRAST:
        return QColor(color)
    towards = QColor("white") if luminance(background) < 0.18 else QColor("black")
    for step in range(1, 21):
        mixed = mix(towards, color, step / 20)
        if contrast(mixed, background) >= READABLE_CONTRAST:
            return mixed
    return towards


def badge_colors(status: str, palette: QPalette, selected: bool = False) -> tuple[QColor, QColor]:
    """(fill, text) for a status badge on this palette, opaque."""
    hue = status_color(status)
    if selected:
        # On the selection highlight a pale badge with dark text stays readable in any theme.
        return mix(hue, palette.color(QPalette.ColorRole.HighlightedText), 0.12), hue.darker(140)
    base = palette.color(QPalette.ColorRole.Base)
    if is_dark(palette):
        return mix(hue, base, 0.35), hue.lighter(160)
    return mix(hue, base, 0.14), hue.darker(130)


def progress_fill(status: str, palette: QPalette, selected: bool = False) -> QColor:
    """The done part of a badge that fills up: a stronger tint than its fill, under which
    the badge's text stays readable."""
    hue = status_color(status)
    if selected:
        return mix(hue, palette.color(QPalette.ColorRole.HighlightedText), 0.42)
    base = palette.color(QPalette.ColorRole.Base)
    return mix(hue, base, 0.62 if is_dark(palette) else 0.42)


def status_dot_icon(status: str, size: int = 10) -> QIcon:
    """A filled circle in the status colour, for buttons and menus."""
    pixmap = QPixmap(size * 2, size * 2)  # drawn at 2x so it stays crisp on HiDPI screens
    pixmap.setDevicePixelRatio(2.0)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(status_color(status))
    painter.drawEllipse(QRectF(1, 1, size - 2, size - 2))
    painter.end()
    return QIcon(pixmap)


class StatusBadgeDelegate(QStyledItemDelegate):
    """Paints the status cell as a rounded, tinted badge instead of plain text; for a running
    task that reports progress, a badge as wide as the cell, filled up to the fraction done.

    Painting is Python, so it stays lean: the label is the cell's text and the badge and the
    fraction are stored roles (gui/task_table_model.py writes them when a task changes); only
    running rows look up the fraction.
    """

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        status = index.data(STATUS_ROLE)
        if not isinstance(status, str):
            super().paint(painter, option, index)
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        label = opt.text or STATUS_LABELS.get(status, status)
        opt.text = ""  # the frame and selection come from the style; the label is ours
        widget = opt.widget
        style = widget.style() if isinstance(widget, QWidget) else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)

        fraction = index.data(PROGRESS_ROLE) if status == TaskStatus.RUNNING else None
        metrics = QFontMetrics(opt.font)
        rect = opt.rect
        pad_x, height = 8, min(rect.height() - 6, metrics.height() + 4)
        if isinstance(fraction, float):  # as wide as the cell, so that bars compare
            width = rect.width() - 12
        else:
            width = min(metrics.horizontalAdvance(label) + 2 * pad_x, rect.width() - 8)
        badge = QRectF(rect.left() + 6, rect.center().y() - height / 2 + 1, width, height)
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        fill, text = badge_colors(status, opt.palette, selected)

        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(fill)
        painter.drawRoundedRect(badge, height / 2, height / 2)
        if isinstance(fraction, float) and fraction > 0:
            painter.save()
            done = QRectF(badge)
            done.setWidth(badge.width() * fraction)
            painter.setClipRect(done)
            painter.setBrush(progress_fill(status, opt.palette, selected))
            painter.drawRoundedRect(badge, height / 2, height / 2)
            painter.restore()
        painter.setPen(text)
        painter.setFont(opt.font)
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, label)
        painter.restore()

    def sizeHint(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> QSize:
        hint = super().sizeHint(option, index)
        return QSize(hint.width() + 20, hint.height())
