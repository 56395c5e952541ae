"""The shortcut for the request clients repeat: `GET /bulk/{id}` answered from the API's
copy of the job view (`streams.api.job_views`) before Starlette builds its router match,
request, response and exception handlers, which cost more CPU than the answer itself
(docs/benchmarks.md, API).

It answers only what the routed endpoint would answer, byte for byte: a GET of
`/bulk/{job_id}` whose tenant and id the app accepts and whose copy is kept. Anything
else (no copy, no or an unknown key, an odd id, a root path, HEAD) goes on to the app,
which answers as it always does. It sits inside `HttpMetrics` and names the route it
stands for, so its answers are counted under `/bulk/{job_id}` like the app's.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/bulk/"
# The job view's answer, if a copy is kept: (Authorization header or None, job id).
CopyReader = Callable[[str | None, str], bytes | None]


class JobViewShortcut:
    """ASGI middleware answering a kept job view; `route` is the app's own
    `GET /bulk/{job_id}` route, left in the scope as Starlette's router would."""

    def __init__(self, app: ASGIApp, read_copy: CopyReader, route: Route) -> None:
        self.app, self.read_copy, self.route = app, read_copy, route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        answer = self._copy(scope) if scope["type"] == "http" else None
        if answer is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = self.route
        headers = [
            (b"content-length", str(len(answer)).encode()),
            (b"content-type", b"application/json"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})

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
