"""`ResultTimes`: when a command's result was published, read off a real topic."""

from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka import Producer

from chaos.results import ResultTimes
from streams.settings import Settings


def test_a_result_is_timed_by_its_record_not_by_when_it_is_read(
    settings: Settings, fresh_topic: str
) -> None:
    settings = settings.model_copy(update={"topic_command_results": fresh_topic})
    results = ResultTimes(settings)
    try:
        producer = Producer({"bootstrap.servers": settings.kafka_bootstrap_servers})
        stamps = {"c-1": 1_700_000_000_123, "c-2": 1_700_000_000_456}
        for partition, (command_id, stamp) in enumerate(stamps.items()):
            value = orjson.dumps({"commandId": command_id, "ok": True})
            producer.produce(fresh_topic, value, partition=partition, timestamp=stamp)
        assert producer.flush(30) == 0
        time.sleep(0.5)  # read late: the time given is still the record's
        assert results.finished("c-2", timeout=30) == 1_700_000_000.456
        assert results.finished("c-1", timeout=30) == 1_700_000_000.123
        with pytest.raises(AssertionError, match="no result for command c-3"):
            results.finished("c-3", timeout=1)
    finally:
        results.close()
