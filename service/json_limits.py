"""What JSON Taskdesk accepts for storage: text it can encode, nesting it can read back.

Python's parser takes nearly 1,000 levels of nesting, but a value stored that deep cannot be
read back: every later loads/dumps of it (a listing wraps it a few levels deeper, the window
pretty-prints it) runs out of stack. And a string holding a lone surrogate (``\\ud800``
without its pair) is not Unicode text: encoding it as UTF-8, for SQLite or for an answer,
fails. Both are refused wherever a value enters the store: request bodies, data given to the
service by the window, and action results.
"""

from __future__ import annotations

import re
from typing import Any

# 100 is what Ruby's parser allows by default; no real input comes near.
MAX_JSON_DEPTH = 100

_SURROGATE = re.compile("[\ud800-\udfff]")


def unstorable(value: Any) -> str | None:
    """Why *value* (decoded JSON) cannot be stored and read back, or None if it can."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return ("a string holds a lone surrogate (\\ud800-\\udfff without its pair), "
                        "which is not Unicode text")
        elif isinstance(item, dict | list):
            if depth > MAX_JSON_DEPTH:
                return f"nested deeper than {MAX_JSON_DEPTH} arrays and objects"
            children = [*item, *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
    return None


_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")  # escaped, or encoded


def may_be_unstorable(json_text: str | bytes) -> bool:
    """A cheap look at the encoded text: False means unstorable() would find nothing."""
    if isinstance(json_text, str):
        json_text = json_text.encode("utf-8", "surrogatepass")
    deep = json_text.count(b"[") + json_text.count(b"{") > MAX_JSON_DEPTH
    return deep or _MAYBE_SURROGATE.search(json_text) is not None
