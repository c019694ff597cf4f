"""GET /tasks?format=csv|json: every task of a listing, as a file, streamed.

The listing's filters and order apply; limit and offset do not (an export has every matching
task). They are ignored rather than refused: a client that adds format= to the URL of a page
it lists, limit and offset included, gets the export it asked for. The body is written a page at a
time from keyset pages of the store (service.export), so a million tasks never sit in
memory; the first page is read before the answer starts, so a database that cannot be read
is an ordinary JSON 503. A failure after that ends the connection without the end of the
chunked body: the client sees the export was cut short, never a file that looks whole.
An export holds one of the server's threads while it runs, as an event stream does.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from typing import NoReturn

import bottle

from service.api.http_io import bool_param, json_error, query_text
from service.errors import ValidationError
from service.export import FORMATS, MEDIA_TYPES, chunks
from service.task_service import TaskService

log = logging.getLogger("taskdesk.api")

EXPORT_PAGE = 1000  # tasks read at a time: about 0.5 MB of CSV


def export_tasks(service: TaskService, fmt: str) -> NoReturn:
    if fmt not in FORMATS:
        json_error(400, f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    try:
        query = service.listing_query(
            query_text("status"), query_text("action"), scheduled=bool_param("scheduled"),
            sort=query_text("sort"), order=query_text("order"))
    except ValidationError as exc:
        json_error(400, str(exc))
    pages = service.iter_pages(query, EXPORT_PAGE)
    first = next(pages, [])  # read now: a failure here is still a JSON error
    name = time.strftime("tasks-%Y%m%d-%H%M%S", time.localtime(service.now()))
    raise bottle.HTTPResponse(
        body=_encoded(chunks(itertools.chain([first], pages), fmt)), status=200,
        headers={"Content-Type": MEDIA_TYPES[fmt],
                 "Content-Disposition": f'attachment; filename="{name}.{fmt}"',
                 "Cache-Control": "no-store"})


def _encoded(pieces: Iterator[str]) -> Iterator[bytes]:
    try:
        for piece in pieces:
            yield piece.encode("utf-8")
    except Exception as exc:
        log.warning("export cut short: %s", exc)
        raise
