"""The native module's tests: skipped where `bulkstream_native` is not built, failed in
CI, which builds it first (`make test`); and the JSON they generate."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import strategies as st

# What orjson reads back as it wrote it: 64-bit integers (either sign).
INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)


def require_native(available: bool) -> None:
    """Skip the calling test module unless the native module is `available`; in CI its
    absence is a failure."""
    if available:
        return
    if os.environ.get("CI"):
        raise RuntimeError("bulkstream_native is not installed: `make native` builds it")
    pytest.skip(
        "bulkstream_native is not built (`make native`, or `make test`, builds it)",
        allow_module_level=True,
    )


def json_values(text: st.SearchStrategy[str], floats: bool = True) -> st.SearchStrategy[Any]:
    """Any JSON value of a few leaves: null, booleans, 64-bit integers, finite floats
    (unless not `floats`) and `text`, in lists and objects keyed by `text`."""
    scalars: list[st.SearchStrategy[Any]] = [st.none(), st.booleans(), INTS, text]
    if floats:
        scalars.append(st.floats(allow_nan=False, allow_infinity=False))
    return st.recursive(
        st.one_of(scalars),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=8,
    )
