"""Topics against a real broker: made once, and brought up to this release's size limits."""

from __future__ import annotations

import threading
import time

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from streams.kafka.topics import (
    MAX_DEAD_LETTER_BYTES,
    SIZE_LIMIT,
    ensure_topics,
    size_limits,
    specs,
)
from streams.settings import Settings
from streams.testing.processes import wait_for


@pytest.fixture
def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})


def _config(admin: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ResourceType.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    return {name: entry.value for name, entry in entries.items()}


def _make(admin: AdminClient, topic: str, config: dict[str, str]) -> None:
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(timeout=30)


def test_an_older_dlq_gets_the_size_limit_its_largest_dead_letter_needs(
    settings: Settings, admin: AdminClient
) -> None:
    """An older release made the DLQ with 16 MB; a dead letter of the largest
    command is bigger, and the broker's refusal of it stopped the commands agent."""
    dlq = settings.topic_commands_dlq
    old = str(16 * 1024 * 1024)
    _make(admin, dlq, {SIZE_LIMIT: old, "retention.ms": "3600000"})

    ensure_topics(settings)

    # The controller has taken the change; the broker applies it a moment later.
    def raised() -> dict[str, str] | None:
        config = _config(admin, dlq)
        return config if config[SIZE_LIMIT] == str(MAX_DEAD_LETTER_BYTES) else None

    config = wait_for(raised, 10, f"{dlq} to take {MAX_DEAD_LETTER_BYTES} bytes")
    assert config["retention.ms"] == "3600000"  # the operator's choice stays


def test_a_topic_the_broker_does_not_know_yet_is_waited_for_not_taken_as_ours(
    settings: Settings, admin: AdminClient
) -> None:
    """Another process's create is known to the controller before the broker we
    ask has the topic ("unknown topic"): that topic may come from an older
    release, so its size limit is read once the broker knows it, never assumed.
    Taken as ours, an older DLQ would keep its 16 MB."""
    dlq = settings.topic_commands_dlq
    old = 16 * 1024 * 1024
    later = threading.Timer(1.0, _make, (admin, dlq, {SIZE_LIMIT: str(old)}))
    later.start()
    started = time.monotonic()
    try:
        limits = size_limits(admin, [dlq], timeout=30)
    finally:
        later.join()
    assert limits == {dlq: old}
    assert time.monotonic() - started >= 1.0


def test_larger_limits_and_everything_else_are_left_alone(
    settings: Settings, admin: AdminClient
) -> None:
    commands = settings.topic_commands
    larger = str(64 * 1024 * 1024)
    _make(admin, commands, {SIZE_LIMIT: larger})
    ensure_topics(settings)
    before = {spec.name: _config(admin, spec.name) for spec in specs(settings).values()}

    ensure_topics(settings)

    after = {spec.name: _config(admin, spec.name) for spec in specs(settings).values()}
    assert after == before
    assert after[commands][SIZE_LIMIT] == larger


def test_topics_made_a_moment_ago_are_ensured_again_without_error(settings: Settings) -> None:
    """Listed by the broker but not yet describable: a worker, the API and a
    client often ensure the same new topics within milliseconds (the race hit
    4 of 30 rounds here before it was handled)."""
    topic_fields = [name for name in Settings.model_fields if name.startswith("topic_")]
    for round_ in range(20):
        renamed = {name: f"{getattr(settings, name)}.r{round_}" for name in topic_fields}
        fresh = settings.model_copy(update=renamed)
        ensure_topics(fresh)
        ensure_topics(fresh)


def test_faust_topics_are_made_before_faust_with_the_settings_configuration(
    settings: Settings, admin: AdminClient
) -> None:
    """The state changelog and the assignor's leader topic exist, with their leaders,
    before any worker's faust starts, and carry the configuration of bulkstream's own
    topics: made by faust as the group formed, the changelog could miss the first
    assignment (no worker held its partitions; no command was applied)."""
    settings = settings.model_copy(update={"min_insync_replicas": 1})
    ensure_topics(settings)
    made = admin.list_topics(timeout=30).topics
    changelog = specs(settings)["state_changelog"]
    leader = specs(settings)["assignor_leader"]
    assert changelog.name == f"{settings.app_id}-state-changelog"
    assert leader.name == f"{settings.app_id}-__assignor-__leader"
    assert len(made[changelog.name].partitions) == settings.partitions
    assert len(made[leader.name].partitions) == 1
    config = _config(admin, changelog.name)
    assert config["cleanup.policy"] == "compact"
    assert config["min.insync.replicas"] == "1"
    assert int(config[SIZE_LIMIT]) >= int(changelog.config[SIZE_LIMIT])
    assert _config(admin, leader.name)["min.insync.replicas"] == "1"
