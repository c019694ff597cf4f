"""The actions file: commands as actions, raw schedules and settings, and every mistake
reported as one line naming the file and its line."""

from __future__ import annotations

import io
import tarfile
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import pytest

from service.actions import (
    ConfigFileError,
    DuplicateActionError,
    SimpleContext,
    default_registry,
    load_config_file,
    load_plugins,
)
from service.actions.command import CommandSpec, command_line
from service.actions.toml_positions import KeyLines
from service.errors import ValidationError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "actions.toml"

GOOD = '''\
# Taskdesk actions
[actions.archive]
description = "Pack a folder into a .tar.gz"
argv = ["tar", "-czf", "{output}", "-C", "{folder}", "."]
timeout = 600          # seconds
cwd = "~"
env = { LC_ALL = "C" }
[actions.archive.schema]
type = "object"
required = ["folder", "output"]
properties.folder = { type = "string", title = "Folder", format = "path" }
properties.output = { type = "string", title = "Archive file" }

[actions."say hello"]
argv = ["echo", "{{literal}}", "hello {who}"]
schema = { properties = { who = { type = "string" } } }

[actions.shelly]
shell = true
argv = "echo {text} | tr a-z A-Z"
schema.properties.text = { type = "string" }

[schedules.nightly]
action = "archive"
data = { folder = "~/docs", output = "/backup/docs.tar.gz" }
cron = "0 3 * * *"

[settings]
workers = 4
unknown-to-us = [1, 2]
'''


def write(tmp_path: Path, text: str, name: str = "actions.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_commands_become_actions(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = load_config_file(path, default_timeout=300)
    assert [a.name for a in config.actions] == ["archive", "say hello", "shelly"]
    archive, hello, shelly = config.actions
    assert (archive.kind, archive.description, archive.timeout, archive.source) == (
        "command", "Pack a folder into a .tar.gz", 600.0, f"{path} line 2")
    assert archive.schema["required"] == ["folder", "output"]
    assert archive.schema["properties"]["folder"] == {
        "type": "string", "title": "Folder", "format": "path"}
    assert (hello.description, hello.timeout, hello.source) == ("", 300.0, f"{path} line 14")
    assert shelly.source == f"{path} line 18"
    assert config.schedules == {"nightly": {
        "action": "archive", "data": {"folder": "~/docs", "output": "/backup/docs.tar.gz"},
        "cron": "0 3 * * *"}}
    assert config.settings == {"workers": 4, "unknown-to-us": [1, 2]}
    assert config.path == path


def test_the_actions_run_and_are_validated_through_a_registry(tmp_path: Path) -> None:
    registry = default_registry()
    for action in load_config_file(write(tmp_path, GOOD), default_timeout=30).actions:
        registry.register(action)
    with pytest.raises(ValidationError, match=r"data.folder: required; data.output: required"):
        registry.validate("archive", {})
    ctx = SimpleContext()
    result = registry.resolve("say hello").run({"who": "a b; $(id)"}, ctx)
    assert result == {"exit_code": 0, "output": "{literal} hello a b; $(id)\n"}
    result = registry.resolve("shelly").run({"text": "it's $HOME"}, ctx)
    assert result == {"exit_code": 0, "output": "IT'S $HOME\n"}


def test_an_empty_file_has_nothing(tmp_path: Path) -> None:
    config = load_config_file(write(tmp_path, "# nothing yet\n"), default_timeout=1)
    assert (config.actions, config.schedules, config.settings) == ([], {}, {})


def test_names_clash_with_builtins_and_plugins_naming_both(tmp_path: Path) -> None:
    path = write(tmp_path, '''
        [actions.greet]
        argv = ["echo"]

        [actions.uppercase]
        argv = ["tr", "a-z", "A-Z"]
        ''')
    plugin = tmp_path / "plugins" / "greet.py"
    plugin.parent.mkdir()
    plugin.write_text("TASKDESK_ACTIONS = [{'name': 'greet', 'run': print}]\n")
    registry = default_registry()
    load_plugins(registry, plugin.parent, entry_points=False)
    greet, uppercase = load_config_file(path, default_timeout=1).actions
    with pytest.raises(DuplicateActionError) as caught:
        registry.register(greet)
    assert str(caught.value) == (f"action 'greet' from {path} line 2 has the same name as the "
                                 f"one from plugin {plugin}")
    with pytest.raises(DuplicateActionError, match=f"from {path} line 5 .* from built-in"):
        registry.register(uppercase)


# Each: the file's text, the line the error must name, and what it must say.
BAD: dict[str, tuple[str, int, str]] = {
    "toml syntax": ('[actions.a]\nargv = ["x"] junk\n', 2,
                    "Expected newline or end of document after a statement (column 14)"),
    "toml duplicate key": ('[actions.a]\nargv = ["x"]\nargv = ["y"]\n', 3, "Cannot overwrite"),
    "toml unterminated at the end": ('[actions.a]\ndescription = """never ends\n', 3,
                                     "(at the end of the file)"),
    "unknown top-level key": ('[actions.a]\nargv = ["x"]\n\n[action.b]\nargv = ["y"]\n', 4,
                              "unknown top-level key 'action'"),
    "unknown top-level value": ('workers = 4\n', 1, "unknown top-level key 'workers'"),
    "unknown key in an action": ('[actions.a]\nargv = ["x"]\n\ntimout = 5\n', 4,
                                 "action 'a': unknown key 'timout' (expected one of "
                                 "description, argv, timeout, cwd, env, schema, shell)"),
    "unknown key after the schema": ('[actions.a]\nargv = ["x"]\n[actions.a.schema]\n'
                                     'type = "object"\n[actions.a.retries]\nn = 1\n', 5,
                                     "unknown key 'retries'"),
    "missing argv": ('# first\n[actions.a]\ndescription = "no argv"\n', 2,
                     "action 'a': argv is required"),
    "empty argv": ('[actions.a]\ndescription = ""\nargv = []\n', 3, "argv must not be empty"),
    "blank program": ('[actions.a]\nargv = [" ", "x"]\n', 2, "argv must not be empty"),
    "argv a string": ('[actions.a]\nargv = "tar -czf x"\n', 2, "argv must be a list of strings"),
    "argv with a number": ('[actions.a]\n\nargv = ["sleep", 5]\n', 3,
                           "argv must be a list of strings"),
    "shell argv of two": ('[actions.a]\nshell = true\nargv = ["a", "b"]\n', 3,
                          "with shell = true, argv is one command string"),
    "shell not boolean": ('[actions.a]\nargv = ["x"]\nshell = "yes"\n', 3,
                          "shell must be true or false"),
    "timeout negative": ('[actions.a]\nargv = ["x"]\ntimeout = -1\n', 3,
                         "timeout must be a number of seconds > 0"),
    "timeout text": ('[actions.a]\nargv = ["x"]\ntimeout = "10s"\n', 3,
                     "timeout must be a number"),
    "timeout boolean": ('[actions.a]\nargv = ["x"]\ntimeout = true\n', 3,
                        "timeout must be a number"),
    "timeout infinite": ('[actions.a]\nargv = ["x"]\ntimeout = inf\n', 3,
                         "timeout must be a number"),
    "cwd a number": ('[actions.a]\nargv = ["x"]\ncwd = 1\n', 3, "cwd must be a folder's path"),
    "env not a table": ('[actions.a]\nargv = ["x"]\nenv = ["A=1"]\n', 3,
                        "env must be a table of names and strings"),
    "env value a number": ('[actions.a]\nargv = ["x"]\n[actions.a.env]\nA = 1\n', 4,
                           "env.A must be a string"),
    "env name with =": ('[actions.a]\nargv = ["x"]\nenv = { "A=B" = "1" }\n', 3,
                        "'A=B' cannot name an environment variable"),
    "description a number": ('[actions.a]\nargv = ["x"]\ndescription = 5\n', 3,
                             "description must be a string"),
    "placeholder naming nothing": ('[actions.a]\nargv = ["cp", "{src}", "{dst}"]\n'
                                   '[actions.a.schema]\nproperties.src = {type = "string"}\n',
                                   2, "argv[2]: placeholder {dst} names no property"),
    "placeholder without a schema": ('[actions.a]\nargv = ["echo", "{x}"]\n', 2,
                                     "placeholder {x} names no property of the schema"),
    "shell braces": ('[actions.a]\nshell = true\nargv = "f() { true; }"\n', 3,
                     "(write {{ and }} for literal braces)"),
    "unmatched brace": ('[actions.a]\nargv = ["echo", "a}b"]\n', 2,
                        "argv[1]: unmatched '}'"),
    "empty placeholder": ('[actions.a]\nargv = ["echo", "{}"]\n', 2, "empty placeholder {}"),
    "placeholder as the program": ('[actions.a]\nargv = ["{tool}"]\n[actions.a.schema]\n'
                                   'properties.tool = {type = "string"}\n', 2,
                                   "argv[0], the program, cannot hold a placeholder"),
    "invalid schema": ('[actions.a]\nargv = ["x"]\n\n[actions.a.schema]\ntype = "text"\n', 4,
                       "action 'a': invalid schema at type"),
    "schema not a table": ('[actions.a]\nargv = ["x"]\nschema = "object"\n', 3,
                           "the schema must be an object"),
    "action not a table": ('[actions]\na = 5\n', 2, "actions.a must be a table"),
    "actions not a table": ('actions = 5\n', 1, "actions must be a table"),
    "action named by spaces": ('[actions." "]\nargv = ["x"]\n', 1, "the name must not be empty"),
    "action name too long": (f'[actions.{"x" * 101}]\nargv = ["x"]\n', 1, "at most 100"),
    "schedule not a table": ('[schedules]\nnightly = "every day"\n', 2,
                             "schedules.nightly must be a table"),
    "settings not a table": ('settings = 5\n', 1, "settings must be a table"),
    "inline action": ('[actions]\na = { argv = ["x"], retries = 1 }\n', 2,
                      "unknown key 'retries'"),
    "dotted keys": ('[actions]\na.argv = ["x"]\na.shell = 1\n', 3, "shell must be true"),
    "quoted names": ('[actions."my tool"]\nargv = ["x"]\n"time out" = 1\n', 3,
                     "unknown key 'time out'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_is_one_line_naming_file_and_line(tmp_path: Path, case: str) -> None:
    text, line, problem = BAD[case]
    path = tmp_path / "actions.toml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as caught:
        load_config_file(path, default_timeout=10)
    message = str(caught.value)
    assert message.startswith(f"{path} line {line}: "), message
    assert problem in message
    assert "\n" not in message
    assert (caught.value.path, caught.value.line) == (path, line)


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigFileError, match=r"missing\.toml: cannot read it: No such file"):
        load_config_file(tmp_path / "missing.toml", default_timeout=10)
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[actions.a]\nargv = ["x"]\ndescription = "caf\xe9"\n')
    with pytest.raises(ConfigFileError, match=r"latin1\.toml line 3: not UTF-8 text"):
        load_config_file(path, default_timeout=10)


def test_lines_inside_strings_are_not_mistaken_for_tables() -> None:
    text = textwrap.dedent('''\
        [actions.a]
        description = """
        [actions.fake]
        argv = "not this one"
        """
        argv = [
          "x",  # [actions.comment]
          '{y}',
        ]
        note = 'it''s'
        [actions.b]  # a comment
        ''')
    lines = KeyLines(text)
    assert lines.line_of(("actions", "a", "description")) == 2
    assert lines.line_of(("actions", "a", "argv")) == 6
    assert lines.line_of(("actions", "a", "note")) == 10
    assert lines.line_of(("actions", "b")) == 11
    assert lines.line_of(("actions", "fake")) == 1  # nowhere: the first line
    assert lines.line_of(("actions", "b", "missing")) == 11  # its table's line


# -- the example file -----------------------------------------------------------------------


def example_actions() -> dict[str, Any]:
    config = load_config_file(EXAMPLE, default_timeout=300)
    return {a.name: a for a in config.actions}


class ProgressContext(SimpleContext):
    def __init__(self) -> None:
        super().__init__("example", 1)
        self.progressed: list[tuple[float | None, str | None]] = []

    def progress(self, fraction: float | None, message: str | None = None) -> None:
        self.progressed.append((fraction, message))


def test_the_example_file_loads_with_every_form_type() -> None:
    actions = example_actions()
    assert len(actions) >= 3
    seen: set[str] = set()
    for action in actions.values():
        for prop in action.schema["properties"].values():
            kind = prop.get("type")
            if prop.get("format") == "path":
                seen.add("path")
            if "enum" in prop:
                seen.add("enum")
            if kind == "integer" and "minimum" in prop and "maximum" in prop:
                seen.add("bounded integer")
            if kind == "array" and prop.get("items", {}).get("type") == "string":
                seen.add("array of strings")
            seen.add(kind)
    assert {"string", "path", "bounded integer", "enum", "boolean",
            "array of strings"} <= seen


def test_the_example_checksums_report_progress(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "one file.txt").write_text("one")
    (tmp_path / "two").write_text("two")
    (tmp_path / "sub" / "three").write_text("three")
    action = example_actions()["checksums"]
    ctx = ProgressContext()
    result = action.run({"folder": str(tmp_path), "algorithm": "sha256", "recursive": True},
                        ctx)
    assert result["exit_code"] == 0
    assert ("7692c3ad3540bb803c020b3aee66cd8887123234ea0c6e7143c0add73ff431ed"
            "  ./one file.txt") in result["output"]
    assert [f for f, _ in ctx.progressed] == pytest.approx([0.33, 0.66, 1.0])
    assert ctx.progressed[-1][1] == "3 of 3 files"
    ctx = ProgressContext()
    action.run({"folder": str(tmp_path), "algorithm": "md5", "recursive": False}, ctx)
    assert [f for f, _ in ctx.progressed] == [0.5, 1.0]


def test_the_example_archives_work(tmp_path: Path) -> None:
    folder = tmp_path / "my docs"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    actions = example_actions()
    output = tmp_path / "out; rm -rf x.tar.gz"
    result = actions["archive"].run({"folder": str(folder), "output": str(output)},
                                    SimpleContext())
    assert result["exit_code"] == 0
    with tarfile.open(output) as archive:
        assert "./a.txt" in archive.getnames()
    zipped = tmp_path / "files.zip"
    actions["zip"].run({"paths": [str(folder / "a.txt")], "output": str(zipped), "level": 9},
                       SimpleContext())
    with zipfile.ZipFile(io.BytesIO(zipped.read_bytes())) as archive:
        assert [info.filename.endswith("my docs/a.txt") for info in archive.infolist()] == [True]


def test_the_example_commands_take_their_values_as_single_arguments() -> None:
    spec = CommandSpec(["curl", "--retry", "{retries}", "--output", "{output}", "--", "{url}"])
    argv = command_line(spec, {"retries": 3, "output": "a b", "url": "https://x/?a=1&b=2"})
    assert argv == ["curl", "--retry", "3", "--output", "a b", "--", "https://x/?a=1&b=2"]
