"""Commands of a partition are applied in offset order, and none is skipped.

The aggregate's replay safety rests on it (a job's `applied_offset` says
every command of the job up to it is in), yet faust's delivery around a
rebalance can drop a fetched message and still commit past it. So the state
keeps, per partition, the offset of the last command applied (`cursor`), and
the commands agent admits an event only if it is the next one, or a replay.

An event past the next one means faust skipped something: the partition is
rewound to the cursor and events are refused until the rewound fetch
arrives. The first event it brings is admitted even if offsets are missing
before it: those hold no command (transaction markers or aborted records of
a transactional producer upstream), since the fetch started right there.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.types import TP

from streams.state import cursor_key

log = logging.getLogger(__name__)


class CommandOrder:
    def __init__(self, app: Any, state: Any) -> None:
        self.app = app
        self.state = state
        # partition -> (consumer generation, offset that showed the gap) of a pending rewind
        self.rewinds: dict[int, tuple[int, int]] = {}

    async def admit(self, message: Any) -> bool:
        partition, offset = message.partition, message.offset
        raw = self.state.get(cursor_key(partition))
        last = None if raw is None else int(raw)
        if last is None or offset <= last + 1:
            self.rewinds.pop(partition, None)
            return True
        generation = self.app.consumer_generation_id
        pending = self.rewinds.get(partition)
        if pending is not None and pending[0] == generation:
            if offset <= pending[1]:  # the rewound fetch: nothing to apply lies in between
                del self.rewinds[partition]
                return True
            return False  # fetched before the rewind; it comes again
        log.warning(
            "commands partition %d: offset %d arrived after %d; rewinding to %d",
            partition,
            offset,
            last,
            last + 1,
        )
        self.rewinds[partition] = (generation, offset)
        await self.app.consumer.seek(TP(message.topic, partition), last + 1)
        return False

    def applied(self, message: Any) -> None:
        key = cursor_key(message.partition)
        raw = self.state.get(key)
        if raw is None or message.offset > int(raw):
            self.state[key] = str(message.offset).encode()
