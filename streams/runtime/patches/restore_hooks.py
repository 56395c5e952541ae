"""Patch: a table tells what it restored from its changelog.

Upstream: none (a missing hook, not a fault): faust applies restored
changelog events to the store (`Table.apply_changelog_batch`) and tells no
one. The aggregate keeps a dedupe index locally, without a changelog of its
own, and rebuilds it from the batch records as they are restored.

Failure it prevents: a dedupe index missing the users of batches restored
from the changelog (a new owner of a partition taking their identities
again as new users).

Regression test: tests/streams/runtime/test_restore_hooks.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import faust


class RestoreHooks(faust.Table):  # type: ignore[type-arg]
    """A faust table calling `restore_hooks` with each batch of changelog events
    it restored, after applying it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.restore_hooks: list[Callable[[list[Any]], None]] = []

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        events = list(batch)
        super().apply_changelog_batch(events)
        for hook in self.restore_hooks:
            hook(events)
