"""The real services answer: a confluent-kafka round trip and a Redis round trip."""

from __future__ import annotations

import pytest
import redis
from confluent_kafka import Consumer, Producer

from streams.settings import Settings


def test_kafka_produce_consume_round_trip(kafka_bootstrap: str, fresh_topic: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    sent = {f"job-{i}".encode(): f"value-{i}".encode() for i in range(20)}
    for key, value in sent.items():
        producer.produce(fresh_topic, key=key, value=value)
    assert producer.flush(30) == 0

    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{fresh_topic}.group",
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([fresh_topic])
    received: dict[bytes, bytes] = {}
    partitions: dict[bytes, int] = {}
    try:
        for _ in range(300):
            msg = consumer.poll(0.2)
            if msg is None or msg.error():
                continue
            got_key, got_value, partition = msg.key(), msg.value(), msg.partition()
            assert isinstance(got_key, bytes)
            assert isinstance(got_value, bytes)
            assert partition is not None
            received[got_key] = got_value
            partitions[got_key] = partition
            if len(received) == len(sent):
                break
    finally:
        consumer.close()
    assert received == sent
    # Same key, same partition: the Java-compatible murmur2 partitioner is stable.
    assert len(set(partitions.values())) > 1


def test_redis_round_trip(redis_client: redis.Redis, unique: str) -> None:
    key = f"t{unique}:probe"
    redis_client.hset(key, mapping={"received": 3, "status": "CREATED"})
    assert redis_client.hgetall(key) == {b"received": b"3", b"status": b"CREATED"}


def test_settings_read_dsns_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "broker-a:9092,broker-b:9092")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6380/2")
    monkeypatch.setenv("BULKSTREAM_PARTITIONS", "16")
    monkeypatch.setenv("BULKSTREAM_TOPIC_SENDS", "acme.sends")
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "broker-a:9092,broker-b:9092"
    assert settings.redis_url == "redis://cache:6380/2"
    assert settings.partitions == 16
    assert settings.topic_sends == "acme.sends"


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL", "BULKSTREAM_PARTITIONS"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings()
    assert settings.kafka_bootstrap_servers == "localhost:9092"
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.partitions == 8
    assert settings.topic_commands == "bulk.commands"
