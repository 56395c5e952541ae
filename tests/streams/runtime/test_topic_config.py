"""patches/topic_config.py: the topics faust creates itself (the state changelog, the
assignor's leader topic) carry `min.insync.replicas` like bulkstream's own topics."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, ConfigResource, ConfigSource, ResourceType

from streams.settings import Settings
from tests.streams.runtime.conftest import run, running, runtime_for


def test_the_changelog_faust_creates_carries_min_insync_replicas(topology: Settings) -> None:
    settings = topology.model_copy(update={"min_insync_replicas": 1})

    async def scenario() -> str:
        runtime = runtime_for(settings, "w1")
        async with running(runtime):
            return str(runtime.state.changelog_topic.get_topic_name())

    changelog = run(scenario())
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    resource = ConfigResource(ResourceType.TOPIC, changelog)
    entries = admin.describe_configs([resource])[resource].result(timeout=30)
    entry = entries["min.insync.replicas"]
    # Set on the topic itself, not the broker's default it would otherwise inherit.
    assert (entry.value, entry.source) == ("1", ConfigSource.DYNAMIC_TOPIC_CONFIG.value)
