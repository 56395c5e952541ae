"""A worker whose local state is ahead of its changelog (the topic was made anew)."""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka.admin import AdminClient

from streams.kafka.topics import state_changelog
from streams.settings import Settings
from streams.testing.client import Client
from streams.testing.processes import WorkerProcess, wait_for

USERS = [{"to": {"user_id": f"u{i}"}} for i in range(5)]


def test_a_worker_ahead_of_a_remade_changelog_rebuilds_its_state_and_starts(
    topology: Settings, client: Client, start_worker: Callable[..., WorkerProcess]
) -> None:
    """faust would refuse to start (ConsistencyError) and the worker would crash-loop."""
    first = start_worker("w1")
    old_job = client.create({"template": "T"})
    assert client.result(client.ingest(old_job, USERS).command_id).total == 5
    assert first.stop() == 0

    admin = AdminClient({"bootstrap.servers": topology.kafka_bootstrap_servers})
    topic = state_changelog(topology)
    admin.delete_topics([topic])[topic].result(30)
    wait_for(
        lambda: topic not in admin.list_topics(timeout=10).topics or None,
        60,
        f"{topic} to be deleted",
    )

    again = start_worker("w1")  # the same worker id: the same data directory
    new_job = client.create({"template": "T"})
    assert client.result(client.ingest(new_job, USERS).command_id).total == 5
    assert again.alive()
    assert b"rebuilding it from the changelog" in again.log_path.read_bytes()
