"""scripts/screenshot.py renders the real window to a PNG that shows something."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PySide6.QtGui import QColor, QImage

ROOT = Path(__file__).resolve().parent.parent


def test_screenshot_script_writes_a_real_picture(tmp_path: Path) -> None:
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot.py"), str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    image = QImage(str(out))
    assert not image.isNull()
    assert image.width() > 800 and image.height() > 500
    colours = {
        image.pixel(x, y)
        for x in range(0, image.width(), 37)
        for y in range(0, image.height(), 29)
    }
    assert len(colours) > 20  # text, badges and the chart, not a blank or single-colour grab


def test_the_tray_menu_picture_has_the_panel_and_tray_icon(tmp_path: Path) -> None:
    out = tmp_path / "tray.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "screenshot.py"), "--tray-menu", str(out)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    image = QImage(str(out))
    assert (image.width(), image.height()) == (1280, 830)  # the window below a 30 px panel
    panel = QColor(image.pixel(5, 5))
    assert panel.lightness() < 60
    icon = QColor(image.pixel(image.width() - 35, 8))  # the tray icon's blue, in the panel
    assert icon.blue() > 200 and icon.red() < 80, icon.name()
