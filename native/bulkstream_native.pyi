"""The fan-out's page expansion in Rust (native/src/lib.rs); streams/fanout/expand.py uses it."""

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
