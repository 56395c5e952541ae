"""The retry schedule (pure): doubling delays per tier, jitter, the horizon."""

from __future__ import annotations

import pytest

from streams.kafka.topics import specs
from streams.settings import Settings
from streams.webhooks import backoff


def test_each_retry_waits_twice_as_long_as_the_one_before() -> None:
    assert [backoff.tier(n) for n in (1, 2, 3, 4)] == [0, 1, 2, 3]
    assert [backoff.tier_delay(backoff.tier(n), 5.0) for n in (1, 2, 3, 4)] == [5, 10, 20, 40]


def test_the_doubling_stops_at_the_last_tier() -> None:
    last = backoff.TIERS - 1
    assert backoff.tier(100) == last
    assert backoff.tier(100, tiers=4) == 3  # a retry topic made with fewer partitions


def test_jitter_stretches_a_delay_by_at_most_a_quarter() -> None:
    assert backoff.jittered(8.0, 0.0) == 8.0
    assert backoff.jittered(8.0, 0.999) == pytest.approx(9.998)
    assert 100.0 + 5.0 <= backoff.due(0, 100.0, 5.0, 0.5) <= 100.0 + 6.25


def test_a_message_is_retried_within_its_horizon_only() -> None:
    assert backoff.within(1000.0, first_at=0.0, horizon=1000.0)
    assert not backoff.within(1000.1, first_at=0.0, horizon=1000.0)


def test_the_default_schedule_covers_a_day_from_5_s() -> None:
    delays = backoff.schedule(5.0, 24 * 3600.0)
    assert delays[:4] == [5, 10, 20, 40]
    assert len(delays) == 14  # 5 s, 10 s, ... 11.4 h: 22.8 h in all
    assert 20 * 3600 < sum(delays) <= 24 * 3600


def test_the_retry_topic_has_one_partition_per_tier() -> None:
    assert specs(Settings())["webhooks_retry"].partitions == backoff.TIERS
    # the last tier's delay is longer than the default horizon: every delay has a tier
    assert backoff.tier_delay(backoff.TIERS - 1, 5.0) > 24 * 3600
