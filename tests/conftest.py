"""Fixtures shared by the whole suite: real Kafka and Redis, fresh names per test.

Where the services come from, in order:
1. `KAFKA_BOOTSTRAP_SERVERS` / `REDIS_URL` from the environment (`make test` sets
   them to the stack that `make up` starts);
2. otherwise, if a Docker engine answers a ping, testcontainers start them;
3. otherwise the test fails, saying to run `make up`. Nothing here ever skips,
   so a CI run (`CI=true`) cannot go green without the real services.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.settings import Settings
from streams.testing.topics import drop_topics

NO_SERVICES = (
    "no {what}: set {var}, or run `make up` (starts Kafka and Redis locally), "
    "or start a Docker engine so testcontainers can"
)


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if not _docker_answers():
        pytest.fail(NO_SERVICES.format(what="Kafka", var="KAFKA_BOOTSTRAP_SERVERS"))
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("apache/kafka:4.1.1").with_kraft() as kafka:
        yield kafka.get_bootstrap_server()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    if not _docker_answers():
        pytest.fail(NO_SERVICES.format(what="Redis", var="REDIS_URL"))
    from testcontainers.redis import RedisContainer

    with RedisContainer("redis:7") as container:
        host = container.get_container_host_ip()
        port = container.get_exposed_port(6379)
        yield f"redis://{host}:{port}/0"


@pytest.fixture
def unique() -> str:
    """A short token that makes this test's topics, group and keys its own."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def settings(
    kafka_bootstrap: str, redis_url: str, unique: str, tmp_path: Path
) -> Iterator[Settings]:
    """Settings whose every topic, group and Redis prefix belong to this test alone;
    the topics are deleted after the test (its workers are stopped by then)."""
    yield Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        redis_url=redis_url,
        topic_commands=f"t{unique}.commands",
        topic_commands_dlq=f"t{unique}.commands.dlq",
        topic_command_results=f"t{unique}.command-results",
        topic_job_events=f"t{unique}.job-events",
        topic_sends=f"t{unique}.sends",
        topic_fanout_pages=f"t{unique}.fanout-pages",
        topic_fanout_done=f"t{unique}.fanout-done",
        topic_progress=f"t{unique}.progress",
        topic_control=f"t{unique}.control",
        topic_delivery_status=f"t{unique}.delivery-status",
        topic_delivery_status_dlq=f"t{unique}.delivery-status.dlq",
        topic_message_events=f"t{unique}.message-events",
        topic_webhooks=f"t{unique}.webhooks",
        topic_webhooks_retry=f"t{unique}.webhooks.retry",
        topic_webhooks_dlq=f"t{unique}.webhooks.dlq",
        webhooks_allow_private=True,
        app_id=f"bulkstream-t{unique}",
        redis_prefix=f"t{unique}",
        data_dir=tmp_path / "state",
        metrics_port=0,  # several workers per host: each takes a free port
    )
    drop_topics(Settings(kafka_bootstrap_servers=kafka_bootstrap), unique)


@pytest.fixture
def kafka_admin(kafka_bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": kafka_bootstrap})


@pytest.fixture
def fresh_topic(kafka_admin: AdminClient, unique: str) -> Iterator[str]:
    """One new 3-partition topic, deleted afterwards."""
    name = f"t{unique}.scratch"
    futures = kafka_admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    futures[name].result(timeout=30)
    yield name
    kafka_admin.delete_topics([name])[name].result(timeout=30)


@pytest.fixture
def redis_client(redis_url: str, unique: str) -> Iterator[redis.Redis]:
    """A sync client; every key under this test's prefix is deleted afterwards."""
    client = redis.Redis.from_url(redis_url)
    yield client
    keys = list(client.scan_iter(match=f"t{unique}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()
