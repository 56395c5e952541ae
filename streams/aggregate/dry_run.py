"""A dry run: what a job's run would send, resolved without writing a send.

Every user the job holds goes through the fan-out's own rules
(`streams.sends`): routable or not, and the first `SAMPLE` routable users'
send events built exactly as the run would build them, their `messageId`
null (a dry run burns none). Nothing reaches `bulk.sends`; the job stays
CREATED and can be run for real afterwards.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import orjson

from schemas.views import DryRun
from streams.aggregate.paging import MissingUsers, decode_batch
from streams.aggregate.state import JobState
from streams.sends import PageSends, routing_channels, unroutable_reason

SAMPLE = 10


async def resolve(job_id: str, job: JobState, batches: Iterable[bytes]) -> DryRun:
    """The outcome of a dry run over the job's stored batches (in position order).

    Yields to the event loop after every batch: a large job's dry run shares the
    worker with the commands of other jobs."""
    sends = PageSends(
        job_id=job_id,
        tenant=job.tenant,
        created_at=job.created_at,
        definition=job.send,
        global_data=job.data,
        message_ids=job.message_ids,
    )
    channels = routing_channels(job.send)
    routable = unroutable = 0
    sample: list[dict[str, Any]] = []
    expected = 0
    for raw in batches:
        for stored in decode_batch(raw):
            position, identity, user = stored[0], stored[1], stored[2]
            if position != expected:
                raise MissingUsers(f"position {expected} is missing")
            expected += 1
            if unroutable_reason(user, job.send, channels) is not None:
                unroutable += 1
                continue
            routable += 1
            if len(sample) < SAMPLE:
                metadata = stored[3] if len(stored) > 3 else None
                _, send = sends.build(position, identity, user, metadata)
                built: dict[str, Any] = orjson.loads(send)
                built["messageId"] = None
                sample.append(built)
        await asyncio.sleep(0)
    if expected != job.received:
        raise MissingUsers(f"{job.received - expected} of {job.received} users are missing")
    return DryRun(status="COMPLETED", routable=routable, unroutable=unroutable, sample=sample)


def failed(reason: str) -> DryRun:
    return DryRun(status="ERROR", routable=0, unroutable=0, sample=[], reason=reason)
