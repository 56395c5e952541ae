"""Producing commands (and control messages) the way every producer must: keyed by
job id, through the Java-compatible murmur2 partitioner, idempotent, acks=all."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from confluent_kafka import Producer

from schemas.commands import AnyCommand, CommandEnvelope
from schemas.control import RebuildViews
from streams.fanout import producer_config
from streams.ids import new_job_id
from streams.settings import Settings
from streams.topics import ensure_topics


def complete_command(raw: dict[str, Any], tenant: str) -> AnyCommand:
    """Fill what a hand-written command may leave out, then validate it."""
    record = dict(raw)
    record.setdefault("commandId", uuid.uuid4().hex)
    record.setdefault("tenant", tenant)
    if record.get("kind") == "create":
        record.setdefault("jobId", new_job_id())
        record.setdefault("createdAt", time.time())
    return CommandEnvelope.model_validate(record).root


class CommandProducer:
    def __init__(self, settings: Settings, create_topics: bool = True) -> None:
        self.settings = settings
        if create_topics:
            ensure_topics(settings)
        self.producer = Producer(producer_config(settings))
        self.errors: list[str] = []

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send(self, command: AnyCommand) -> None:
        payload = orjson.dumps(command.to_wire())
        while True:
            try:
                self.producer.produce(
                    self.settings.topic_commands,
                    key=command.job_id.encode(),
                    value=payload,
                    on_delivery=self._delivered,
                )
                return
            except BufferError:
                self.producer.poll(0.05)

    def send_raw(self, key: bytes | None, value: bytes) -> None:
        """Produce bytes as they are (tests of poison input use this)."""
        self.producer.produce(
            self.settings.topic_commands, key=key, value=value, on_delivery=self._delivered
        )

    def rebuild_views(self) -> None:
        value = orjson.dumps(RebuildViews().to_wire())
        for partition in range(self.settings.partitions):
            self.producer.produce(
                self.settings.topic_control, key=b"rebuild", value=value, partition=partition
            )

    def flush(self, timeout: float = 30.0) -> None:
        left = self.producer.flush(timeout)
        if left or self.errors:
            raise RuntimeError(f"{left} message(s) undelivered; errors: {self.errors[:3]}")
