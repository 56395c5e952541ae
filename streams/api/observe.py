"""HTTP metrics of the API: latency and answers by route template, method and code."""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streams.metrics import HTTP_LATENCY, HTTP_REQUESTS, exposition

# (route template, method, code) -> its latency and answer series, looked up once each:
# the labels are few (templates, never ids), and a lookup costs more than an observation.
_SERIES: dict[tuple[str, str, str], tuple[Histogram, Counter]] = {}


def observe(template: str, method: str, status: str, seconds: float) -> None:
    """Count one answer of `template` and its latency."""
    labels = (template, method, status)
    series = _SERIES.get(labels)
    if series is None:
        series = _SERIES[labels] = (HTTP_LATENCY.labels(*labels), HTTP_REQUESTS.labels(*labels))
    series[0].observe(seconds)
    series[1].inc()


class HttpMetrics:
    """ASGI middleware: one observation per request, labelled by the route's template
    (`/bulk/{job_id}`, never the job id itself, so series stay few). The template is
    the one Starlette's router matched (it leaves the route in the scope); a request
    no route matched is `unmatched`, one whose method no route takes (405) keeps the
    path's template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def answer(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            route = scope.get("route")
            template = route.path if isinstance(route, Route) else "unmatched"
            observe(template, scope["method"], str(status), time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    body, content_type = exposition()
    return Response(body, media_type=content_type)
