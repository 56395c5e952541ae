"""The Grafana dashboard in deploy/grafana/ only charts metrics bulkstream exports.

METRICS is read from streams/metrics.py, where every metric is declared.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.metrics import MetricWrapperBase

from streams import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "bulkstream-dashboard.json"
DATASOURCE = "${DS_PROMETHEUS}"


def _exported() -> dict[str, tuple[str, frozenset[str]]]:
    """name -> (type, labels) of every metric streams/metrics.py declares."""
    found: dict[str, tuple[str, frozenset[str]]] = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            kind = str(value._type)  # counter, gauge, histogram
            name = value._name + ("_total" if kind == "counter" else "")
            found[name] = (kind, frozenset(value._labelnames))
    return found


# name -> (type, labels), from the code's own declarations
METRICS = _exported()
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")
NAME = re.compile(r"\bbulkstream_[a-zA-Z0-9_]+")
CALL = re.compile(r"(\w+)\s*\(\s*(bulkstream_[a-zA-Z0-9_]+)")
MATCHERS = re.compile(r"(bulkstream_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def series(name: str) -> tuple[str, str] | None:
    """(metric, kind of series) for a series name, or None if bulkstream exports no such one."""
    if name in METRICS and METRICS[name][0] != "histogram":
        return name, METRICS[name][0]
    for suffix in HISTOGRAM_SERIES:
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base, ("", frozenset()))[0] == "histogram":
            return base, "counter"  # _bucket, _sum and _count only ever grow
    return None


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    parsed = json.loads(DASHBOARD.read_text())
    assert isinstance(parsed, dict)
    return parsed


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels of a collapsed row


def exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_dashboard_is_an_importable_grafana_dashboard(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["title"], "the dashboard needs a title"
    assert dashboard["uid"], "the dashboard needs a fixed uid (stable links)"
    inputs = {i["name"]: i for i in dashboard["__inputs"]}
    assert inputs["DS_PROMETHEUS"]["pluginId"] == "prometheus"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"


def test_every_panel_queries_prometheus(dashboard: dict[str, Any]) -> None:
    ids = [panel["id"] for panel in panels(dashboard)]
    assert len(ids) == len(set(ids)), f"panel ids repeat: {ids}"
    for panel in panels(dashboard):
        title = panel["title"]
        assert {"x", "y", "w", "h"} <= set(panel["gridPos"]), f"{title}: incomplete gridPos"
        targets = panel.get("targets", [])
        assert targets, f"panel {title!r} has no target"
        assert panel["datasource"]["uid"] == DATASOURCE, f"{title}: datasource"
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: refIds repeat"
        for target in targets:
            assert target["expr"].strip(), f"{title}: empty expr"
            assert target["datasource"]["uid"] == DATASOURCE, f"{title}: target datasource"


def test_every_metric_charted_is_exported(dashboard: dict[str, Any]) -> None:
    unknown = sorted(
        {
            (title, name)
            for title, expr in exprs(dashboard)
            for name in NAME.findall(expr)
            if series(name) is None
        }
    )
    assert not unknown, f"panels chart metrics bulkstream does not export: {unknown}"


def test_every_exported_metric_is_charted(dashboard: dict[str, Any]) -> None:
    charted = {
        found[0]
        for _, expr in exprs(dashboard)
        for name in NAME.findall(expr)
        if (found := series(name))
    }
    assert charted == set(METRICS), f"metrics with no panel: {sorted(set(METRICS) - charted)}"


def test_counters_are_read_as_rates(dashboard: dict[str, Any]) -> None:
    for title, expr in exprs(dashboard):
        for name in NAME.findall(expr):
            found = series(name)
            if found and found[1] == "counter":
                functions = [f for f, n in CALL.findall(expr) if n == name]
                outside = [f for f in functions if f not in {"rate", "irate", "increase"}]
                assert functions, f"{title}: counter {name} is charted raw: {expr}"
                assert not outside, f"{title}: counter {name} is read by {outside}, not rate()"


def test_labels_used_are_labels_of_the_metrics(dashboard: dict[str, Any]) -> None:
    for title, expr in exprs(dashboard):
        known: set[str] = set()
        for name in NAME.findall(expr):
            found = series(name)
            if found:
                known |= METRICS[found[0]][1]
                if name.endswith("_bucket"):
                    known.add("le")
        for name, matchers in MATCHERS.findall(expr):
            found = series(name)
            labels = {m.split("=")[0].rstrip("!~").strip() for m in matchers.split(",") if m}
            allowed = METRICS[found[0]][1] if found else frozenset()
            assert labels <= allowed, f"{title}: {name} has no label {labels - allowed}"
        for grouping in GROUPING.findall(expr):
            labels = {label.strip() for label in grouping.split(",") if label.strip()}
            assert labels <= known, f"{title}: grouping by unknown labels {labels - known}"
