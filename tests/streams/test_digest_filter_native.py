"""The native Bloom filter of message digests (bulkstream_native.DigestFilter, native/):
never "no" for a digest added, rarely "maybe" for one that was not, always "maybe" for
what is not a digest; its memory grows in chunks with what it holds."""

from __future__ import annotations

from streams.aggregate.dedupe import _DIGEST_FILTER
from streams.ids import message_digest
from tests.streams.native import require_native

require_native(_DIGEST_FILTER is not None)

from bulkstream_native import DigestFilter  # noqa: E402 (once require_native has let the module run)

JOB = "1-6b0f2fd2-7864a974a505dfc9fa1e7de2"


def digests(first: int, count: int) -> list[str]:
    return [message_digest(JOB, f"user:{n}") for n in range(first, first + count)]


def test_every_digest_added_is_maybe_and_few_others() -> None:
    added, other = digests(0, 300_000), digests(300_000, 100_000)
    digest_filter = DigestFilter()
    for start in range(0, len(added), 1000):
        digest_filter.add(added[start : start + 1000])
    assert len(digest_filter) == len(added)
    assert digest_filter.maybe(added) == list(range(len(added)))
    # About 1 % per chunk at most; 300k digests fill six chunks.
    assert len(digest_filter.maybe(other)) < 0.06 * len(other)


def test_an_empty_filter_holds_nothing_and_little_memory() -> None:
    digest_filter = DigestFilter()
    assert digest_filter.maybe(digests(0, 1000)) == []
    assert len(digest_filter) == 0
    assert digest_filter.nbytes == 0
    digest_filter.add(digests(0, 10))
    assert digest_filter.nbytes <= 2048  # a 10-user job: its first chunk


def test_memory_follows_what_it_holds() -> None:
    digest_filter = DigestFilter()
    digest_filter.add(digests(0, 1_000_000))
    # 10 bits a digest, in chunks of 4x the one before (up to 1,048,576 digests).
    assert 1_000_000 * 10 / 8 <= digest_filter.nbytes <= 1.8 * 1_000_000 * 10 / 8


def test_what_is_not_a_digest_is_always_maybe() -> None:
    digest_filter = DigestFilter()
    digest_filter.add(["", "xyz", "0" * 23, "g" * 24])
    odd = ["", "not hex at all!!!!!!!!!!", "0" * 25, "é" * 24]
    assert digest_filter.maybe(odd) == [0, 1, 2, 3]
    assert len(digest_filter) == 0  # nothing to add: never a "no" for them anyway
    upper = digests(0, 5)
    digest_filter.add([digest.upper() for digest in upper])
    assert digest_filter.maybe(upper) == [0, 1, 2, 3, 4]
