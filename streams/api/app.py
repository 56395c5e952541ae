"""The ASGI app (`bulkstream api`): Courier's Bulk API over bulkstream.

    POST /bulk                  create a job            -> {"jobId"}
    POST /bulk/{job_id}         ingest users            -> {"errors", "total"}
    POST /bulk/{job_id}/run     run the job once        -> 202
                                (body, all optional: scheduledAt, sendsPerSecond, dryRun)
    POST /bulk/{job_id}/cancel  cancel, once settled    -> {"job": {...}}
    POST /bulk/{job_id}/pause   pause, once settled     -> {"job": {...}}
    POST /bulk/{job_id}/resume  resume                  -> {"job": {...}}
    POST /bulk/{job_id}/retry   a new job of the users  -> {"jobId"}
                                whose delivery failed
    GET  /bulk/{job_id}         the job summary         -> {"job": {...}}
    GET  /bulk/{job_id}/users   users, cursor-paged     -> {"items", "paging"}
    GET  /messages/{message_id} a reported message      -> Courier's message details
    POST /webhooks              add an endpoint         -> 201 {"id", "url", "events", "secret"}
    GET  /webhooks              the tenant's endpoints  -> {"items"}
    DELETE /webhooks/{id}       remove one              -> 204   (streams/api/webhooks.py)
    GET  /openapi.json, /healthz, /readyz, /metrics (Prometheus)

Writes become commands on Kafka and answer with the aggregate's own result;
reads come from the Redis views. A tenant only ever sees its own jobs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from schemas.base import JsonObject
from schemas.commands import (
    AnyCommand,
    BulkUser,
    CancelJob,
    CommandResult,
    ControlCommand,
    CreateJob,
    ErrorType,
    IngestUsers,
    JobMessage,
    PauseJob,
    ResumeJob,
    RetryJob,
    RunJob,
    RunOptions,
)
from streams import metrics
from streams.api import openapi
from streams.api.auth import ApiKeys
from streams.api.bodies import parse_object, read_body
from streams.api.commands import CommandGateway
from streams.api.errors import (
    ApiError,
    JsonResponse,
    from_validation,
    invalid,
    not_found,
    too_large,
    unauthorized,
    unavailable,
)
from streams.api.idempotency import Claim, Idempotency, fingerprint
from streams.api.job_views import JobViewCache
from streams.api.messages import MESSAGE_ID, message_details
from streams.api.observe import HttpMetrics, metrics_endpoint
from streams.api.shortcut import JobViewShortcut
from streams.api.wakeups import ResultWakeups
from streams.api.webhooks import WebhookRoutes
from streams.ids import derived_job_id, new_command_id, new_job_id
from streams.kafka.topics import ensure_topics
from streams.settings import Settings
from streams.views import InvalidCursor, Views
from streams.views.connection import redis_from_url

log = logging.getLogger(__name__)
# fullmatch, not match with `$`: `$` also matches before a final newline ("job\n").
JOB_ID = re.compile(r"[^\x00-\x1f\x7f/]{1,200}")


class CreateJobBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: JobMessage


class IngestBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    users: list[BulkUser]
    metadata: JsonObject | None = None


class Api:
    def __init__(self, settings: Settings, keys: ApiKeys) -> None:
        self.settings = settings
        self.keys = keys
        self.redis = redis_from_url(
            settings.redis_url, socket_timeout=2.0, socket_connect_timeout=2.0
        )
        self.views = Views(self.redis, settings.redis_prefix, settings.retention_seconds)
        # One pub/sub connection: wakes the requests waiting for their command's result,
        # and drops the copies of job views that workers write again.
        self.job_views = JobViewCache()
        self.answered_from_copy = metrics.JOB_VIEW_ANSWERS.labels("copy")
        self.answered_from_redis = metrics.JOB_VIEW_ANSWERS.labels("redis")
        self.wakeups = ResultWakeups(
            settings.redis_url, settings.redis_prefix, job_views=self.job_views
        )
        self.gateway = CommandGateway(settings, self.views, self.wakeups)
        self.idempotency = Idempotency(
            self.redis, settings.redis_prefix, settings.idempotency_ttl_seconds
        )
        self.webhooks = WebhookRoutes(settings, self.redis, self.gateway.producer)

    def start(self) -> None:
        self.wakeups.start()

    async def close(self) -> None:
        await self.wakeups.close()
        await asyncio.to_thread(self.gateway.close)
        await self.redis.aclose()

    # -- request helpers -----------------------------------------------------
    def tenant(self, request: Request) -> str:
        tenant = self.keys.tenant(request.headers.get("authorization"))
        if tenant is None:
            raise unauthorized()
        return tenant

    async def body(self, request: Request, *, required: bool = True) -> tuple[bytes, Any]:
        settings = self.settings
        raw = await read_body(
            request.stream(),
            request.headers.get("content-length"),
            settings.api_max_body_bytes,
            settings.api_body_timeout_seconds,
        )
        if not raw:  # no body; one of whitespace alone is not JSON, and a 400 below
            if required:
                raise invalid("Request body must be a JSON object")
            return raw, {}
        content_type = request.headers.get("content-type", "application/json")
        if "json" not in content_type.split(";")[0].lower():
            raise ApiError(415, "Send the body as application/json")
        return raw, parse_object(raw, settings.api_max_json_depth)

    @staticmethod
    def job_id(request: Request) -> str:
        job_id = str(request.path_params["job_id"])
        if not JOB_ID.fullmatch(job_id):
            raise not_found(job_id[:200])
        return job_id

    async def write(
        self,
        request: Request,
        tenant: str,
        raw: bytes,
        handler: Callable[[Claim | None], Awaitable[Response]],
    ) -> Response:
        """Run a write once per Idempotency-Key; the handler gets the key's claim (its
        command id, and the job id a create makes), or None without a key."""

        return await self.idempotency.run(
            tenant,
            request.headers.get("idempotency-key"),
            fingerprint(request.method, request.url.path, raw),
            handler,
        )

    async def submit(self, command: AnyCommand, patience: float | None = None) -> CommandResult:
        result = await self.gateway.submit(command, patience)
        if result.ok:
            return result
        if result.error_type is ErrorType.NOT_FOUND:
            raise not_found(command.job_id)
        if result.error_type is ErrorType.ALREADY_RUN:
            # Courier: 400 invalid_request_error (never a 409, which the SDKs retry).
            name = (
                "BulkJobDuplicateInvocationError"
                if isinstance(command, RunJob)
                else "BulkJobAlreadySubmittedError"
            )
            raise invalid(f"{name}: {result.message}")
        if result.error_type is ErrorType.CONFLICT:
            # Only a create whose Idempotency-Key made this job id before, for
            # another message, meets an existing job.
            raise ApiError(
                422, "This Idempotency-Key already created a job with a different message"
            )
        if result.error_type is ErrorType.NOT_ALLOWED:
            raise invalid(f"Job {command.job_id}: {result.message}")
        raise invalid(result.message or "The command could not be applied")

    # -- endpoints -----------------------------------------------------------
    async def create_job(self, request: Request) -> Response:
        tenant = self.tenant(request)
        raw, body = await self.body(request)

        async def handle(claim: Claim | None) -> Response:
            try:
                parsed = CreateJobBody.model_validate(body)
            except ValidationError as exc:
                raise from_validation(exc) from exc
            job_id = claim.job_id if claim else new_job_id()
            await self.submit(
                CreateJob(
                    command_id=claim.command_id if claim else new_command_id(),
                    tenant=tenant,
                    job_id=job_id,
                    message=parsed.message,
                    created_at=time.time(),
                )
            )
            return JsonResponse({"jobId": job_id})

        return await self.write(request, tenant, raw, handle)

    async def ingest(self, request: Request) -> Response:
        tenant = self.tenant(request)
        job_id = self.job_id(request)
        raw, body = await self.body(request)

        async def handle(claim: Claim | None) -> Response:
            users = body.get("users")
            if isinstance(users, list) and len(users) > self.settings.api_max_users:
                raise too_large(
                    f"{len(users)} users in one request; the limit is {self.settings.api_max_users}"
                )
            try:
                parsed = IngestBody.model_validate(body)
            except ValidationError as exc:
                raise from_validation(exc) from exc
            result = await self.submit(
                IngestUsers(
                    command_id=claim.command_id if claim else new_command_id(),
                    tenant=tenant,
                    job_id=job_id,
                    users=parsed.users,
                    metadata=parsed.metadata,
                )
            )
            errors = [e.to_wire() for e in result.errors or []]
            return JsonResponse({"errors": errors, "total": result.total or 0})

        return await self.write(request, tenant, raw, handle)

    async def run(self, request: Request) -> Response:
        tenant = self.tenant(request)
        job_id = self.job_id(request)
        raw, body = await self.body(request, required=False)

        async def handle(claim: Claim | None) -> Response:
            try:
                options = RunOptions.model_validate(body)
            except ValidationError as exc:
                raise from_validation(exc) from exc
            command_id = claim.command_id if claim else new_command_id()
            await self.submit(
                RunJob(
                    command_id=command_id,
                    tenant=tenant,
                    job_id=job_id,
                    **options.model_dump(exclude_defaults=True),
                )
            )
            return Response(status_code=202)

        return await self.write(request, tenant, raw, handle)

    async def retry(self, request: Request) -> Response:
        """A new job of the finished job's failed users, answered once it holds them all."""
        tenant = self.tenant(request)
        job_id = self.job_id(request)
        raw, body = await self.body(request, required=False)
        if body:
            raise invalid("retry takes no body")

        async def handle(claim: Claim | None) -> Response:
            # Not the claim's own job id: that one is a create's with the same key.
            new_job = derived_job_id(claim.job_id, "retry", job_id) if claim else new_job_id()
            command = RetryJob(
                command_id=claim.command_id if claim else new_command_id(),
                tenant=tenant,
                job_id=job_id,
                new_job_id=new_job,
                created_at=time.time(),
            )
            made = await self.submit(command, self.settings.api_settle_timeout_seconds)
            await self.gateway.await_received(
                tenant, new_job, made.total or 0, self.settings.api_settle_timeout_seconds
            )
            return JsonResponse({"jobId": new_job})

        return await self.write(request, tenant, raw, handle)

    async def cancel(self, request: Request) -> Response:
        return await self.steer(request, CancelJob)

    async def pause(self, request: Request) -> Response:
        return await self.steer(request, PauseJob)

    async def resume(self, request: Request) -> Response:
        return await self.steer(request, ResumeJob)

    async def steer(self, request: Request, kind: type[ControlCommand]) -> Response:
        """A control command, answered with the job view once it has settled."""
        tenant = self.tenant(request)
        job_id = self.job_id(request)
        raw, body = await self.body(request, required=False)
        if body:
            raise invalid(f"{request.url.path.rsplit('/', 1)[-1]} takes no body")

        async def handle(claim: Claim | None) -> Response:
            command_id = claim.command_id if claim else new_command_id()
            command = kind(command_id=command_id, tenant=tenant, job_id=job_id)
            await self.submit(command, self.settings.api_settle_timeout_seconds)
            job = await self.views.read_job(tenant, job_id)
            if job is None:
                raise not_found(job_id)
            return JsonResponse({"job": job.to_wire()})

        return await self.write(request, tenant, raw, handle)

    def kept_answer(self, authorization: str | None, job_id: str) -> bytes | None:
        """The kept copy of a job's answer for this key, if any: `JobViewShortcut`'s reader,
        accepting only the tenant and id `get_job` would."""
        tenant = self.keys.tenant(authorization)
        if tenant is None or not JOB_ID.fullmatch(job_id):
            return None
        answer = self.job_views.get(tenant, job_id)
        if answer is not None:
            self.answered_from_copy.inc()
        return answer

    async def get_job(self, request: Request) -> Response:
        tenant = self.tenant(request)
        job_id = self.job_id(request)
        answer = self.job_views.get(tenant, job_id)
        if answer is None:
            since = self.job_views.begin()
            job = await self.views.read_job(tenant, job_id)
            if job is None:
                raise not_found(job_id)
            answer = orjson.dumps({"job": job.to_wire()})
            self.job_views.keep(tenant, job_id, answer, since)
            self.answered_from_redis.inc()
        else:
            self.answered_from_copy.inc()
        return Response(answer, media_type="application/json")

    async def list_users(self, request: Request) -> Response:
        tenant = self.tenant(request)
        job_id = self.job_id(request)
        cursor = request.query_params.get("cursor") or None
        try:
            page = await self.views.read_users(tenant, job_id, cursor)
        except InvalidCursor as exc:
            raise invalid("cursor: not a cursor this server handed out") from exc
        if page is None:
            raise not_found(job_id)
        return JsonResponse(
            {"items": page.items, "paging": {"cursor": page.cursor, "more": page.more}}
        )

    async def get_message(self, request: Request) -> Response:
        tenant = self.tenant(request)
        message_id = str(request.path_params["message_id"])
        record = None
        if MESSAGE_ID.fullmatch(message_id):
            record = await self.views.delivery.read(tenant, message_id)
        if record is None:
            raise ApiError(404, f"Message {message_id[:200]} not found")
        return JsonResponse(message_details(message_id, record))

    # -- webhooks (streams/api/webhooks.py) ------------------------------------
    async def create_webhook(self, request: Request) -> Response:
        tenant = self.tenant(request)
        raw, body = await self.body(request)
        return await self.write(request, tenant, raw, partial(self.webhooks.create, tenant, body))

    async def list_webhooks(self, request: Request) -> Response:
        return await self.webhooks.list(self.tenant(request))

    async def delete_webhook(self, request: Request) -> Response:
        tenant = self.tenant(request)
        return await self.webhooks.delete(tenant, str(request.path_params["webhook_id"]))

    async def healthz(self, request: Request) -> Response:
        return JsonResponse({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        try:
            await self.redis.ping()
        except RedisError:
            raise unavailable("Redis") from None
        try:
            await asyncio.to_thread(self.gateway.producer.list_topics, 2.0)
        except Exception:
            raise unavailable("Kafka") from None
        return JsonResponse({"status": "ready"})

    async def openapi(self, request: Request) -> Response:
        return JsonResponse(openapi.document(self.settings.api_max_users))


def _guard(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """Every failure becomes a JSON error; Redis trouble a 503, never a 500."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except ApiError as exc:
            return exc.response()
        except (RedisError, OSError):
            return unavailable("Redis").response()

    return guarded


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own errors (no such route, method not allowed) as JSON, their headers
    (a 405's `Allow`) kept."""
    assert isinstance(exc, HTTPException)
    return ApiError(exc.status_code, str(exc.detail), dict(exc.headers or {})).response()


class BulkApi(Starlette):
    """The API's Starlette app, with `JobViewShortcut` in front of its middleware stack."""

    def __init__(self, shortcut: JobViewShortcut, **options: Any) -> None:
        super().__init__(**options)
        self.shortcut = shortcut

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and await self.shortcut.answered(scope, send):
            return
        await super().__call__(scope, receive, send)


def create_api(settings: Settings, keys: ApiKeys | None = None) -> BulkApi:
    keys = keys or ApiKeys.from_settings(settings)
    holder: dict[str, Api] = {}

    def api() -> Api:
        return holder["api"]

    def route(path: str, name: str, methods: list[str]) -> Route:
        async def endpoint(request: Request) -> Response:
            return await _guard(getattr(api(), name))(request)

        return Route(path, endpoint, methods=methods, name=name)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(ensure_topics, settings, 5.0)
        except Exception as exc:  # the API still starts and answers 503 until Kafka is back
            log.warning("could not check the topics: %s", exc)
        holder["api"] = Api(settings, keys)
        holder["api"].start()
        try:
            yield
        finally:
            await holder.pop("api").close()

    def kept_answer(authorization: str | None, job_id: str) -> bytes | None:
        return holder["api"].kept_answer(authorization, job_id) if holder else None

    get_job = route("/bulk/{job_id}", "get_job", ["GET"])
    routes = [
        route("/bulk", "create_job", ["POST"]),
        route("/bulk/{job_id}", "ingest", ["POST"]),
        get_job,
        route("/bulk/{job_id}/run", "run", ["POST"]),
        route("/bulk/{job_id}/cancel", "cancel", ["POST"]),
        route("/bulk/{job_id}/pause", "pause", ["POST"]),
        route("/bulk/{job_id}/resume", "resume", ["POST"]),
        route("/bulk/{job_id}/retry", "retry", ["POST"]),
        route("/bulk/{job_id}/users", "list_users", ["GET"]),
        route("/messages/{message_id}", "get_message", ["GET"]),
        route("/webhooks", "create_webhook", ["POST"]),
        route("/webhooks", "list_webhooks", ["GET"]),
        route("/webhooks/{webhook_id}", "delete_webhook", ["DELETE"]),
        route("/openapi.json", "openapi", ["GET"]),
        route("/healthz", "healthz", ["GET"]),
        route("/readyz", "readyz", ["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"], name="metrics"),
    ]
    return BulkApi(
        JobViewShortcut(kept_answer, get_job.path),
        routes=routes,
        middleware=[Middleware(HttpMetrics)],
        exception_handlers={HTTPException: _http_error},
        lifespan=lifespan,
    )
