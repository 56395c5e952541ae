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
"""

from __future__ import annotations

import time
from collections.abc import Callable

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

    async def answered(self, scope: Scope, send: Send) -> bool:
        """Whether it answered this request (if not, the app must)."""
        started = time.perf_counter()
        answer = self._copy(scope)
        if answer is None:
            return False
        headers = [
            (b"content-length", str(len(answer)).encode()),
            (b"content-type", b"application/json"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})
        observe(self.template, "GET", "200", time.perf_counter() - started)
        return True

    def _copy(self, scope: Scope) -> bytes | None:
        path: str = scope["path"]
        if scope["method"] != "GET" or scope.get("root_path") or not path.startswith(PREFIX):
            return None
        job_id = path[len(PREFIX) :]
        if "/" in job_id:
            return None
        return self.read_copy(_authorization(scope), job_id)


def _authorization(scope: Scope) -> str | None:
    """The first Authorization header, as Starlette's `request.headers` reads it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1")
            return text
    return None
