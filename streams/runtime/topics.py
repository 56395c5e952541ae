"""The faust app's topic objects, from the topic specs (streams.kafka.topics)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.kafka.topics import specs
from streams.settings import Settings


@dataclass(frozen=True)
class Topics:
    """The faust topic objects of one app."""

    commands: Any
    commands_dlq: Any
    command_results: Any
    job_events: Any
    progress: Any
    control: Any


def declare(app: Any, settings: Settings) -> Topics:
    s = specs(settings)

    def topic(role: str) -> Any:
        spec = s[role]
        return app.topic(
            spec.name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=spec.partitions,
            config=spec.config,
        )

    return Topics(
        commands=topic("commands"),
        commands_dlq=topic("commands_dlq"),
        command_results=topic("command_results"),
        job_events=topic("job_events"),
        progress=topic("progress"),
        control=topic("control"),
    )
