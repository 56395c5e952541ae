"""A failed chaos test shows the end of every process log it left in its tmp_path.

A scenario's workers log to files under the test's tmp_path, which CI does
not keep: without their last lines, a scenario that timed out says only what
it was waiting for, not what the workers were doing meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

LINES_PER_LOG = 15


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    outcome: Any = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when != "call" or not report.failed or not isinstance(tmp_path, Path):
        return
    for log in sorted(tmp_path.rglob("*.log")):
        lines = log.read_text(errors="replace").splitlines()[-LINES_PER_LOG:]
        report.sections.append((f"end of {log.relative_to(tmp_path)}", "\n".join(lines)))
