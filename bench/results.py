"""What a scenario hands back: its figures (measured, baseline, ratio, target) and notes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal


@dataclass
class Figure:
    """One row of the results table.

    `ratio` is measured / baseline; the target applies to the ratio, or to the
    measured value itself when `target_on` is "measured"."""

    label: str
    measured: float
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    target_min: float | None = None
    target_max: float | None = None
    target_on: Literal["ratio", "measured"] = "ratio"

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.measured / self.baseline

    @property
    def target(self) -> str:
        what = "ratio" if self.target_on == "ratio" else self.unit
        if self.target_min is not None:
            return f"{what} >= {_bound(self.target_min)}"
        if self.target_max is not None:
            return f"{what} <= {_bound(self.target_max)}"
        return ""

    @property
    def passed(self) -> bool | None:
        value = self.ratio if self.target_on == "ratio" else self.measured
        if value is None or (self.target_min is None and self.target_max is None):
            return None
        if self.target_min is not None and value < self.target_min:
            return False
        return not (self.target_max is not None and value > self.target_max)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"ratio": self.ratio, "target": self.target, "passed": self.passed}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Figure:
        return cls(**{f.name: raw[f.name] for f in fields(cls) if f.name in raw})


def _bound(value: float) -> str:
    """A target's bound as people write it: 0.5, 1.2, 5, 150,000."""
    return f"{value:,.0f}" if abs(value) >= 1000 and value == int(value) else f"{value:g}"


@dataclass
class ScenarioResult:
    """A scenario's figures, its raw numbers, the checks it passed, and what looked wrong."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    log_findings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "figures": [f.to_json() for f in self.figures],
            "details": self.details,
            "checks": self.checks,
            "notes": self.notes,
            "log_findings": self.log_findings,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ScenarioResult:
        return cls(
            name=raw["name"],
            title=raw["title"],
            figures=[Figure.from_json(f) for f in raw["figures"]],
            details=raw["details"],
            checks=raw["checks"],
            notes=raw["notes"],
            log_findings=raw["log_findings"],
        )


class CheckFailed(AssertionError):
    """A scenario's correctness check failed: its figure would mean nothing."""


def check(condition: bool, what: str, result: ScenarioResult) -> None:
    """Record a passed check, or raise CheckFailed naming it."""
    if not condition:
        raise CheckFailed(f"{result.name}: check failed: {what}")
    result.checks.append(what)
