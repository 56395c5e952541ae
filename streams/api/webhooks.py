"""The API's webhook endpoints, per tenant (the tenant of the API key):

    POST   /webhooks       {"url", "events"}  -> 201 {"id", "url", "events", "secret", "disabled"}
    GET    /webhooks                          -> {"items": [...]} (secrets included)
    DELETE /webhooks/{id}                     -> 204 (another tenant's id: 404)

A create or delete is a record on `bulk.webhooks` (the truth; the
dispatcher follows it), acknowledged by the broker before the answer; then
the Redis view, which the listing reads, is written with the record's
offset (streams.webhooks.subscriptions). The URL policy (streams.webhooks.
targets) is checked here and again before every request. Listing answers
the secrets too: a tenant's own, which it needs to verify what it is sent.
"""

from __future__ import annotations

import re
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError
from starlette.responses import Response

from schemas.webhooks import WebhookCreate
from streams.api.errors import ApiError, JsonResponse, from_validation, invalid, unavailable
from streams.api.idempotency import Claim
from streams.errors import DeliveryFailed
from streams.kafka.producer import AsyncProducer
from streams.settings import Settings
from streams.webhooks import signing, targets
from streams.webhooks.subscriptions import (
    Subscription,
    SubscriptionLog,
    SubscriptionView,
    new_webhook_id,
    now_ms,
)

WEBHOOK_ID = re.compile(r"wh_[0-9a-f]{24}")


def not_found(webhook_id: str) -> ApiError:
    return ApiError(404, f"Webhook {webhook_id[:100]} not found")


class WebhookRoutes:
    def __init__(self, settings: Settings, redis: aioredis.Redis, producer: AsyncProducer) -> None:
        self.settings = settings
        self.log = SubscriptionLog(settings, producer)
        self.view = SubscriptionView(redis, settings.redis_prefix)

    async def create(self, tenant: str, body: Any, claim: Claim | None) -> Response:
        try:
            parsed = WebhookCreate.model_validate(body)
        except ValidationError as exc:
            raise from_validation(exc) from exc
        try:
            await targets.check(parsed.url, self.settings.webhooks_allow_private)
        except targets.Refused as exc:
            raise invalid(str(exc)) from None
        limit = self.settings.webhooks_per_tenant
        if await self.view.count(tenant) >= limit:
            raise invalid(f"A tenant may have {limit} webhooks; delete one first")
        subscription = Subscription(
            id=new_webhook_id(tenant, claim.command_id if claim else None),
            tenant=tenant,
            url=parsed.url,
            events=parsed.events,
            secret=signing.new_secret(),
            created_at=now_ms(),
        )
        try:
            offset = await self.log.put(subscription)
        except DeliveryFailed:
            raise unavailable("Kafka") from None
        await self.view.put(subscription, offset)
        return JsonResponse(subscription.public().to_wire(), status_code=201)

    async def list(self, tenant: str) -> Response:
        items = [s.public().to_wire() for s in await self.view.list(tenant)]
        return JsonResponse({"items": items})

    async def delete(self, tenant: str, webhook_id: str) -> Response:
        if not WEBHOOK_ID.fullmatch(webhook_id):
            raise not_found(webhook_id)
        # The view is per tenant: another tenant's id is not found, as a made-up one.
        if await self.view.get(tenant, webhook_id) is None:
            raise not_found(webhook_id)
        try:
            offset = await self.log.delete(tenant, webhook_id)
        except DeliveryFailed:
            raise unavailable("Kafka") from None
        await self.view.delete(tenant, webhook_id, offset)
        return Response(status_code=204)
