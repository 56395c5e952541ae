"""The Rust extension `bulkstream_native` (native/, built by `make native`), where a
caller reaches it: `member` gives one of its functions or classes, or None when the
module is not installed; `natively` gives a native function or its Python twin, as
`Settings.native` asks. Each native member has a Python twin giving the same
answers, kept equal by the tests named in its module's docstring."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

_Function = TypeVar("_Function", bound=Callable[..., object])


def member(name: str) -> Any | None:
    """`bulkstream_native.<name>`, or None when the module is not installed."""
    try:
        module = importlib.import_module("bulkstream_native")
    except ImportError:  # `make native` builds it
        return None
    return getattr(module, name)


def natively(name: str, python: _Function, native: bool = True) -> _Function:
    """`bulkstream_native`'s function `name` if asked for (`Settings.native`) and
    installed, else `python`, its twin."""
    made: _Function | None = member(name) if native else None
    return python if made is None else made
