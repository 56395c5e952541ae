"""Where `python -m bench` writes its report: a run of some scenarios never replaces the
whole suite's docs/benchmarks.md unless told to."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import DOCS, parse, report_path


def test_a_run_of_some_scenarios_reports_beside_its_logs() -> None:
    run = Path("/tmp/bench-run")
    assert report_path(parse(["--only", "fanout"]), run) == run / "benchmarks.md"
    assert report_path(parse(["--only", "fanout", "--out", "/tmp/x.md"]), run) == Path("/tmp/x.md")


def test_the_whole_suite_and_a_render_write_docs_benchmarks_md() -> None:
    assert report_path(parse([]), Path("/tmp/bench-run")) == DOCS
    assert report_path(parse(["--render", "results.json"]), None) == DOCS
    assert DOCS.parts[-2:] == ("docs", "benchmarks.md")
