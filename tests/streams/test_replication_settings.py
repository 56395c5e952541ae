"""Replication settings reach every topic spec; no services needed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streams.kafka.topics import specs
from streams.settings import Settings


def test_min_insync_replicas_goes_on_every_topic_bulkstream_creates() -> None:
    settings = Settings(replication_factor=3, min_insync_replicas=2)
    assert settings.topic_config() == {"min.insync.replicas": "2"}
    for spec in specs(settings).values():
        assert spec.config["min.insync.replicas"] == "2", spec.name


def test_unset_it_is_the_brokers_default() -> None:
    settings = Settings(replication_factor=1, min_insync_replicas=None)
    assert settings.topic_config() == {}
    assert all("min.insync.replicas" not in spec.config for spec in specs(settings).values())


def test_more_in_sync_replicas_than_replicas_is_refused() -> None:
    with pytest.raises(ValidationError, match="no write could be accepted"):
        Settings(replication_factor=1, min_insync_replicas=2)
