"""Delivery reports out to `bulk.delivery-status`: read from JSON or JSON Lines and
checked (`bulkstream report`), and produced keyed by job id through the
project's producer settings (murmur2, idempotent, acks=all): a blocking
producer for the CLI, an asyncio one for the delivery worker.

A report read from a file may leave out `at` (now); `tenant` and `provider`
default to what the caller gives. A record that is not JSON or not a valid
`DeliveryReport` is named by its source and line (or list index) and why.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from confluent_kafka import Producer
from pydantic import ValidationError

from schemas.delivery import DeliveryReport
from streams.errors import DeliveryFailed
from streams.kafka.config import producer_config
from streams.kafka.producer import AsyncProducer, produce_waiting
from streams.kafka.topics import ensure_topics
from streams.settings import Settings


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def encode(report: DeliveryReport) -> tuple[bytes, bytes]:
    """The report's record: key = job id, value = its JSON."""
    return report.job_id.encode(), orjson.dumps(report.to_wire())


def _items(name: str, text: bytes) -> Iterator[tuple[str, Any]]:
    """(where, parsed record or the JSON error) of one source: a JSON object, a JSON
    list, or JSON Lines."""
    stripped = text.strip()
    if not stripped:
        return
    try:
        whole = orjson.loads(stripped)
    except orjson.JSONDecodeError:
        pass
    else:
        if isinstance(whole, list):
            yield from ((f"{name}[{i}]", item) for i, item in enumerate(whole))
        else:
            yield name, whole
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{name}:{number}", orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield f"{name}:{number}", exc


def _why(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in error['loc']) or '(record)'}: {error['msg']}"
        for error in exc.errors(include_url=False)
    )


def read_reports(
    sources: Iterable[tuple[str, bytes]],
    tenant: str | None = None,
    provider: str | None = None,
) -> tuple[list[DeliveryReport], list[str]]:
    """The valid reports of (name, text) sources, and a line per invalid record
    (`<name>:<line>: <why>`)."""
    reports: list[DeliveryReport] = []
    errors: list[str] = []
    at = now_ms()
    for name, text in sources:
        for where, record in _items(name, text):
            if isinstance(record, orjson.JSONDecodeError):
                errors.append(f"{where}: not JSON ({record})")
                continue
            if not isinstance(record, dict):
                errors.append(f"{where}: not a JSON object")
                continue
            record = {"at": at, **record}
            for field, default in (("tenant", tenant), ("provider", provider)):
                if default is not None:
                    record.setdefault(field, default)
            try:
                reports.append(DeliveryReport.model_validate(record))
            except ValidationError as exc:
                errors.append(f"{where}: {_why(exc)}")
    return reports, errors


class ReportProducer:
    """Blocking: `send` queues reports, `flush` waits for every acknowledgement."""

    def __init__(self, settings: Settings, create_topics: bool = True) -> None:
        if create_topics:
            ensure_topics(settings)
        self.topic = settings.topic_delivery_status
        self.producer = Producer(producer_config(settings))
        self.acknowledged = 0
        self.errors: list[str] = []

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.acknowledged += 1
        else:
            self.errors.append(str(err))

    def send(self, report: DeliveryReport) -> None:
        key, value = encode(report)
        produce_waiting(self.producer, self.topic, key, value, on_delivery=self._delivered)

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every report's acknowledgement; how many were acknowledged. Raises
        `DeliveryFailed` when one was refused or is still unanswered at the timeout."""
        left = self.producer.flush(timeout)
        if left or self.errors:
            raise DeliveryFailed(
                f"{left} report(s) unanswered, {len(self.errors)} refused: {self.errors[:3]}"
            )
        return self.acknowledged


class AsyncReports:
    """The delivery worker's: `send` returns once the broker acknowledged the report."""

    def __init__(self, settings: Settings) -> None:
        self.topic = settings.topic_delivery_status
        self.producer = AsyncProducer(producer_config(settings), "deliver-reports")

    async def send(self, report: DeliveryReport) -> None:
        """Raises `DeliveryFailed` when the broker did not take it."""
        key, value = encode(report)
        await (await self.producer.send(self.topic, key, value))

    def close(self, timeout: float = 10.0) -> int:
        """Flush; the number of reports still unacknowledged."""
        return self.producer.close(timeout)
