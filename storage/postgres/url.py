"""PostgreSQL URLs as Taskdesk takes them (``--db postgresql://user@host:port/dbname``) and as
it shows them: never with the password, which may be in the URL or in ``PGPASSWORD``/
``~/.pgpass`` (libpq reads those itself)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """*url* without its password (and without anything after ``?``, where libpq options such
    as ``password=`` may hide one)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}@{hostport}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "a PostgreSQL database (its URL cannot be shown)"


def scrub(text: str, url: str) -> str:
    """*text* (an error message from libpq, say) with any password of *url* removed."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    return text.replace(password, "***") if password else text
