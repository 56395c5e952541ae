"""The native module's tests: skipped where `bulkstream_native` is not built, failed in
CI, which builds it first (`make test`)."""

from __future__ import annotations

import os

import pytest


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
