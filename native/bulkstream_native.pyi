"""The fan-out's page expansion in Rust (native/src/lib.rs; streams/fanout/expand.py uses
it) and the ingest's filter of message digests (native/src/digest_filter.rs;
streams/aggregate/dedupe.py uses it)."""

def expand_page(
    page: bytes,
) -> (
    tuple[
        str,
        str,
        int,
        list[tuple[bytes, bytes]],
        list[tuple[int, str]],
        list[tuple[int, int, int]],
    ]
    | None
):
    """(job id, tenant, page number, sends, failures, fallback) of a fan-out page.

    `sends`: (messageId, send event JSON) of its routable users; `failures`:
    (position, reason) of the others, both in page order, byte for byte what
    `streams.sends` gives. `fallback`: (index in the page's users, sends before
    it, failures before it) of each user left to the Python path. None: the
    whole page is left to it.
    """

class DigestFilter:
    """A Bloom filter of a job's message digests (24 hex): a digest added is always
    answered by `maybe`; one never added, about once in a hundred per chunk."""

    def __init__(self) -> None: ...
    def add(self, digests: list[str]) -> None:
        """Add these digests."""
    def maybe(self, digests: list[str]) -> list[int]:
        """The indexes, in `digests`, of those that may have been added."""
    def __len__(self) -> int:
        """How many digests were added."""
    @property
    def nbytes(self) -> int:
        """The bytes its bits take."""
