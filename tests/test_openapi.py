"""GET /openapi.json: a valid OpenAPI 3.1 document that matches the app's routes, and every
real response (successes and errors) validates against the schema documented for its route and
status.

Response schemas are checked strictly: every object schema that lists ``properties`` is
closed (``additionalProperties: false``) for the check, so a field the document does not
describe fails the test as surely as a missing or mistyped one.
"""

from __future__ import annotations

import copy
import http.client
import re
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from service.api import DEFAULT_LIMIT, MAX_BODY_BYTES, MAX_LIMIT, ApiConfig, create_app
from service.schedules import Schedule, Scheduler
from service.task_service import TaskService
from storage import STATUSES
from tests.action_helpers import python_action
from tests.conftest import ApiEnv as Env
from tests.conftest import Client, Response, claim_task, served

# Nothing here depends on SQLite: every test runs on both backends.
pytestmark = pytest.mark.backends

DOC_URI = "urn:taskdesk:openapi"
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
JSON = {"Content-Type": "application/json"}
WAIT_MS = 15_000


# -- helpers ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory, backend: str,
           request: pytest.FixtureRequest) -> Iterator[Env]:
    with served(tmp_path_factory.mktemp("openapi"), backend, request) as env:
        yield env


@pytest.fixture(scope="module")
def document(shared: Env) -> dict[str, Any]:
    resp = shared.client.get("/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = resp.json()
    return doc


def closed(schema: Any) -> Any:
    """A copy of *schema* where every object schema with ``properties`` allows no others."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: closed(value) for key, value in schema.items()}
    if isinstance(out.get("properties"), dict) and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def response_validator(doc: dict[str, Any], path: str, method: str, status: int
                       ) -> Draft202012Validator:
    """A validator for the JSON body documented for (path, method, status), $refs resolved
    against the whole (closed) document."""
    responses = doc["paths"][path][method]["responses"]
    assert str(status) in responses, f"{method.upper()} {path} answers {status}, undocumented"
    content = responses[str(status)].get("content", {})
    assert "application/json" in content, f"{method.upper()} {path} {status}: no JSON schema"
    escaped = path.replace("~", "~0").replace("/", "~1")
    pointer = f"/paths/{escaped}/{method}/responses/{status}/content/application~1json/schema"
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, DRAFT202012.create_resource(closed(doc))
    )
    return Draft202012Validator(
        {"$ref": DOC_URI + "#" + urllib.parse.quote(pointer, safe="/~")},
        registry=registry,
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )


def check(doc: dict[str, Any], path: str, method: str, resp: Response) -> Any:
    """Assert that *resp* is documented for (path, method) and matches its schema."""
    validator = response_validator(doc, path, method, resp.status)
    assert resp.headers.get("content-type", "").split(";")[0] == "application/json", resp.headers
    body = resp.json()
    validator.validate(body)
    return body


def submit(client: Client, action: str, data: Any = None) -> str:
    resp = client.post("/tasks", {"action": action, "data": data})
    assert resp.status == 202, (resp.status, resp.body)
    task_id = resp.json()["id"]
    assert isinstance(task_id, str)
    return task_id


# -- the document itself ----------------------------------------------------------------------


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    validate(document, cls=OpenAPIV31SpecValidator)
    validate(document)  # and by version detection

    broken = copy.deepcopy(document)
    del broken["info"]
    with pytest.raises(Exception, match="info"):  # the validator does reject a broken one
        validate(broken, cls=OpenAPIV31SpecValidator)


def test_paths_and_methods_match_the_app_routes(
    document: dict[str, Any], service: TaskService
) -> None:
    app = create_app(service, ApiConfig())
    routes = {(re.sub(r"<(\w+)(?::[^>]*)?>", r"{\1}", route.rule), route.method.lower())
              for route in app.routes}
    documented = {(path, method) for path, method, _ in operations(document)}
    assert documented == routes
    assert len(routes) == 19


def test_path_parameters_are_declared(document: dict[str, Any]) -> None:
    for path, method, operation in operations(document):
        in_path = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == in_path, (method, path)
        for p in operation.get("parameters", []):
            if p["in"] == "path":
                assert p["required"] is True


def test_every_operation_documents_the_checks_made_before_routing(
    document: dict[str, Any]
) -> None:
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    for path, method, operation in operations(document):
        responses = operation["responses"]
        assert {"401", "403"} <= set(responses), (method, path)
        if method == "post":
            assert {"400", "413", "415"} <= set(responses), (method, path)
        assert any(code.startswith("2") for code in responses), (method, path)
        for code, response in responses.items():
            # All bodies are JSON, errors included; but a log's (text), the event stream's
            # and a listing's exported as CSV.
            media = {("get", "/tasks/{task_id}/log", "200"): {"text/plain"},
                     ("get", "/tasks", "200"): {"application/json", "text/csv"},
                     ("get", "/events", "200"): {"text/event-stream"}}.get(
                         (method, path, code), {"application/json"})
            assert set(response["content"]) == media, (method, path, code)
            if not code.startswith("2"):
                assert response["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}, (method, path, code)


def test_list_parameters_match_the_behaviour(document: dict[str, Any]) -> None:
    params = {p["name"]: p for p in document["paths"]["/tasks"]["get"]["parameters"]}
    assert set(params) == {"status", "action", "limit", "offset", "scheduled", "sort", "order",
                           "format"}
    assert params["status"]["schema"]["enum"] == list(STATUSES)
    assert params["sort"]["schema"]["enum"] == [
        "created", "started", "finished", "duration", "attempts", "action", "status",
        "priority", "newest"]
    assert params["order"]["schema"]["enum"] == ["asc", "desc"]
    assert params["format"]["schema"]["enum"] == ["csv", "json"]
    assert params["scheduled"]["schema"]["enum"] == ["true", "false"]
    limit = params["limit"]["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, MAX_LIMIT,
                                                                      DEFAULT_LIMIT)
    assert params["offset"]["schema"]["minimum"] == 0
    assert all(p["in"] == "query" and p["required"] is False for p in params.values())


def test_closed_schemas_reject_undocumented_and_missing_fields(
    document: dict[str, Any], shared: Env
) -> None:
    task_id = submit(shared.client, "uppercase", {"text": "x"})
    task = shared.client.get(f"/tasks/{task_id}").json()
    validator = response_validator(document, "/tasks/{task_id}", "get", 200)
    validator.validate(task)
    for bad in ({**task, "seq": 0}, {k: v for k, v in task.items() if k != "result"},
                {**task, "status": "pending"}, {**task, "attempts": "0"}):
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(bad)
    accepted = response_validator(document, "/tasks", "post", 202)
    with pytest.raises(jsonschema.ValidationError):
        accepted.validate({"id": "not-a-uuid", "status": "queued"})


# -- real responses against the documented schemas ---------------------------------------------


def test_success_responses_match_their_schemas(
    document: dict[str, Any], api_factory: Callable[..., Client], service: TaskService,
    pool_factory: Callable[..., Any], qtbot: Any,
) -> None:
    def boom(data: dict[str, Any]) -> Any:
        raise ValueError("no")

    service.registry.register(python_action("explode", boom, lambda d: None, "always fails"))
    client = api_factory(ApiConfig(worker_stats=lambda: {"busy": 0, "total": 2}, version="1.0"))

    resp = client.post("/tasks", {"action": "uppercase", "data": {"text": "hello world"}})
    done = check(document, "/tasks", "post", resp)["id"]
    summed = submit(client, "sum", {"numbers": [1, 2.5]})
    failing = submit(client, "explode")
    to_cancel = submit(client, "uppercase")
    cancelled = check(document, "/tasks/{task_id}/cancel", "post",
                      client.post(f"/tasks/{to_cancel}/cancel", headers=JSON))
    assert cancelled["status"] == "cancelled"

    pool = pool_factory()
    for task_id, status in [(done, "completed"), (summed, "completed"), (failing, "failed")]:
        qtbot.waitUntil(
            lambda t=task_id, s=status: client.get(f"/tasks/{t}").json()["status"] == s,
            timeout=WAIT_MS)
    pool.stop()
    queued = submit(client, "uppercase")
    running = submit(client, "uppercase")
    assert claim_task(service, running) is not None

    statuses = set()
    for task_id in (done, summed, failing, to_cancel, queued, running):
        task = check(document, "/tasks/{task_id}", "get", client.get(f"/tasks/{task_id}"))
        statuses.add(task["status"])
    assert statuses == set(STATUSES)  # a task in every status was checked

    listing = check(document, "/tasks", "get", client.get("/tasks"))
    assert listing["total"] == 6
    for status in STATUSES:
        check(document, "/tasks", "get", client.get(f"/tasks?status={status}&limit=1"))

    retried = check(document, "/tasks/{task_id}/retry", "post",
                    client.post(f"/tasks/{failing}/retry", headers=JSON))
    assert retried["status"] == "queued"
    check(document, "/stats", "get", client.get("/stats"))
    check(document, "/health", "get", client.get("/health"))
    nodes = check(document, "/nodes", "get", client.get("/nodes"))
    assert [n["current"] for n in nodes["nodes"]] == [True] and nodes["alive"] == 1
    check(document, "/openapi.json", "get", client.get("/openapi.json"))

    # Sorting and the scheduled filter; priority, a delay and dependencies in a task.
    later = submit_with(client, {"action": "x", "priority": 7, "delay": 60, "after": [done]})
    check(document, "/tasks/{task_id}", "get", client.get(f"/tasks/{later}"))
    listing = check(document, "/tasks", "get",
                    client.get("/tasks?scheduled=true&sort=priority"))
    assert [t["id"] for t in listing["tasks"]] == [later]
    exported = check(document, "/tasks", "get",
                     client.get("/tasks?format=json&sort=started&order=asc"))
    assert exported["count"] == len(exported["tasks"]) > 1
    deleted = check(document, "/tasks/{task_id}", "delete",
                    client.request("DELETE", f"/tasks/{done}"))
    assert deleted["id"] == done

    for verb, paused in (("pause", True), ("resume", False)):
        state = check(document, f"/queue/{verb}", "post",
                      client.post(f"/queue/{verb}", headers=JSON))
        assert state == {"paused": paused}


def submit_with(client: Client, body: dict[str, Any]) -> str:
    resp = client.post("/tasks", body)
    assert resp.status == 202, (resp.status, resp.body)
    task_id: str = resp.json()["id"]
    return task_id


def test_schedule_responses_match_their_schemas(
    document: dict[str, Any], api_factory: Callable[..., Client], service: TaskService,
) -> None:
    scheduler = Scheduler(service, [Schedule("every-minute", "uppercase", {"text": "t"},
                                             None, 60.0),
                                    Schedule("nightly", "x", {}, "30 2 * * *", None)])
    client = api_factory(ApiConfig(schedules=scheduler))
    listing = check(document, "/schedules", "get", client.get("/schedules"))
    assert [s["name"] for s in listing["schedules"]] == ["every-minute", "nightly"]
    fired = check(document, "/schedules/{name}/run", "post",
                  client.post("/schedules/nightly/run", headers=JSON))
    paused = check(document, "/schedules/{name}/pause", "post",
                   client.post("/schedules/nightly/pause", headers=JSON))
    assert paused["last_task"] == {"id": fired["id"], "status": "queued"}
    service.cancel(fired["id"])
    service.delete(fired["id"])
    resumed = check(document, "/schedules/{name}/resume", "post",
                    client.post("/schedules/nightly/resume", headers=JSON))
    assert resumed["last_task"] == {"id": fired["id"], "status": None}
    for verb in ("run", "pause", "resume"):
        check(document, f"/schedules/{{name}}/{verb}", "post",
              client.post(f"/schedules/nope/{verb}", headers=JSON))


@dataclass
class ErrorCase:
    path: str  # documented path template
    method: str
    url: str  # "{id}" is replaced by an existing queued task's id
    status: int
    body: bytes | None = None
    headers: dict[str, str] | None = None


ERROR_CASES = [
    ErrorCase("/tasks", "post", "/tasks", 400, b"{"),  # invalid JSON, with detail
    ErrorCase("/tasks", "post", "/tasks", 400, b'{"data": {}}'),  # action required
    ErrorCase("/tasks", "post", "/tasks", 400, b'{"action": "x", "extra": 1}'),
    ErrorCase("/tasks", "post", "/tasks", 415, b'{"action": "x"}', {"Content-Type": "text/plain"}),
    ErrorCase("/tasks", "post", "/tasks", 413, b"{}",
              {"Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)}),
    ErrorCase("/tasks", "post", "/tasks", 403, b'{"action": "x"}',
              {"Content-Type": "application/json", "Host": "evil.example"}),
    ErrorCase("/tasks", "get", "/tasks?status=bogus", 400),
    ErrorCase("/tasks", "get", "/tasks?limit=0", 400),
    ErrorCase("/tasks", "get", "/tasks", 403, headers={"Host": "evil.example"}),
    ErrorCase("/tasks/{task_id}", "get", f"/tasks/{uuid.uuid4()}", 404),
    ErrorCase("/tasks/{task_id}/retry", "post", f"/tasks/{uuid.uuid4()}/retry", 404, b"{}"),
    ErrorCase("/tasks/{task_id}/retry", "post", "/tasks/{id}/retry", 409, b"{}"),
    ErrorCase("/tasks/{task_id}/retry", "post", "/tasks/{id}/retry", 400, b'{"x": 1}'),
    ErrorCase("/tasks/{task_id}/retry", "post", "/tasks/{id}/retry", 415, b"{}",
              {"Content-Type": "text/plain"}),
    ErrorCase("/tasks/{task_id}/cancel", "post", f"/tasks/{uuid.uuid4()}/cancel", 404, b"{}"),
    ErrorCase("/tasks/{task_id}/cancel", "post", "/tasks/{id}/cancel", 400, b"[]"),
    ErrorCase("/tasks/{task_id}/cancel", "post", "/tasks/{id}/cancel", 413, b"{}",
              {"Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)}),
    ErrorCase("/tasks", "get", "/tasks?sort=oldest", 400),
    ErrorCase("/tasks", "get", "/tasks?order=up", 400),
    ErrorCase("/tasks", "get", "/tasks?format=xml", 400),
    ErrorCase("/tasks", "get", "/tasks?scheduled=1", 400),
    ErrorCase("/tasks/{task_id}", "delete", f"/tasks/{uuid.uuid4()}", 404),
    ErrorCase("/tasks/{task_id}", "delete", "/tasks/{id}", 409),
    ErrorCase("/queue/pause", "post", "/queue/pause", 400, b'{"x": 1}'),
    ErrorCase("/queue/resume", "post", "/queue/resume", 415, b"{}",
              {"Content-Type": "text/plain"}),
    ErrorCase("/schedules/{name}/run", "post", "/schedules/nope/run", 404, b"{}"),
    ErrorCase("/schedules/{name}/pause", "post", "/schedules/nope/pause", 400, b"[]"),
    ErrorCase("/schedules/{name}/resume", "post", "/schedules/nope/resume", 413, b"{}",
              {"Content-Type": "application/json", "Content-Length": str(MAX_BODY_BYTES + 1)}),
    ErrorCase("/schedules", "get", "/schedules", 403, headers={"Host": "evil.example"}),
    ErrorCase("/stats", "get", "/stats", 403, headers={"Host": "evil.example"}),
    ErrorCase("/health", "get", "/health", 403, headers={"Host": "evil.example"}),
    ErrorCase("/openapi.json", "get", "/openapi.json", 403, headers={"Host": "evil.example"}),
    ErrorCase("/actions", "get", "/actions", 403, headers={"Host": "evil.example"}),
    ErrorCase("/tasks/{task_id}/log", "get", f"/tasks/{uuid.uuid4()}/log", 404),
    ErrorCase("/tasks/{task_id}/log", "get", "/tasks/{id}/log?offset=-1", 400),
    ErrorCase("/events", "get", "/events?status=bogus", 400),
    ErrorCase("/events", "get", "/events", 400, headers={"Last-Event-ID": "x"}),
    ErrorCase("/events", "get", "/events", 403, headers={"Host": "evil.example"}),
]


def _send(client: Client, case: ErrorCase, url: str) -> Response:
    """Send with http.client, so that Host and Content-Length can be set freely (a declared
    length over the limit is answered before any body is sent)."""
    parts = urllib.parse.urlsplit(client.base_url)
    assert parts.hostname is not None and parts.port is not None
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    headers = {"Content-Type": "application/json", **(case.headers or {})}
    try:
        conn.putrequest(case.method.upper(), url, skip_host="Host" in headers,
                        skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        declared = "Content-Length" in headers
        if case.body is not None and not declared:
            conn.putheader("Content-Length", str(len(case.body)))
        conn.endheaders(None if declared else case.body)
        raw = conn.getresponse()
        return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, raw.read())
    finally:
        conn.close()


@pytest.mark.parametrize("case", ERROR_CASES,
                         ids=[f"{c.method}-{c.url}-{c.status}" for c in ERROR_CASES])
def test_error_responses_match_their_schemas(
    document: dict[str, Any], shared: Env, case: ErrorCase
) -> None:
    url = case.url.replace("{id}", submit(shared.client, "uppercase"))
    resp = _send(shared.client, case, url)
    assert resp.status == case.status, (resp.status, resp.body)
    body = check(document, case.path, case.method, resp)
    assert body["error"]


def test_401_responses_match_their_schemas(
    document: dict[str, Any], api_factory: Callable[..., Client]
) -> None:
    client = api_factory(ApiConfig(token="s3cret"))
    task_id = str(uuid.uuid4())
    checked = 0
    for path, method, _ in operations(document):
        url = path.replace("{task_id}", task_id).replace("{name}", "nightly")
        body = b"{}" if method == "post" else None
        resp = client.request(method.upper(), url, body=body,
                              headers={**JSON, "Authorization": "Bearer wrong"})
        assert resp.status == 401, (method, path)
        check(document, path, method, resp)
        checked += 1
    assert checked == 19
