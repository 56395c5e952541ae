"""The seam's rules: only streams/runtime touches faust's, mode's or aiokafka's
private attributes, and every patch says what it fixes and where it is tested."""

from __future__ import annotations

import ast
import re

from tests.streams.runtime.seam import ROOT, measure

PATCHES = ROOT / "streams" / "runtime" / "patches"


def test_no_private_attribute_of_faust_mode_or_aiokafka_is_touched_outside_the_runtime() -> None:
    outside = [
        f"{t.module}:{t.line} {t.name}"
        for t in measure().touched
        if not t.module.startswith("streams/runtime/")
    ]
    assert not outside, "move these behind a function of streams/runtime:\n" + "\n".join(outside)


def test_every_patch_names_its_upstream_its_failure_and_its_regression_test() -> None:
    for path in sorted(PATCHES.glob("*.py")):
        if path.name == "__init__.py":
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        for part in ("Upstream:", "Failure it prevents:", "Regression test:"):
            assert part in doc, f"{path.name} does not say {part!r}"
        tests = re.findall(r"tests/\S+?\.py", doc.split("Regression test:", 1)[1])
        assert tests, f"{path.name} names no test"
        for test in tests:
            assert (ROOT / test).exists(), f"{path.name} names {test}, which does not exist"
        assert path.stem in (PATCHES / "__init__.py").read_text(), f"{path.name} is not listed"
