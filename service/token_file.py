"""The API token kept beside the database, for when actions can start programs.

Once an action other than the built-ins is registered, anyone who can reach the API can start
programs, and on a desktop that includes every local user and any web page the browser opens
(a request to 127.0.0.1 needs no permission). So the API then requires a bearer token even on
loopback, as Jupyter does. Without ``--token``, Taskdesk makes one at its first start and keeps
it in ``<database>.token``, readable by its owner only (0600), where the window, the command
line and the user's own scripts find it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import platformdirs

TOKEN_BYTES = 32


def token_path(db: str | Path) -> Path:
    """Where the token of database *db* lives: beside a SQLite file, or for a database URL
    (whose server is not this machine's to write beside) in the user's config folder, one
    file per URL."""
    text = str(db)
    if "://" in text:
        import hashlib  # here: `taskdesk list` reads the token of a file database, quickly

        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        return platformdirs.user_config_path("taskdesk", appauthor=False) / f"token-{digest}"
    path = Path(text)
    return path.with_name(path.name + ".token")


def read_token(path: Path) -> str | None:
    """The token in *path*, or None when there is none (or it is empty)."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return token or None


def load_or_create_token(path: Path) -> str:
    """The token in *path*, made (random, 0600, written atomically) if there is none yet.
    Raises OSError naming the file when it cannot be read or written."""
    token = read_token(path)
    if token is not None:
        return token
    import secrets  # only the program makes one; the command line only reads it

    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    temp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        # link, not replace: if another process made one meanwhile, theirs wins.
        os.link(temp, path)
    except FileExistsError:
        pass
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    existing = read_token(path)
    assert existing is not None
    return existing
