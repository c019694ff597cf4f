"""ActionRegistry: schema validation messages and fields, unknown names, duplicates, the
built-ins, and the quick check that keeps validation cheap."""

from __future__ import annotations

import itertools
import random
import threading
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from service.actions import (
    Action,
    ActionRegistry,
    DuplicateActionError,
    InvalidActionError,
    RunContext,
    SimpleContext,
    default_registry,
)
from service.actions.builtin import SUM_SCHEMA, UPPERCASE_SCHEMA
from service.actions.quick_check import compile_quick_check
from service.errors import ValidationError
from service.task_service import TaskService
from storage import TaskQuery, TaskStore

FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["folder", "mode"],
    "properties": {
        "folder": {"type": "string", "minLength": 1, "format": "path"},
        "mode": {"enum": ["fast", "best"]},
        "level": {"type": "integer", "minimum": 1, "maximum": 9},
        "ratio": {"type": "number", "exclusiveMinimum": 0},
        "name": {"type": "string", "maxLength": 5, "pattern": "^[a-z]+$"},
        "files": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "options": {
            "type": "object",
            "required": ["depth"],
            "additionalProperties": False,
            "properties": {"depth": {"type": "integer"}, "follow": {"type": "boolean"}},
        },
        "a b": {"const": "x"},
    },
}


def _run(data: dict[str, Any], ctx: RunContext) -> Any:
    return {"ok": True}


def make_action(name: str, schema: dict[str, Any] | None = None, source: str = "test",
                **options: Any) -> Action:
    return Action(name=name, description=f"{name} for a test", schema=schema or {},
                  kind="python", run=_run, source=source, **options)


@pytest.fixture
def registry() -> ActionRegistry:
    registry = default_registry()
    registry.register(make_action("form", FORM_SCHEMA))
    return registry


def refusal(registry: ActionRegistry, name: str, data: Any) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        registry.validate(name, data)
    return caught.value


VALID = {"folder": "/tmp", "mode": "fast"}


@pytest.mark.parametrize(("data", "path", "message"), [
    ({"mode": "fast"}, "folder", "required"),
    ({**VALID, "folder": 5}, "folder", "5 is not of type 'string'"),
    ({**VALID, "folder": ""}, "folder", "'' should be non-empty"),
    ({**VALID, "mode": "slow"}, "mode", "'slow' is not one of ['fast', 'best']"),
    ({**VALID, "level": 0}, "level", "0 is less than the minimum of 1"),
    ({**VALID, "level": 10}, "level", "10 is greater than the maximum of 9"),
    ({**VALID, "level": 2.5}, "level", "2.5 is not of type 'integer'"),
    ({**VALID, "level": True}, "level", "True is not of type 'integer'"),
    ({**VALID, "ratio": 0}, "ratio", "0 is less than or equal to the minimum of 0"),
    ({**VALID, "name": "abcdef"}, "name", "'abcdef' is too long"),
    ({**VALID, "name": "ab1"}, "name", "'ab1' does not match '^[a-z]+$'"),
    ({**VALID, "files": []}, "files", "[] should be non-empty"),
    ({**VALID, "files": ["a", "b", 3]}, "files[2]", "3 is not of type 'string'"),
    ({**VALID, "options": {}}, "options.depth", "required"),
    ({**VALID, "options": {"depth": "1"}}, "options.depth", "'1' is not of type 'integer'"),
    ({**VALID, "options": {"depth": 1, "extra": 1}}, "options.extra",
     "not allowed (no such field)"),
    ({**VALID, "a b": "y"}, '["a b"]', "'x' was expected"),
])
def test_each_rule_names_the_field_and_the_rule(
    registry: ActionRegistry, data: dict[str, Any], path: str, message: str
) -> None:
    error = refusal(registry, "form", data)
    assert error.fields == {path: message}
    dotted = f"data.{path}" if not path.startswith("[") else f"data{path}"
    assert str(error) == f"{dotted}: {message}"


def test_the_whole_data_has_the_empty_path() -> None:
    registry = default_registry()
    error = refusal(registry, "uppercase", [1])
    assert error.fields == {"": "[1] is not of type 'object'"}
    assert str(error) == "data: [1] is not of type 'object'"


def test_every_problem_is_listed_sorted_with_indexes_in_numeric_order(
    registry: ActionRegistry,
) -> None:
    numbers = [1] * 12
    numbers[10] = "ten"  # type: ignore[call-overload]
    numbers[2] = "two"  # type: ignore[call-overload]
    error = refusal(registry, "sum", {"numbers": numbers})
    assert str(error) == ("data.numbers[2]: 'two' is not of type 'number'; "
                          "data.numbers[10]: 'ten' is not of type 'number'")
    error = refusal(registry, "form", {"mode": "slow", "level": 0})
    assert list(error.fields) == ["folder", "level", "mode"]
    assert str(error).startswith("data.folder: required; data.level: 0 is less than")


def test_many_problems_are_bounded(registry: ActionRegistry) -> None:
    error = refusal(registry, "sum", {"numbers": ["x"] * 100_000})
    assert len(error.fields) == 50  # collected, not all 100,000
    assert str(error).count("is not of type") == 10 and str(error).endswith("; and more")


def test_a_huge_value_is_cut_in_the_middle_of_the_message(registry: ActionRegistry) -> None:
    error = refusal(registry, "form", {**VALID, "name": "a" * 1_000_000})
    assert len(error.fields["name"]) < 250
    assert error.fields["name"].startswith("'aaa") and error.fields["name"].endswith("is too long")
    assert "…" in error.fields["name"]


def test_format_is_an_annotation_not_a_rule() -> None:
    registry = ActionRegistry()
    registry.register(make_action("mail", {"properties": {"to": {"format": "email"}}}))
    registry.validate("mail", {"to": "not an address"})


def test_validation_error_still_takes_just_a_message() -> None:
    error = ValidationError("action required")
    assert str(error) == "action required" and error.fields == {}


def test_invalid_data_stores_nothing_and_the_api_message_names_the_field(
    store: TaskStore,
) -> None:
    service = TaskService(store)
    with pytest.raises(ValidationError, match=r"^data.numbers\[1\]: 'x' is not of type"):
        service.submit("sum", {"numbers": [1, "x"]})
    assert store.count(TaskQuery()) == 0


# -- unknown names, duplicates, invalid schemas ---------------------------------------------


def test_unknown_names_run_the_default_action_when_accepted() -> None:
    registry = default_registry()
    registry.validate("anything", {"whatever": [1, {"x": None}]})
    action = registry.resolve("anything")
    assert action.run({}, SimpleContext()) == {"output": "processed"}
    assert registry.get("anything") is None


def test_unknown_names_are_refused_naming_the_known_ones() -> None:
    registry = default_registry(unknown="refuse")
    registry.register(make_action("archive"))
    expected = "unknown action 'nope'; known actions: archive, sum, uppercase"
    with pytest.raises(ValidationError) as caught:
        registry.validate("nope", {})
    assert str(caught.value) == expected
    with pytest.raises(ValidationError, match=expected):
        registry.resolve("nope")
    assert registry.resolve("sum").name == "sum"


def test_a_taken_name_is_refused_naming_both_sources() -> None:
    registry = default_registry()
    registry.register(make_action("tool", source="plugin /p/a.py"))
    with pytest.raises(DuplicateActionError) as caught:
        registry.register(make_action("tool", source="/c/actions.toml line 3"))
    assert str(caught.value) == ("action 'tool' from /c/actions.toml line 3 has the same name "
                                 "as the one from plugin /p/a.py")
    with pytest.raises(DuplicateActionError, match=r"from plugin /p/b\.py .* from built-in"):
        registry.register(make_action("uppercase", source="plugin /p/b.py"))
    kept = registry.get("tool")
    assert kept is not None and kept.source == "plugin /p/a.py"


def test_an_invalid_schema_is_refused_with_its_source() -> None:
    registry = ActionRegistry()
    with pytest.raises(InvalidActionError, match=r"'bad' from plugin /x\.py: invalid schema"):
        registry.register(make_action("bad", {"type": "text"}, source="plugin /x.py"))
    with pytest.raises(InvalidActionError, match="must be an object"):
        registry.register(make_action("bad", ["not", "a", "schema"]))  # type: ignore[arg-type]
    assert registry.names() == []


def test_the_unknown_option_is_checked() -> None:
    with pytest.raises(ValueError, match="accept"):
        ActionRegistry("ignore")  # type: ignore[arg-type]


def test_describe_lists_the_actions_for_get_actions() -> None:
    registry = default_registry()
    registry.register(make_action("archive", {"type": "object"}))
    described = registry.describe()
    assert [d["name"] for d in described] == ["archive", "sum", "uppercase"]
    assert described[2] == {"name": "uppercase", "description": 'data.text → {"output": TEXT}',
                            "kind": "builtin", "schema": UPPERCASE_SCHEMA}
    assert [a.name for a in registry.actions()] == ["archive", "sum", "uppercase"]


def test_registering_while_other_threads_validate() -> None:
    registry = default_registry()
    stop = threading.Event()
    errors: list[BaseException] = []

    def validate() -> None:
        while not stop.is_set():
            try:
                registry.validate("uppercase", {"text": "x"})
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=validate) for _ in range(2)]
    for thread in threads:
        thread.start()
    for i in range(200):
        registry.register(make_action(f"a{i}"))
    stop.set()
    for thread in threads:
        thread.join()
    assert not errors and len(registry.names()) == 202


# -- the built-ins ---------------------------------------------------------------------------


def test_builtins_keep_the_tutorial_behaviour() -> None:
    registry = default_registry()
    ctx = SimpleContext()
    uppercase, total = registry.resolve("uppercase"), registry.resolve("sum")
    assert uppercase.run({"text": "héllo"}, ctx) == {"output": "HÉLLO"}
    assert uppercase.run({}, ctx) == {"output": ""}
    assert total.run({"numbers": [1, 2, 3.5]}, ctx) == {"output": 6.5}
    assert total.run({}, ctx) == {"output": 0}
    # Other properties are allowed, as before.
    registry.validate("uppercase", {"text": "x", "extra": [1]})
    registry.validate("sum", {"numbers": [], "note": "x"})
    assert all(a.kind == "builtin" and a.simulated_work and a.source == "built-in"
               for a in registry.actions())


@pytest.mark.parametrize("numbers", [[1e308, 1e308], [10**5000, 0.5], [float("inf")]])
def test_sum_keeps_its_total_check_after_the_schema(numbers: list[Any]) -> None:
    with pytest.raises(ValidationError, match="sum: the total is too large to represent") as e:
        default_registry().validate("sum", {"numbers": numbers})
    assert e.value.fields == {"numbers": "the total is too large to represent"}


# -- the quick check ------------------------------------------------------------------------


def test_valid_data_never_reaches_jsonschema(monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick check answers for the built-ins and common schemas: jsonschema (17 µs for
    uppercase) runs only for data that may be invalid."""
    registry = default_registry()
    registry.register(make_action("form", FORM_SCHEMA))

    def slow(self: Any, instance: Any) -> Any:
        raise AssertionError("jsonschema was asked")

    monkeypatch.setattr(Draft202012Validator, "iter_errors", slow)
    registry.validate("uppercase", {"text": "hello"})
    registry.validate("sum", {"numbers": [1, 2.5, -3]})
    registry.validate("anything", {"x": 1})
    registry.validate("form", {**VALID, "level": 3, "ratio": 0.5, "name": "abc",
                               "files": ["a"], "options": {"depth": 2, "follow": True},
                               "a b": "x"})


SCHEMAS: list[dict[str, Any]] = [
    UPPERCASE_SCHEMA,
    SUM_SCHEMA,
    FORM_SCHEMA,
    {"type": ["integer", "null"], "minimum": 0, "exclusiveMaximum": 3},
    {"exclusiveMinimum": 0, "maximum": 2},
    {"minimum": 1, "exclusiveMaximum": 2.0},
    {"enum": [1, "1", None, True, 2.0]},
    {"const": 1},
    {"type": "array", "items": {"type": "number", "maximum": 1}, "maxItems": 3},
    {"properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "string"}},
    {"type": "string", "minLength": 2, "maxLength": 3, "pattern": "b"},
]
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2, 3, 1.0, 2.0, 0.5, 1e400, float("nan"), "", "1", "b", "ab",
    "abc", "abcd", "fast", "x", [], [1], [1, 2], [0.5, "a"], [1, 2, 3, 4], {}, {"a": 1},
    {"a": "1"}, {"b": "x"}, {"b": 1}, {"text": "t"}, {"text": 1}, {"numbers": [1, True]},
    {"numbers": [1.5]}, {"folder": "/", "mode": "best"}, {"folder": "", "mode": "best"},
]


def test_the_quick_check_accepts_only_what_jsonschema_accepts() -> None:
    rng = random.Random(7)
    instances: list[Any] = list(VALUES)
    for _ in range(3000):  # objects and arrays made of the values above
        picked = rng.sample(VALUES, 3)
        instances.append(picked)
        keys = rng.sample(["a", "b", "text", "numbers", "folder", "mode", "level", "options",
                           "files", "name", "ratio", "a b"], 3)
        instances.append(dict(zip(keys, picked, strict=True)))
    accepted = 0
    for schema, instance in itertools.product(SCHEMAS, instances):
        quick = compile_quick_check(schema)
        assert quick is not None, schema
        if quick(instance):
            accepted += 1
            assert Draft202012Validator(schema).is_valid(instance), (schema, instance)
    assert accepted > 1000  # it does answer, not only "not sure"


@pytest.mark.parametrize("schema", [
    {"anyOf": [{"type": "object"}]},
    {"$ref": "#/$defs/x", "$defs": {"x": {}}},
    {"properties": {"a": {"oneOf": [{}]}}},
    {"items": {"uniqueItems": True}},
    {"type": "object", "patternProperties": {"^a": {}}, "additionalProperties": False},
    {"$schema": "http://json-schema.org/draft-07/schema#"},
])
def test_schemas_it_does_not_mirror_are_left_to_jsonschema(schema: dict[str, Any]) -> None:
    assert compile_quick_check(schema) is None
    registry = ActionRegistry()
    registry.register(make_action("x", schema))
    registry.validate("x", {})  # jsonschema alone: still works
