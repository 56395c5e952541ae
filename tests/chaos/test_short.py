"""The short version of `make chaos`, in every `make test`: the same scenarios on
smaller jobs, each of which must hold its target exactly (0 lost, 0 duplicates,
exact counters, 0 5xx). The broker restart and the *paused* scenario run only in
`make chaos`: they stop services every other test shares. The outcomes scenario's
10 s Redis pause runs here too (tests run one at a time)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.scenarios import SCENARIOS
from streams.settings import Settings

SHORT = {
    "kills": 20_000,
    "redis-flush": 20_000,
    "redis-restart": 20_000,
    # 21 pairs of 10k-user slices: one to warm up, 20 timed (`chaos.scenarios.poison`).
    "poison": 420_000,
    "http": 2_000,
    "control": 20_000,
    "outcomes": 10_000,
}


@pytest.mark.parametrize("name", sorted(SHORT))
def test_scenario_holds_its_target(name: str, settings: Settings, tmp_path: Path) -> None:
    tally = SCENARIOS[name](settings, tmp_path, SHORT[name], 2)
    print(f"\n{tally}")
    assert tally.ok, tally
