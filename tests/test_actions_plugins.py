"""Python plugins: files in a folder, entry points of installed distributions, the
decorator, and broken plugins reported and left out."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.actions import (
    ActionRegistry,
    DuplicateActionError,
    PluginProblem,
    SimpleContext,
    default_registry,
    load_plugins,
)
from service.errors import ValidationError

ROOT = Path(__file__).resolve().parent.parent

GREET = '''
def greet(data, ctx):
    ctx.progress(0.5, "half")
    ctx.log("greeting")
    return {"output": "hello " + data["who"] + " from " + __name__}

TASKDESK_ACTIONS = [{
    "name": "greet",
    "description": "Say hello",
    "schema": {"type": "object", "required": ["who"],
               "properties": {"who": {"type": "string"}}},
    "run": greet,
}]
'''


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def plugin_modules() -> set[str]:
    return {name for name in sys.modules if name.startswith("taskdesk_plugin_")}


@pytest.fixture(autouse=True)
def no_plugin_modules_left() -> Iterator[None]:
    before = plugin_modules()
    yield
    for name in plugin_modules() - before:
        del sys.modules[name]


class RecordingContext(SimpleContext):
    def __init__(self) -> None:
        super().__init__("task-1", 1)
        self.progressed: list[tuple[float | None, str | None]] = []
        self.logged: list[str | bytes] = []

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        self.progressed.append((fraction, message))

    def log(self, text: str | bytes) -> None:
        self.logged.append(text)


def test_every_py_file_of_the_folder_is_loaded(tmp_path: Path) -> None:
    greet = write(tmp_path, "greet.py", GREET)
    write(tmp_path, "b_more.py", '''
        TASKDESK_ACTIONS = (
            {"name": "b-one", "description": "", "schema": {}, "run": lambda d, c: 1},
            {"name": "b-two", "description": "", "schema": {}, "run": lambda d, c: 2,
             "timeout": 5},
        )
        ''')
    write(tmp_path, "notes.txt", "TASKDESK_ACTIONS = 1")
    write(tmp_path, ".#greet.py", "this is an editor's lock file")
    registry = default_registry()
    assert load_plugins(registry, tmp_path, entry_points=False) == []
    assert registry.names() == ["b-one", "b-two", "greet", "sum", "uppercase"]
    action = registry.resolve("greet")
    assert (action.kind, action.source, action.description) == (
        "python", f"plugin {greet}", "Say hello")
    assert registry.resolve("b-two").timeout == 5.0 and registry.resolve("b-one").timeout is None
    ctx = RecordingContext()
    result = action.run({"who": "Ada"}, ctx)
    assert result["output"].startswith("hello Ada from taskdesk_plugin_")
    assert ctx.progressed == [(0.5, "half")] and ctx.logged == ["greeting"]
    with pytest.raises(ValidationError, match=r"data\.who: required"):
        registry.validate("greet", {})


def test_no_folder_or_an_empty_one_loads_nothing(tmp_path: Path) -> None:
    registry = default_registry()
    assert load_plugins(registry, None, entry_points=False) == []
    assert load_plugins(registry, tmp_path / "missing", entry_points=False) == []
    assert registry.names() == ["sum", "uppercase"]


def test_files_with_one_name_in_two_folders_do_not_meet(tmp_path: Path) -> None:
    for folder, value in (("one", 1), ("two", 2)):
        write(tmp_path / folder, "util.py", f'''
            VALUE = {value}
            TASKDESK_ACTIONS = [{{"name": "value-{value}", "description": "", "schema": {{}},
                                  "run": lambda data, ctx: (VALUE, __name__)}}]
            ''')
    registry = ActionRegistry()
    load_plugins(registry, tmp_path / "one", entry_points=False)
    load_plugins(registry, tmp_path / "two", entry_points=False)
    ctx = SimpleContext()
    one, name_one = registry.resolve("value-1").run({}, ctx)
    two, name_two = registry.resolve("value-2").run({}, ctx)
    assert (one, two) == (1, 2) and name_one != name_two
    assert sys.modules[name_one].VALUE == 1 and sys.modules[name_two].VALUE == 2
    assert "util" not in sys.modules


BROKEN = {
    "syntax.py": ("def broken(:\n", "SyntaxError: "),
    "imports.py": ("import taskdesk_no_such_module\n",
                   "ModuleNotFoundError: No module named 'taskdesk_no_such_module'"),
    "raises.py": ("raise RuntimeError('no config\\nsecond line')\n",
                  "RuntimeError: no config | second line"),
    "exits.py": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
    "missing.py": ("X = 1\n", "it has no TASKDESK_ACTIONS list"),
    "not_list.py": ("TASKDESK_ACTIONS = {'name': 'x'}\n", "must be a list of dicts, not dict"),
    "not_dict.py": ("TASKDESK_ACTIONS = ['x']\n", "TASKDESK_ACTIONS[0] must be a dict, not str"),
    "no_name.py": ("TASKDESK_ACTIONS = [{'run': print}]\n",
                   "TASKDESK_ACTIONS[0]: the name must be a string"),
    "empty_name.py": ("TASKDESK_ACTIONS = [{'name': ' ', 'run': print}]\n",
                      "the name must not be empty"),
    "long_name.py": ("TASKDESK_ACTIONS = [{'name': 'x' * 101, 'run': print}]\n",
                     "at most 100 characters"),
    "control.py": ("TASKDESK_ACTIONS = [{'name': 'a\\tb', 'run': print}]\n",
                   "must not contain control characters"),
    "unknown_key.py": ("TASKDESK_ACTIONS = [{'name': 'k', 'run': print, 'descripton': ''}]\n",
                       "TASKDESK_ACTIONS[0]: unknown key(s) descripton"),
    "description.py": ("TASKDESK_ACTIONS = [{'name': 'd', 'run': print, 'description': 1}]\n",
                       "action 'd': description must be a string"),
    "not_callable.py": ("TASKDESK_ACTIONS = [{'name': 'n', 'run': 'print'}]\n",
                        "action 'n': run must be a function run(data, ctx)"),
    "bad_schema.py": ("TASKDESK_ACTIONS = [{'name': 's', 'run': print, "
                      "'schema': {'type': 'text'}}]\n", "action 's': invalid schema at type"),
    "schema_list.py": ("TASKDESK_ACTIONS = [{'name': 's', 'run': print, 'schema': []}]\n",
                       "the schema must be an object"),
    "bad_timeout.py": ("TASKDESK_ACTIONS = [{'name': 't', 'run': print, 'timeout': -1}]\n",
                       "timeout must be a number of seconds > 0"),
    "half_good.py": ("TASKDESK_ACTIONS = [{'name': 'half-good', 'run': print}, 5]\n",
                     "TASKDESK_ACTIONS[1] must be a dict"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_plugin_is_one_log_line_and_left_out(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str
) -> None:
    text, error = BROKEN[name]
    write(tmp_path, "a_good.py", GREET)
    broken = write(tmp_path, name, text)
    registry = default_registry()
    before = set(sys.modules)
    with caplog.at_level(logging.ERROR, logger="taskdesk.actions"):
        problems = load_plugins(registry, tmp_path, entry_points=False)
    assert len(problems) == 1
    problem = problems[0]
    assert problem.source == f"plugin {broken}"
    assert error in problem.error and "\n" not in problem.error
    assert str(problem) == f"plugin {broken}: {problem.error}"
    # One line in the log, naming the file and the problem.
    assert [r.getMessage() for r in caplog.records] == [
        f"plugin not loaded: plugin {broken}: {problem.error}"]
    # Loaded without it; nothing of it registered or left half-imported.
    assert registry.names() == ["greet", "sum", "uppercase"]
    assert {m for m in set(sys.modules) - before if name[:-3] in m} == set()


def test_a_taken_name_is_fatal_and_names_both_sources(tmp_path: Path) -> None:
    first = write(tmp_path / "a", "first.py", GREET)
    second = write(tmp_path / "b", "second.py", GREET)
    registry = ActionRegistry()
    load_plugins(registry, tmp_path / "a", entry_points=False)
    with pytest.raises(DuplicateActionError) as caught:
        load_plugins(registry, tmp_path / "b", entry_points=False)
    assert str(caught.value) == (f"action 'greet' from plugin {second} has the same name as "
                                 f"the one from plugin {first}")
    write(tmp_path / "c", "mine.py", GREET.replace('"greet"', '"uppercase"'))
    with pytest.raises(DuplicateActionError, match=r"'uppercase' from plugin .*mine\.py .* "
                                                   "from built-in"):
        load_plugins(default_registry(), tmp_path / "c", entry_points=False)


def test_the_decorator_declares_actions_of_its_module(tmp_path: Path) -> None:
    path = write(tmp_path, "decorated.py", '''
        import taskdesk

        @taskdesk.action(schema={"type": "object", "properties": {"n": {"type": "integer"}}})
        def double(data, ctx):
            """Double a number

            More text that is not the description.
            """
            return {"output": data.get("n", 0) * 2}

        @taskdesk.action(name="wait-for-cancel", description="Waits", timeout=30)
        def wait(data, ctx):
            if ctx.cancelled.wait(10):
                raise InterruptedError("cancelled")
            return "not cancelled"

        class Callable:
            def __call__(self, data, ctx):
                return "called"

        taskdesk.action(name="callable-object")(Callable())
        ''')
    registry = ActionRegistry()
    assert load_plugins(registry, tmp_path, entry_points=False) == []
    double = registry.resolve("double")
    assert (double.description, double.source) == ("Double a number", f"plugin {path}")
    assert double.run({"n": 21}, SimpleContext()) == {"output": 42}
    with pytest.raises(ValidationError, match=r"data.n: '1' is not of type 'integer'"):
        registry.validate("double", {"n": "1"})
    assert registry.resolve("callable-object").run({}, SimpleContext()) == "called"
    wait = registry.resolve("wait-for-cancel")
    assert (wait.description, wait.timeout, wait.schema) == ("Waits", 30.0, {"type": "object"})
    ctx = SimpleContext()
    outcome: list[BaseException] = []
    thread = threading.Thread(target=lambda: outcome.append(_raised(wait.run, {}, ctx)))
    thread.start()
    ctx.cancelled.set()
    thread.join(10)
    assert isinstance(outcome[0], InterruptedError)


def _raised(run: Any, data: Any, ctx: Any) -> BaseException:
    try:
        run(data, ctx)
    except BaseException as exc:
        return exc
    raise AssertionError("it returned")


def test_the_taskdesk_module_imports_nothing_of_taskdesk() -> None:
    code = ("import sys, taskdesk; print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'service', 'storage', 'gui', 'main', 'resources'}))")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, "
                          f"{str(ROOT)!r}); {code}"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- entry points ---------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A site folder with a distribution "td-example" declaring three entry points, on
    sys.path for the test only."""
    folder = tmp_path / "site"
    write(folder, "td_example_module.py", GREET)
    write(folder, "td_example_lists.py", '''
        SHOUT = [{"name": "shout", "description": "Shout", "schema": {},
                  "run": lambda data, ctx: "HEY"}]
        ''')
    info = folder / "td_example-1.0.dist-info"
    write(info, "METADATA", "Metadata-Version: 2.1\nName: td-example\nVersion: 1.0\n")
    write(info, "entry_points.txt", """
        [taskdesk.actions]
        greeting = td_example_module
        shouting = td_example_lists:SHOUT
        broken = td_example_missing:ACTIONS

        [console_scripts]
        unrelated = td_example_module:greet
        """)
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    for name in [m for m in sys.modules if m.startswith("td_example")]:
        del sys.modules[name]


def test_entry_points_of_installed_distributions_are_loaded(
    site: Path, caplog: pytest.LogCaptureFixture
) -> None:
    registry = default_registry()
    with caplog.at_level(logging.ERROR, logger="taskdesk.actions"):
        problems = load_plugins(registry, None)
    assert registry.names() == ["greet", "shout", "sum", "uppercase"]
    assert registry.resolve("greet").source == "entry point greeting (distribution td-example)"
    assert registry.resolve("shout").run({}, SimpleContext()) == "HEY"
    assert problems == [PluginProblem(
        "entry point broken (distribution td-example)",
        "ModuleNotFoundError: No module named 'td_example_missing'")]
    assert len(caplog.records) == 1 and "entry point broken" in caplog.records[0].getMessage()


def test_entry_points_can_be_turned_off(site: Path) -> None:
    registry = default_registry()
    assert load_plugins(registry, None, entry_points=False) == []
    assert registry.names() == ["sum", "uppercase"]


def test_a_plugin_file_and_an_entry_point_with_one_name_conflict(
    site: Path, tmp_path: Path
) -> None:
    path = write(tmp_path / "plugins", "greet.py", GREET)
    with pytest.raises(DuplicateActionError, match=(
            r"'greet' from entry point greeting \(distribution td-example\) has the same name "
            f"as the one from plugin {path}")):
        load_plugins(default_registry(), tmp_path / "plugins")


# -- the example plugin ---------------------------------------------------------------------


def test_the_example_plugins_work(tmp_path: Path) -> None:
    registry = default_registry()
    assert load_plugins(registry, ROOT / "examples" / "plugins", entry_points=False) == []
    assert {"hash-folder", "count-words"} <= set(registry.names())

    counted = registry.resolve("count-words").run(
        {"text": "The cat and the hat.\nThe end", "top": 1}, SimpleContext())
    assert counted == {"words": 7, "distinct": 5, "lines": 2, "most_common": [["the", 3]]}

    (tmp_path / "data" / "sub").mkdir(parents=True)
    (tmp_path / "data" / "a.txt").write_bytes(b"a" * 3_000_000)
    (tmp_path / "data" / "sub" / "b.txt").write_bytes(b"hello")
    ctx = RecordingContext()
    hashed = registry.resolve("hash-folder").run({"folder": str(tmp_path / "data")}, ctx)
    assert hashed["files"] == 2 and hashed["digests"]["sub/b.txt"] == (
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
    fractions = [f or 0.0 for f, _ in ctx.progressed]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) == 4

    cancelled = RecordingContext()
    cancelled.cancelled.set()
    with pytest.raises(InterruptedError):
        registry.resolve("hash-folder").run({"folder": str(tmp_path / "data")}, cancelled)
    with pytest.raises(ValidationError, match=r"data\.algorithm: 'crc' is not one of"):
        registry.validate("hash-folder", {"folder": "/", "algorithm": "crc"})
