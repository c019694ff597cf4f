"""Spin boxes that can be empty, for the schema form's bounded integers and numbers.

A spin box always holds a number, but an optional field must be able to hold none. Here the
lowest value, one step below the schema's minimum, stands for "not set" and shows as no text:
Down from the minimum empties the field, Up from empty gives the minimum, and deleting the
text empties it too. Text is read and written as JSON numbers ("." whatever the locale, no
trailing zeros), and typing is held to the schema's bounds, exclusive ones included.
"""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox, QWidget

from gui.schema_values import (
    MAX_DECIMALS,
    PARTIAL_INTEGER,
    PARTIAL_NUMBER,
    Bounds,
    FieldError,
    format_number,
    read_number,
)


def spin_state(text: str, integer: bool, bounds: Bounds, decimals: int = 0) -> QValidator.State:
    """How a spin box takes its text: typing may pass through Intermediate states."""
    text = text.strip()
    if "." in text and "e" not in text.lower() and len(text.split(".")[1]) > decimals:
        return QValidator.State.Invalid  # the spin box would round it away
    try:
        read_number(text, integer, bounds)
    except FieldError:
        partial = re.fullmatch(PARTIAL_INTEGER if integer else PARTIAL_NUMBER, text)
        return QValidator.State.Intermediate if partial else QValidator.State.Invalid
    return QValidator.State.Acceptable


class IntegerSpinBox(QSpinBox):
    """A QSpinBox whose lowest value, one below the allowed minimum, shows as empty."""

    def __init__(self, low: int, high: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bounds = Bounds(low, high)
        self.setRange(low - 1, high)
        self.setValue(low - 1)

    def show_value(self, value: Any) -> None:
        self.setValue(value)

    def unset(self) -> None:
        self.setValue(self.minimum())

    def textFromValue(self, value: int) -> str:
        return "" if value == self.minimum() else str(value)

    def valueFromText(self, text: str) -> int:
        return int(text) if text.strip() else self.minimum()

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        return spin_state(text, True, self.bounds), text, pos


class NumberSpinBox(QDoubleSpinBox):
    """A QDoubleSpinBox whose lowest value, one step below the allowed minimum, shows as empty;
    it writes numbers as JSON does (no trailing zeros, "." whatever the locale)."""

    def __init__(self, bounds: Bounds, step: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        assert bounds.low is not None and bounds.high is not None
        self.bounds = bounds
        self.setDecimals(MAX_DECIMALS)
        self.setSingleStep(step)
        # Stepping stays inside exclusive bounds; typing may come closer.
        self._first = bounds.low + step if bounds.low_open else bounds.low
        self._last = bounds.high - step if bounds.high_open else bounds.high
        self.setRange(bounds.low - step, bounds.high)
        self.setValue(self.minimum())

    def show_value(self, value: Any) -> None:
        self.setValue(value)

    def unset(self) -> None:
        self.setValue(self.minimum())

    def textFromValue(self, value: float) -> str:
        return "" if value <= self.minimum() else format_number(round(value, MAX_DECIMALS))

    def valueFromText(self, text: str) -> float:
        return float(text) if text.strip() else self.minimum()

    def validate(self, text: str, pos: int) -> tuple[QValidator.State, str, int]:
        return spin_state(text, False, self.bounds, MAX_DECIMALS), text, pos

    def stepBy(self, steps: int) -> None:
        current = self.value()
        if current <= self.minimum():
            target: float | None = self._first if steps > 0 else None
        else:
            target = min(current + steps * self.singleStep(), self._last)
            if target < self._first:
                target = None if current <= self._first else self._first
        self.setValue(self.minimum() if target is None else target)
