"""A picture of the command line at work: the real output of real commands, drawn as a terminal.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/cli_screenshot.py [OUT.png]

OUT defaults to docs/cli.png. There is no terminal emulator to take a screenshot of here
(offscreen, in CI), so this does the next best thing and says so in the picture: it starts a
headless Taskdesk (tests/launcher.py) on a temporary database with an actions file of two
commands, runs ``taskdesk`` commands against it in a pseudo-terminal of COLUMNS columns (so
that they print tables and colours as they do on a terminal), and draws what they printed,
ANSI colours included, in a monospace font after a prompt and the command line. Every
character and colour comes from the commands; only the drawing is this script's.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shlex
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a plain script from any folder
    sys.path.insert(0, str(ROOT))

from PySide6.QtCore import QPointF, QRectF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QGuiApplication, QImage, QPainter  # noqa: E402

from tests.launcher import MAIN, ServedProcess, child_env, headless, main_command  # noqa: E402

COLUMNS, ROWS = 104, 50
TIMEOUT = 60.0
ACTIONS = r'''
[actions.backup]
description = "Copy a folder, part by part"
argv = ["sh", "-c", "for i in $(seq 1 $0); do echo \"copied part $i of $0\"; sleep 0.3; done",
        "{parts}"]
[actions.backup.schema]
type = "object"
required = ["folder", "parts"]
properties.folder = { type = "string" }
properties.parts = { type = "integer" }

[actions.sync]
description = "Synchronise a folder, reporting progress"
argv = ["sh", "-c", """for i in $(seq 1 $0); do
    echo "::progress $((i * 100 / $0)) part $i of $0"; sleep 0.3
done""", "{parts}"]
[actions.sync.schema]
type = "object"
required = ["folder", "parts"]
properties.folder = { type = "string" }
properties.parts = { type = "integer" }

[actions.convert]
description = "Convert a video"
argv = ["sh", "-c", "echo \"reading $0\"; echo 'unsupported codec' >&2; exit 2", "{file}"]
[actions.convert.schema]
type = "object"
required = ["file"]
properties.file = { type = "string" }
'''

# Tango, as GNOME Terminal draws the eight ANSI colours; dark background.
BACKGROUND, FOREGROUND, TITLE_BAR = "#1e1f22", "#d3d7cf", "#2d2f33"
ANSI = {"31": "#ef2929", "32": "#8ae234", "33": "#fce94f", "34": "#729fcf", "35": "#ad7fa8",
        "36": "#34e2e2", "37": "#eeeeec"}
PROMPT_COLOUR = "#729fcf"
SGR = re.compile(r"\x1b\[([0-9;]*)m")


class Session:
    """Runs ``taskdesk`` commands in a pseudo-terminal and keeps the transcript."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: list[tuple[str, str]] = []  # ("prompt", command) or ("output", text)

    def run(self, *args: str, shown: str | None = None) -> str:
        """Run ``taskdesk ARGS``; what it printed (stdout and stderr, as on a terminal)."""
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
        proc = subprocess.Popen(main_command(*args), cwd=ROOT, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
        os.close(follower)
        output = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the other end closed: the command ended
                break
            if not chunk:
                break
            output += chunk
        os.close(leader)
        proc.wait(TIMEOUT)
        text = output.decode("utf-8", "replace").replace("\r\n", "\n")
        self.lines.append(("prompt", shown or shlex.join(["taskdesk", *args])))
        self.lines += [("output", line) for line in text.rstrip("\n").split("\n") if text]
        return re.sub(SGR, "", text)


def demo(session: Session) -> None:
    """The commands of the picture, against a Taskdesk with tasks of every kind."""
    hello = session.run("submit", "uppercase", "text=hello world", "--wait",
                        shown='taskdesk submit uppercase text="hello world" --wait')
    backup = session.run("submit", "backup", "folder=docs", "parts=3").strip()
    session.run("log", "--follow", backup)
    failed = session.run("submit", "convert", "file=clip.mov", "--wait")
    # More tasks for the listing, made off the picture: one running, one due later, one
    # cancelled.
    unseen = Session(session.env)
    unseen.run("submit", "sum", "numbers=1,2,3.5")
    photos = unseen.run("submit", "sync", "folder=photos", "parts=40").strip()
    unseen.run("submit", "uppercase", "text=later", "--delay", "10m")
    dropped = unseen.run("submit", "backup", "folder=tmp", "parts=1", "--after", photos)
    unseen.run("cancel", dropped.strip())
    deadline = time.monotonic() + TIMEOUT
    while "part 4 of" not in unseen.run("log", photos):  # running, and some way in
        if time.monotonic() > deadline:
            raise SystemExit("the backup of photos did not start")
        time.sleep(0.1)
    session.run("list", "--limit", "7")
    session.run("wait", hello.split()[0], backup, failed.split()[0])
    session.run("stats")


def wrap(text: str, width: int) -> list[str]:
    """*text* cut into rows of *width* characters as a terminal wraps it, each row starting
    with the colours in force where it starts."""
    rows, row, used, state = [], "", 0, ""
    start = 0
    for match in [*SGR.finditer(text), None]:
        piece = text[start:match.start() if match else len(text)]
        while piece:
            room = width - used
            row += piece[:room]
            used += len(piece[:room])
            piece = piece[room:]
            if piece:
                rows.append(row)
                row, used = state, 0
        if match is None:
            break
        row += match[0]
        state = "" if match[1] in ("", "0") else state + match[0]
        start = match.end()
    rows.append(row)
    return rows


def draw(transcript: list[tuple[str, str]], out: Path) -> None:
    lines: list[tuple[str, str]] = []
    for kind, text in transcript:
        if kind == "prompt":  # "$ " before it
            first, *rest = wrap(text, COLUMNS - 2)
            lines.append(("prompt", first))
            lines += [("continued", part) for part in rest]
        else:
            lines += [("output", part) for part in wrap(text, COLUMNS)]
    font = QFont("DejaVu Sans Mono")
    font.setPixelSize(15)
    bold = QFont(font)
    bold.setBold(True)
    metrics = QFontMetricsF(font)
    cell_w, cell_h = metrics.horizontalAdvance("M"), metrics.height() + 2
    pad, bar = 18.0, 34.0
    width = int(pad * 2 + cell_w * COLUMNS)
    height = int(bar + pad * 2 + cell_h * len(lines))
    image = QImage(width, height, QImage.Format.Format_RGB32)
    image.fill(QColor(BACKGROUND))
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
    painter.fillRect(QRectF(0, 0, width, bar), QColor(TITLE_BAR))
    for i, colour in enumerate(("#ff5f57", "#febc2e", "#28c840")):
        painter.setBrush(QColor(colour))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawEllipse(QPointF(pad + i * 20, bar / 2), 6, 6)
    painter.setFont(font)
    painter.setPen(QColor("#9a9ca0"))
    painter.drawText(QRectF(0, 0, width, bar), Qt.AlignmentFlag.AlignCenter,
                     "taskdesk — a rendering of real output, captured from a pseudo-terminal")
    baseline = bar + pad + metrics.ascent()
    for row, (kind, text) in enumerate(lines):
        y = baseline + row * cell_h
        if kind in ("prompt", "continued"):
            painter.setFont(bold)
            if kind == "prompt":
                painter.setPen(QColor(PROMPT_COLOUR))
                painter.drawText(QPointF(pad, y), "$")
            painter.setPen(QColor(FOREGROUND))
            painter.drawText(QPointF(pad + cell_w * (2 if kind == "prompt" else 0), y), text)
            continue
        column, colour, is_bold, dim = 0, FOREGROUND, False, False
        start = 0
        for match in [*SGR.finditer(text), None]:
            piece = text[start:match.start() if match else len(text)]
            if piece:
                painter.setFont(bold if is_bold else font)
                painter.setPen(QColor("#8a8c90") if dim else QColor(colour))
                painter.drawText(QPointF(pad + column * cell_w, y), piece)
                column += len(piece)
            if match is None:
                break
            start = match.end()
            for code in (match[1] or "0").split(";"):
                if code == "0":
                    colour, is_bold, dim = FOREGROUND, False, False
                elif code == "1":
                    is_bold = True
                elif code == "2":
                    dim = True
                elif code in ANSI:
                    colour = ANSI[code]
    painter.end()
    if not image.save(str(out)):
        raise SystemExit(f"cannot write {out}")


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else ROOT / "docs" / "cli.png"
    app = QGuiApplication.instance() or QGuiApplication(argv[:1])
    with tempfile.TemporaryDirectory(prefix="taskdesk-cli-shot-") as tmp:
        folder = Path(tmp)
        actions = folder / "actions.toml"
        actions.write_text(ACTIONS, encoding="utf-8")
        db = folder / "tasks.db"
        homes = {name: str(folder / name.lower()) for name in
                 ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")}
        server = ServedProcess(main_command(*headless(
            db, "--actions", str(actions), "--no-plugins", "--max-attempts", "1",
            "--work-delay", "0.2")), env=homes, log_path=folder / "taskdesk.log")
        with server:
            env = child_env({**homes, "TASKDESK_URL": server.base_url, "TASKDESK_DB": str(db),
                             "TERM": "xterm-256color"})
            env.pop("NO_COLOR", None)
            session = Session(env)
            demo(session)
        draw(session.lines, out)
    del app
    print(f"wrote {out} ({MAIN.name} commands against a real Taskdesk)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
