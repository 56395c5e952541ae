"""A fan-out page expanded: each user's send event or routing failure, in page order.

Two implementations give the same bytes. The pure one decodes the page
(`schemas.fanout.decode_page`) and takes each user through
`streams.sends.unroutable_reason` and `PageSends.build`. The native one,
`bulkstream_native.expand_page` (native/, Rust, built by `make native`),
splices the page's own JSON into the sends instead of decoding and dumping
it; it hands back to the pure one a page or a user it cannot answer exactly
(see native/src/lib.rs). It is used when it is installed, unless
`BULKSTREAM_NATIVE=false`; tests/streams/test_expand_native.py keeps the two
byte-identical.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, NamedTuple

from schemas.fanout import PageFields, decode_page
from streams.native import member
from streams.sends import PageSends, routing_channels, unroutable_reason

log = logging.getLogger(__name__)

# (messageId, the send event's JSON)
Send = tuple[bytes, bytes]
# (position, why the user cannot be sent)
Failure = tuple[int, str]


class Expansion(NamedTuple):
    job_id: str
    tenant: str
    page: int
    sends: list[Send]
    failures: list[Failure]


Expand = Callable[[bytes], Expansion]
# bulkstream_native.expand_page's answer (native/bulkstream_native.pyi)
NativePage = tuple[str, str, int, list[Send], list[Failure], list[tuple[int, int, int]]]


class _PageUsers:
    """The Python expansion of users of one decoded page."""

    def __init__(self, page: PageFields) -> None:
        self.page = page
        self.channels = routing_channels(page.message)
        self.sends = PageSends(
            job_id=page.job_id,
            tenant=page.tenant,
            created_at=page.created_at,
            definition=page.message,
            global_data=page.data,
            message_ids=page.message_ids,
        )

    def expand(self, entry: Sequence[Any], sends: list[Send], failures: list[Failure]) -> None:
        """One page entry `(position, identity, user[, metadata])` into `sends` or `failures`."""
        position, identity, user = entry[0], entry[1], entry[2]
        reason = unroutable_reason(user, self.page.message, self.channels)
        if reason is not None:
            failures.append((position, reason))
        else:
            sends.append(
                self.sends.build(position, identity, user, entry[3] if len(entry) > 3 else None)
            )


def expand_pure(raw: bytes) -> Expansion:
    """The page's sends and failures, the Python way."""
    page = decode_page(raw)
    users = _PageUsers(page)
    sends: list[Send] = []
    failures: list[Failure] = []
    for entry in page.users:
        users.expand(entry, sends, failures)
    return Expansion(page.job_id, page.tenant, page.page, sends, failures)


_native_expand_page: Callable[[bytes], NativePage | None] | None = member("expand_page")
NATIVE_AVAILABLE = _native_expand_page is not None


def expand_native(raw: bytes) -> Expansion:
    """The page's sends and failures, natively where it can be done exactly."""
    assert _native_expand_page is not None, "bulkstream_native is not installed (make native)"
    expanded = _native_expand_page(raw)
    if expanded is None:  # a page the native code leaves whole to Python
        return expand_pure(raw)
    job_id, tenant, number, sends, failures, fallback = expanded
    if not fallback:
        return Expansion(job_id, tenant, number, sends, failures)
    # Users left to Python, each put back where it stands among the others.
    page = decode_page(raw)
    users = _PageUsers(page)
    all_sends: list[Send] = []
    all_failures: list[Failure] = []
    sent = failed = 0
    for index, sends_before, failures_before in fallback:
        all_sends += sends[sent:sends_before]
        all_failures += failures[failed:failures_before]
        sent, failed = sends_before, failures_before
        users.expand(page.users[index], all_sends, all_failures)
    all_sends += sends[sent:]
    all_failures += failures[failed:]
    return Expansion(job_id, tenant, number, all_sends, all_failures)


@cache
def page_expander(native: bool = True) -> Expand:
    """The expansion to use (`Settings.native`): the native one if asked for and
    installed, else the pure one."""
    if native and _native_expand_page is not None:
        log.info("fan-out pages are expanded natively (bulkstream_native)")
        return expand_native
    if native:
        log.warning("bulkstream_native is not installed: fan-out pages are expanded in Python")
    return expand_pure
