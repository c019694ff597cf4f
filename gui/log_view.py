"""LogView: a read-only, monospaced view of a task's output that text is appended to.

It holds at most about ``max_chars`` characters: past a quarter more than that, whole lines are
dropped from the top (trimming in steps rather than at every append, since dropping the head
makes the text layout move every line). It stays at the bottom as text arrives, and as it is
resized or first laid out, unless the user has scrolled up to read; then what they read stays
where it is, even as the top is dropped. Scrolling back to the bottom follows the end again.

QPlainTextEdit's vertical scroll bar counts lines (a wrapped paragraph laid out so far counts
its lines, one not laid out yet counts one), as ``QTextBlock.firstLineNumber`` does: the lines
dropped from the top are the first kept block's line number.

Threads: GUI thread only.
"""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase, QTextCursor
from PySide6.QtWidgets import QPlainTextEdit, QWidget

MAX_CHARS = 1_000_000


class LogView(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None, *, max_chars: int = MAX_CHARS) -> None:
        super().__init__(parent)
        self.max_chars = max_chars
        self.trimmed = False  # lines were dropped from the top (or never shown)
        self.setReadOnly(True)
        self.setUndoRedoEnabled(False)  # an undo stack would keep every dropped line
        self.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.setTabChangesFocus(True)
        self._at_end = True  # follow the end: the user has not scrolled up
        self._appending = False
        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)

    @property
    def following(self) -> bool:
        """Whether the view stays at the end as text arrives."""
        return self._at_end

    def clear_log(self) -> None:
        self.clear()
        self.trimmed = False
        self._at_end = True

    def append_text(self, text: str) -> None:
        if not text:
            return
        bar = self.verticalScrollBar()
        top = bar.value()
        self._appending = True
        try:
            cursor = QTextCursor(self.document())
            cursor.movePosition(QTextCursor.MoveOperation.End)
            cursor.insertText(text)
            dropped_lines = self._trim()
        finally:
            self._appending = False
        if self._at_end:
            bar.setValue(bar.maximum())
        elif dropped_lines:
            bar.setValue(max(0, top - dropped_lines))

    def _on_scrolled(self, value: int) -> None:
        if not self._appending:  # the user's scrolling (or a resize), not our own text
            self._at_end = value >= self.verticalScrollBar().maximum()

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._at_end:
            self.verticalScrollBar().setValue(maximum)

    def _trim(self) -> int:
        """Drop whole lines from the top down to max_chars when over by a quarter; return
        how many lines (as the scroll bar counts them) went."""
        document = self.document()
        size = document.characterCount()
        if size <= self.max_chars + self.max_chars // 4:
            return 0
        cut = size - self.max_chars
        block = document.findBlock(cut)
        if block.position() < cut and block.next().isValid():
            block = block.next()  # keep whole lines
        end = block.position() if block.position() >= cut else cut  # one huge line: cut it
        lines = block.firstLineNumber() if end == block.position() else 0
        cursor = QTextCursor(document)
        cursor.setPosition(end, QTextCursor.MoveMode.KeepAnchor)
        cursor.removeSelectedText()
        self.trimmed = True
        return lines
