"""Reading requests and writing answers, for every route of the API: JSON bodies with strict
parsing, query parameters refused when given twice, and every answer JSON (errors too)."""

from __future__ import annotations

import json
import re
from typing import Any, NoReturn

import bottle

from service.json_limits import may_be_unstorable, unstorable
from service.limits import MAX_BODY_BYTES
from service.task_service import dumps

# bottle keeps the body in memory up to this size and refuses (413) larger JSON bodies.
bottle.BaseRequest.MEMFILE_MAX = MAX_BODY_BYTES


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> NoReturn:
    raise bottle.HTTPResponse(
        body=dumps(body),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def json_answer(status: int, body: Any) -> str:
    """The answer of a route that returns normally: raising an HTTPResponse, as
    json_response does, makes bottle build a second response object and copy it over, about
    a tenth of the Python work of a POST /tasks."""
    response = bottle.response
    response.status = status
    response.content_type = "application/json"
    return dumps(body)


def json_text_response(status: int, text: str) -> NoReturn:
    """Like json_response, for JSON that is already text."""
    raise bottle.HTTPResponse(body=text, status=status,
                              headers={"Content-Type": "application/json"})


def json_error(
    status: int, message: str, headers: dict[str, str] | None = None, detail: str | None = None
) -> NoReturn:
    body = {"error": message} if detail is None else {"error": message, "detail": detail}
    json_response(status, body, headers)


_HOST_HEADER = re.compile(r"^(?:\[(?P<ip6>[0-9a-f:.]+)\]|(?P<name>[^:\[\]@/\s]+))(?::\d{1,5})?$")


def host_name(host_header: str) -> str | None:
    """'[::1]:8080' → '::1', 'localhost:8080' → 'localhost'; None if it is not a plain host."""
    m = _HOST_HEADER.match(host_header.strip().lower())
    if m is None:
        return None
    return m["ip6"] or m["name"]


def read_body() -> bytes:
    request = bottle.request
    if request.content_length > MAX_BODY_BYTES:
        json_error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    # cheroot has already decoded a chunked body; bottle would try to decode it again.
    stream = request.environ["wsgi.input"] if request.chunked else request.body
    try:
        raw: bytes = stream.read(MAX_BODY_BYTES + 1)
    except ValueError as exc:  # cheroot's chunked decoding: a bad size line or terminator
        # The server closes the connection after this answer (the rest of the body is unread).
        json_error(400, f"malformed chunked body: {exc}")
    if len(raw) > MAX_BODY_BYTES:
        json_error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    return raw


def decode_json(raw: bytes) -> Any:
    if not raw.strip():
        json_error(400, "invalid JSON", detail="the request body is empty")
    try:
        # What json.loads does with bytes, with a decoder made once: json.loads with options
        # builds a new decoder, and its scanner, per call (half the cost of a small body).
        value = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except RecursionError:
        json_error(400, "invalid JSON", detail="nested too deeply")
    except (ValueError, UnicodeDecodeError) as exc:
        json_error(400, "invalid JSON", detail=str(exc))
    _check_decoded(raw, value)
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object with a name given twice is refused, not read as its last value: which one
    wins differs between parsers, so a body could mean one thing to a proxy or a log and
    another here (RFC 7493, I-JSON, forbids it; it forbids lone surrogates too, see below)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate name {key!r} in an object")
            seen.add(key)
    return obj


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


# Its state is per call: one decoder serves every request thread.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)


def _check_decoded(raw: bytes, value: Any) -> None:
    """Refuse JSON that Python parses but Taskdesk could not store and give back (see
    service/json_limits.py). Bodies that cannot hold such values, almost all, are not walked."""
    if may_be_unstorable(raw):
        problem = unstorable(value)
        if problem is not None:
            json_error(400, "invalid JSON", detail=problem)


def query_value(name: str) -> str | None:
    """A query parameter as bottle gives it. One given twice is refused: frameworks differ in
    which one they use (bottle takes the last), so a filter could silently not be the one the
    client, or a proxy that checked the first, meant."""
    values: list[str] = bottle.request.query.getall(name)
    if len(values) > 1:
        json_error(400, f"{name} given more than once")
    return values[0] if values else None


def query_text(name: str) -> str | None:
    """A query parameter as text; bottle hands them over decoded as latin-1."""
    raw = query_value(name)
    if raw is None or raw == "":
        return None
    try:
        return str(raw.encode("latin-1").decode("utf-8"))
    except UnicodeError:
        json_error(400, f"{name} must be UTF-8 text")


_INTEGER = re.compile(r"-?[0-9]+")


def int_param(name: str, default: int, low: int, high: int) -> int:
    raw = query_value(name)
    if raw is None or raw == "":
        return default
    # Decimal digits only: int() would also take " 5", "+5", "1_0" and other scripts' digits
    # ("٥"), none of which is an integer in the documented sense.
    if _INTEGER.fullmatch(raw) is None:
        json_error(400, f"{name} must be an integer")
    # Past 19 significant digits it is out of range anyway (int() refuses over 4,300).
    value = int(raw) if len(raw.lstrip("-").lstrip("0")) <= 19 else high + 1
    if not low <= value <= high:
        json_error(400, f"{name} must be between {low} and {high}")
    return value


def bool_param(name: str) -> bool:
    """A true/false query parameter; absent or empty is false. Only the two words, in lower
    case: "1", "yes" or "True" would each be a guess at what the client meant."""
    raw = query_value(name)
    if raw is None or raw in ("", "false"):
        return False
    if raw == "true":
        return True
    json_error(400, f"{name} must be true or false")


def parse_optional_empty_body() -> None:
    """retry, cancel, pause and the like take no body: accept none, or an empty JSON
    object. Whitespace alone is neither (it is not JSON text): a 400, like any other body."""
    raw = read_body()
    if raw and decode_json(raw) != {}:
        json_error(400, "this request takes no body (or an empty JSON object)")
