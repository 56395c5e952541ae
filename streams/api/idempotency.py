"""Idempotency-Key on every POST, per tenant, kept in Redis.

The first request with a key claims it (`pending`, for a short while); its
final answer (status and body) is then kept for `idempotency_ttl_seconds`
(at least 24 h) and replayed with `Idempotent-Replayed: true`. The same key
with another request (method, path or body) is a 422; while the first is
still in flight, a 409 with `Retry-After`. The key also fixes the command id
sent to Kafka, so even a retry after a lost answer has one effect.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from starlette.responses import Response

from streams import keys
from streams.api.errors import ApiError

PENDING_SECONDS = 60
REPLAYED_HEADER = "Idempotent-Replayed"


@dataclass(frozen=True)
class Claim:
    """What a request holding an idempotency key may use: its command id."""

    command_id: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


class Idempotency:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl_seconds

    async def run(
        self,
        tenant: str,
        key: str | None,
        request_fingerprint: str,
        handler: Callable[[Claim | None], Awaitable[Response]],
    ) -> Response:
        if key is None:
            return await handler(None)
        if not 1 <= len(key) <= 255:
            raise ApiError(400, "invalid_request", "Idempotency-Key must be 1 to 255 characters")
        key_digest = hashlib.sha256(f"{tenant}\x00{key}".encode()).hexdigest()
        name = keys.idempotency(self.prefix, tenant, key_digest)
        pending = orjson.dumps({"state": "pending", "fingerprint": request_fingerprint})
        if not await self.redis.set(name, pending, nx=True, ex=PENDING_SECONDS):
            raw = await self.redis.get(name)
            if raw is not None:
                return self._answer_again(orjson.loads(raw), request_fingerprint)
            # It expired in between: claim it now.
            await self.redis.set(name, pending, ex=PENDING_SECONDS)
        try:
            response = await handler(Claim(command_id=f"idem-{key_digest[:40]}"))
        except ApiError as exc:
            response = exc.response()
        except BaseException:
            await self.redis.delete(name)
            raise
        if response.status_code >= 500:
            await self.redis.delete(name)  # not an answer worth keeping: let a retry run
            return response
        done = {
            "state": "done",
            "fingerprint": request_fingerprint,
            "status": response.status_code,
            "body": bytes(response.body).decode(),
            "mediaType": response.media_type,
        }
        await self.redis.set(name, orjson.dumps(done), ex=self.ttl)
        return response

    @staticmethod
    def _answer_again(record: dict[str, object], request_fingerprint: str) -> Response:
        if record["fingerprint"] != request_fingerprint:
            raise ApiError(
                422,
                "idempotency_error",
                "This Idempotency-Key was used with a different request",
            )
        if record["state"] == "pending":
            raise ApiError(
                409,
                "conflict",
                "A request with this Idempotency-Key is still in progress",
                {"Retry-After": "1"},
            )
        status = record["status"]
        body = record["body"]
        media_type = record.get("mediaType")
        assert isinstance(status, int)
        assert isinstance(body, str)
        return Response(
            body,
            status_code=status,
            media_type=media_type if isinstance(media_type, str) else None,
            headers={REPLAYED_HEADER: "true"},
        )
