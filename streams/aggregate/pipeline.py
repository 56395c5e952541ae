"""What the aggregate stage's agents share: settings, the faust runtime, state and views."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.aggregate.state import FAMILIES, PARTITION_KEYS, key_family
from streams.runtime.app import KeyFamilies, create_runtime
from streams.runtime.topics import Topics
from streams.settings import Settings
from streams.views import Views, patient_redis

# The state's RocksDB column families (streams/aggregate/state.py).
STATE_FAMILIES = KeyFamilies(names=FAMILIES, of=key_family, offsets=PARTITION_KEYS)


@dataclass(frozen=True)
class Pipeline:
    """Everything the agents share: settings, the app, its topics, state and views."""

    settings: Settings
    app: Any
    topics: Topics
    state: Any
    views: Views


def build_pipeline(settings: Settings) -> Pipeline:
    runtime = create_runtime(settings, STATE_FAMILIES)
    views = Views(
        patient_redis(settings.redis_url), settings.redis_prefix, settings.retention_seconds
    )
    return Pipeline(
        settings=settings,
        app=runtime.app,
        topics=runtime.topics,
        state=runtime.state,
        views=views,
    )
