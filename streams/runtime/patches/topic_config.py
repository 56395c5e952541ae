"""Patch: every topic faust creates carries the configuration of bulkstream's topics.

Upstream: faust creates the state changelog and the assignor's leader topic
itself (`Transport._create_topic`), with the app's replication factor but
no way to add topic configuration such as `min.insync.replicas`; faust
(0.15.3, master) offers no setting for it.

Failure it prevents: on a cluster run with replication 3 and
`min.insync.replicas=2` (`BULKSTREAM_MIN_INSYNC_REPLICAS`), the changelog
(the aggregate's source of truth) took the broker's default of 1, so an
acknowledged state write could live on one broker only and be lost with it.

Regression test: tests/streams/test_topics.py (the changelog's
`min.insync.replicas` after a worker made it).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from faust.transport.drivers import aiokafka as aiokafka_driver


class TopicConfigOnCreate(aiokafka_driver.Transport):
    """faust's transport, adding the app's `topic_config` to every topic it creates."""

    async def _create_topic(
        self, owner: Any, client: Any, topic: str, partitions: int, replication: int, **kwargs: Any
    ) -> None:
        common: Mapping[str, str] = getattr(self.app, "topic_config", MappingProxyType({}))
        kwargs["config"] = {**common, **(kwargs.get("config") or {})}
        await super()._create_topic(owner, client, topic, partitions, replication, **kwargs)
