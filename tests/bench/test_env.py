"""The bench's machine facts that tell a slow host from slow code: the share of the
cores' time the hypervisor stole during a run, and the interpreter's speed."""

from __future__ import annotations

from bench.env import cpu_ticks, python_speed, stolen_share


def test_the_stolen_share_is_of_the_ticks_between_the_two_readings() -> None:
    assert stolen_share((100, 10_000), (180, 14_000)) == "2.0%"
    assert stolen_share(None, (180, 14_000)) == "unknown"
    assert stolen_share((100, 10_000), (100, 10_000)) == "unknown"


def test_this_host_s_ticks_rise_and_its_speed_is_measured() -> None:
    before = cpu_ticks()
    assert python_speed() > 0
    after = cpu_ticks()
    assert before is not None  # Linux: /proc/stat
    assert after is not None
    assert after[1] > before[1]
    assert after[0] >= before[0]
    assert stolen_share(before, after).endswith("%")
