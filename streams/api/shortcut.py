"""The shortcut for the request clients repeat: `GET /bulk/{id}` answered from the API's
copy of the job view (`streams.api.job_views`) before Starlette's middleware stack
(its error middleware, `HttpMetrics`, the router's match, request, response and
exception handlers), which costs more CPU than the answer itself (docs/benchmarks.md,
API).

It answers only what the routed endpoint would answer, byte for byte: a GET of
`/bulk/{job_id}` whose tenant and id the app accepts and whose copy is kept. Anything
else (no copy, no or an unknown key, an odd id, a root path, HEAD) goes on to the app,
which answers as it always does. Its answers are counted under the route it stands
for (`/bulk/{job_id}`), like the app's.

Served by uvicorn, the API answers the same requests one step earlier still, in the
HTTP protocol (`streams.api.protocol`); this ASGI form serves the rest (a request the
protocol left to the app, another ASGI server, the tests' in-process clients).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from starlette.types import Scope, Send

from streams.api.observe import observe

PREFIX = "/bulk/"
# The job view's answer, if a copy is kept: (Authorization header or None, job id).
CopyReader = Callable[[str | None, str], bytes | None]


class JobViewShortcut:
    """Answers a kept job view for an HTTP scope; `template` is the path of the app's own
    `GET /bulk/{job_id}` route, which its answers are counted under."""

    def __init__(self, read_copy: CopyReader, template: str) -> None:
        self.read_copy, self.template = read_copy, template

    def answer(self, path: str, authorization: str | None) -> bytes | None:
        """The kept answer to a GET of `path` (as the app would route it, without a root
        path or query), if the shortcut may give it (else the app answers)."""
        if not path.startswith(PREFIX):
            return None
        job_id = path[len(PREFIX) :]
        if "/" in job_id:
            return None
        return self.read_copy(authorization, job_id)

    def counted(self, started: float) -> None:
        """Count an answer given since `perf_counter` read `started`, as the app would."""
        observe(self.template, "GET", "200", time.perf_counter() - started)

    async def answered(self, scope: Scope, send: Send) -> bool:
        """Whether it answered this request (if not, the app must)."""
        started = time.perf_counter()
        if scope.get("root_path") or scope["method"] != "GET":
            return False
        answer = self.answer(scope["path"], authorization(scope["headers"]))
        if answer is None:
            return False
        await send({"type": "http.response.start", "status": 200, "headers": headers(answer)})
        await send({"type": "http.response.body", "body": answer})
        self.counted(started)
        return True


def headers(answer: bytes) -> list[tuple[bytes, bytes]]:
    """The headers of an answer, as Starlette's `Response(answer, media_type=JSON)` has them."""
    return [(b"content-length", b"%d" % len(answer)), (b"content-type", b"application/json")]


def authorization(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The first Authorization header of a request's (lowercased names, as ASGI and
    uvicorn keep them), as Starlette's `request.headers` reads it."""
    for name, value in headers:
        if name == b"authorization":
            text: str = value.decode("latin-1")
            return text
    return None
