"""Idempotency-Key on every POST, per tenant, kept in Redis.

The first request with a key claims it; its final answer (status and body)
is then kept for `idempotency_ttl_seconds` (at least 24 h) and replayed with
`Idempotent-Replayed: true`. The same key with another request (method, path
or body) is a 422; while the first is still in flight, a 409 with
`Retry-After`.

A claim gives the request a command id of its own (unique per claim, so a
key used again once its record expired makes a new command, not an echo of
the old one). The claim, with its command id, outlives an answer that is not
worth keeping (a 5xx, a dropped connection) and a request whose API process
died (its pending time runs out): the retry takes it over and sends the
same command id, so the command has one effect however often it is retried.

Record: a hash `{state, fp, cid, until, status, body, media}`, `state` one
of `pending` (held until `until`, ms), `retry` or `done`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis
from starlette.responses import Response

from streams.api.errors import ApiError
from streams.views import keys

PENDING_MS = 60_000
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255

# KEYS[1] the record; ARGV: fingerprint, a new command id, pending ms, ttl s.
# Answers {"claimed", cid} | {"busy"} | {"mismatch"} | {"done", status, body, media}.
_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state')
if not state then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[1], 'cid', ARGV[2],
             'until', now + tonumber(ARGV[3]))
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {'claimed', ARGV[2]}
end
if redis.call('HGET', KEYS[1], 'fp') ~= ARGV[1] then return {'mismatch'} end
if state == 'done' then
  local r = redis.call('HMGET', KEYS[1], 'status', 'body', 'media')
  return {'done', r[1], r[2], r[3] or ''}
end
if state == 'pending' and tonumber(redis.call('HGET', KEYS[1], 'until')) > now then
  return {'busy'}
end
redis.call('HSET', KEYS[1], 'state', 'pending', 'until', now + tonumber(ARGV[3]))
return {'claimed', redis.call('HGET', KEYS[1], 'cid')}
"""


@dataclass(frozen=True)
class Claim:
    """What a request holding an idempotency key may use: its command id, and the job
    id a create with this key makes (derived from tenant and key, so that no retry,
    even one whose claim Redis lost, can make a second job)."""

    command_id: str
    job_id: str


def fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def job_id_for(tenant: str, key: str) -> str:
    """The job a create with this Idempotency-Key makes, shaped like Courier's ids."""
    digest = hashlib.blake2b(f"{tenant}\x00{key}".encode(), digest_size=16).hexdigest()
    return f"1-{digest[:8]}-{digest[8:]}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


class Idempotency:
    def __init__(self, redis: aioredis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl_seconds
        self._claim = redis.register_script(_CLAIM)

    async def run(
        self,
        tenant: str,
        key: str | None,
        request_fingerprint: str,
        handler: Callable[[Claim | None], Awaitable[Response]],
    ) -> Response:
        if key is None:
            return await handler(None)
        if not 1 <= len(key) <= MAX_KEY_LENGTH:
            raise ApiError(400, f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} characters")
        key_digest = hashlib.sha256(f"{tenant}\x00{key}".encode()).hexdigest()
        name = keys.idempotency(self.prefix, tenant, key_digest)
        new_command = f"idem-{key_digest[:16]}-{uuid.uuid4().hex[:16]}"
        answer = await self._claim(
            keys=[name], args=[request_fingerprint, new_command, PENDING_MS, self.ttl]
        )
        verdict = _text(answer[0])
        if verdict == "mismatch":
            raise ApiError(422, "This Idempotency-Key was used with a different request")
        if verdict == "busy":
            raise ApiError(
                409,
                "A request with this Idempotency-Key is still in progress",
                {"Retry-After": "1"},
            )
        if verdict == "done":
            media = _text(answer[3])
            return Response(
                answer[2],
                status_code=int(answer[1]),
                media_type=media or None,
                headers={REPLAYED_HEADER: "true"},
            )
        claim = Claim(command_id=_text(answer[1]), job_id=job_id_for(tenant, key))
        try:
            response = await handler(claim)
        except ApiError as exc:
            response = exc.response()
        except BaseException:
            await self.redis.hset(name, "state", "retry")
            raise
        if response.status_code >= 500:
            # Not an answer worth keeping: a retry takes the claim over, same command id.
            await self.redis.hset(name, "state", "retry")
            return response
        await self.redis.hset(
            name,
            mapping={
                "state": "done",
                "status": response.status_code,
                "body": bytes(response.body),
                "media": response.media_type or "",
            },
        )
        await self.redis.expire(name, self.ttl)
        return response
