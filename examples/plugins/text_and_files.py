"""Example Taskdesk plugin: two Python actions, declared with the ``taskdesk.action``
decorator (see taskdesk.py for the plain-dict form, which needs no import at all).

Copy it into Taskdesk's plugins folder (~/.config/taskdesk/plugins on Linux) or start
Taskdesk with ``--plugins examples/plugins``.
"""

from __future__ import annotations

import collections
import hashlib
import re
from pathlib import Path
from typing import Any

import taskdesk

CHUNK = 1024 * 1024


@taskdesk.action(
    name="hash-folder",
    schema={
        "type": "object",
        "required": ["folder"],
        "additionalProperties": False,
        "properties": {
            "folder": {"type": "string", "title": "Folder", "format": "path"},
            "algorithm": {"type": "string", "title": "Algorithm", "default": "sha256",
                          "enum": ["sha256", "sha512", "blake2b", "md5"]},
        },
    },
)
def hash_folder(data: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Checksum every file of a folder and its sub-folders"""
    root = Path(data["folder"]).expanduser()
    if not root.is_dir():
        raise ValueError(f"not a folder: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())
    total = sum(p.stat().st_size for p in files) or 1
    done = 0
    digests: dict[str, str] = {}
    for path in files:
        digest = hashlib.new(data.get("algorithm", "sha256"))
        with path.open("rb") as file:
            while chunk := file.read(CHUNK):
                # Checked between chunks, so that a cancel stops a large file too; whatever
                # a run raises once ctx.cancelled is set counts as cancelled.
                if ctx.cancelled.is_set():
                    raise InterruptedError("cancelled")
                digest.update(chunk)
                done += len(chunk)
                ctx.progress(done / total, str(path.relative_to(root)))
        digests[str(path.relative_to(root))] = digest.hexdigest()
        ctx.log(f"{digest.hexdigest()}  {path.relative_to(root)}\n")
    return {"files": len(digests), "bytes": done, "digests": digests}


@taskdesk.action(
    name="count-words",
    schema={
        "type": "object",
        "required": ["text"],
        "properties": {
            "text": {"type": "string", "title": "Text"},
            "top": {"type": "integer", "title": "Most frequent words to list", "minimum": 0,
                    "maximum": 100, "default": 10},
            "ignore_case": {"type": "boolean", "title": "Ignore case", "default": True},
        },
    },
)
def count_words(data: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Count the words of a text and list the most frequent ones"""
    text = data["text"].lower() if data.get("ignore_case", True) else data["text"]
    words = re.findall(r"\w+(?:['’]\w+)*", text)
    common = collections.Counter(words).most_common(data.get("top", 10))
    return {"words": len(words), "distinct": len(set(words)),
            "lines": text.count("\n") + (1 if text and not text.endswith("\n") else 0),
            "most_common": [[word, n] for word, n in common]}
