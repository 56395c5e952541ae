"""A synchronous reader of one namespace's Redis views and command results.

It reads through the product's own `streams.views.Views` (so a job, a page of
users or a result is decoded exactly as the API decodes it), on an event loop
and a connection of its own that live as long as the reader: cheap enough to
poll every few milliseconds. Its Redis client rides out a restart of Redis
(others share it) for up to a minute. Close it (or use it as a context manager).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from types import TracebackType
from typing import Any, Self, TypeVar

from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from schemas.commands import CommandResult
from schemas.views import JobStatus, JobView
from streams.settings import Settings
from streams.testing.processes import wait_for
from streams.views import UsersPage, Views, keys
from streams.views.connection import redis_from_url

T = TypeVar("T")


class ViewReader:
    """Reads the views of `settings`' Redis prefix; `tenant` unless a call names another."""

    def __init__(self, settings: Settings, tenant: str = "acme") -> None:
        self.settings = settings
        self.tenant = tenant
        self._runner = asyncio.Runner()
        self.redis = redis_from_url(
            settings.redis_url,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 60),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
        self.views = Views(self.redis, settings.redis_prefix, settings.retention_seconds)

    def read(self, fn: Callable[[Views], Awaitable[T]]) -> T:
        """What `fn` reads through the views (or their `redis`), synchronously."""

        async def go() -> T:
            return await fn(self.views)

        return self._runner.run(go())

    # -- one read --------------------------------------------------------------
    def job(self, job_id: str, tenant: str | None = None) -> JobView | None:
        return self.read(lambda v: v.read_job(tenant or self.tenant, job_id))

    def result(
        self, job_id: str, command_id: str, tenant: str | None = None
    ) -> CommandResult | None:
        return self.read(lambda v: v.read_result(tenant or self.tenant, job_id, command_id))

    def users(self, job_id: str, tenant: str | None = None) -> list[dict[str, Any]]:
        """Every user of the job, paged through the view by cursor."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            page = self.read(
                partial(_read_users, tenant=tenant or self.tenant, job_id=job_id, cursor=cursor)
            )
            assert page is not None, f"no job {job_id}"
            items.extend(page.items)
            if not page.more:
                return items
            cursor = page.cursor

    def created_at(self, job_id: str, tenant: str | None = None) -> float:
        """The job's creation time as its view holds it (message ids are made from it)."""
        key = keys.job(self.settings.redis_prefix, tenant or self.tenant, job_id)
        raw = self.read(lambda v: v.redis.hget(key, "createdAt"))
        assert raw is not None, f"no job {job_id}"
        return float(raw)

    def job_bytes(self, job_id: str, tenant: str | None = None) -> int:
        """Redis memory held by a job's views (summary, users and status buckets)."""
        match = f"{keys.job(self.settings.redis_prefix, tenant or self.tenant, job_id)}*"

        async def measure(views: Views) -> int:
            names = [name async for name in views.redis.scan_iter(match=match, count=5000)]
            total = 0
            for start in range(0, len(names), 1000):
                async with views.redis.pipeline(transaction=False) as pipe:
                    for name in names[start : start + 1000]:
                        pipe.memory_usage(name, samples=0)
                    total += sum(int(v or 0) for v in await pipe.execute())
            return total

        return self.read(measure)

    # -- waiting ---------------------------------------------------------------
    def wait_result(
        self,
        job_id: str,
        command_id: str,
        timeout: float = 60,
        every: float = 0.2,
        tenant: str | None = None,
    ) -> CommandResult:
        return wait_for(
            lambda: self.result(job_id, command_id, tenant),
            timeout,
            f"the result of command {command_id}",
            every,
        )

    def wait_status(self, job_id: str, status: str, timeout: float, every: float = 0.2) -> JobView:
        """Until the job has `status`; fails at once if it ended in ERROR instead
        (ERROR is final)."""

        def probe() -> JobView | None:
            job = self.job(job_id)
            if job is not None and job.status == JobStatus.ERROR and status != JobStatus.ERROR:
                raise AssertionError(f"job {job_id} is ERROR: {job}")
            return job if job is not None and job.status == status else None

        return wait_for(probe, timeout, f"job {job_id} to be {status}", every)

    # -- the end -----------------------------------------------------------------
    def close(self) -> None:
        try:
            self._runner.run(self.redis.aclose())
        finally:
            self._runner.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


async def _read_users(
    views: Views, *, tenant: str, job_id: str, cursor: str | None
) -> UsersPage | None:
    return await views.read_users(tenant, job_id, cursor)
