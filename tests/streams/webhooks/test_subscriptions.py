"""Endpoint records (pure): keys that name one tenant's endpoint only, and the registry's
order by offset."""

from __future__ import annotations

import pytest

from streams.webhooks.subscriptions import (
    Registry,
    Subscription,
    encode,
    new_webhook_id,
    parse_key,
    record_key,
)


def _hook(tenant: str = "acme", webhook_id: str = "wh_1", disabled: bool = False) -> Subscription:
    return Subscription(
        id=webhook_id,
        tenant=tenant,
        url="http://example.com/in",
        events=["*"],
        secret="whsec_AAAA",
        disabled=disabled,
        created_at=0,
    )


@pytest.mark.parametrize(("tenant", "webhook_id"), [("acme", "wh_1"), ("a:b", "c"), ("a", "b:c")])
def test_a_key_names_its_tenant_and_id_and_nothing_else(tenant: str, webhook_id: str) -> None:
    assert parse_key(record_key(tenant, webhook_id)) == (tenant, webhook_id)
    # the length says where the tenant ends: "a:b" + "c" is not "a" + "b:c"
    assert record_key("a:b", "c") != record_key("a", "b:c")


@pytest.mark.parametrize("key", [b"", b"acme:wh_1", b"9:acme:wh_1", b"4:acme", b"x:y", b"\xff"])
def test_a_key_of_no_endpoint_is_refused(key: bytes) -> None:
    with pytest.raises(ValueError, match="not a webhook key"):
        parse_key(key)


def test_an_idempotency_claim_gives_the_same_id_and_none_a_fresh_one() -> None:
    assert new_webhook_id("acme", "claim-1") == new_webhook_id("acme", "claim-1")
    assert new_webhook_id("acme", "claim-1") != new_webhook_id("globex", "claim-1")
    assert new_webhook_id("acme") != new_webhook_id("acme")


def test_the_registry_keeps_the_newest_record_of_each_endpoint() -> None:
    registry = Registry()
    assert not registry  # no endpoint anywhere: the dispatcher reads no event
    key = record_key("acme", "wh_1")
    assert registry.apply(key, encode(_hook()), 5) == ("acme", "wh_1")
    assert registry
    # Its own write applied first (a 410's disabling at offset 9), then read back late.
    assert registry.apply(key, encode(_hook(disabled=True)), 9) == ("acme", "wh_1")
    assert registry.apply(key, encode(_hook()), 7) is None
    assert registry.apply(key, None, 8) is None  # an older tombstone
    entry = registry.get("acme", "wh_1")
    assert entry is not None
    assert entry.subscription.disabled
    assert entry.offset == 9
    assert registry.of("globex") == []
    assert registry.apply(key, None, 10) == ("acme", "wh_1")
    assert registry.of("acme") == []
    assert len(registry) == 0
    assert not registry


def test_a_record_under_another_tenants_key_is_refused() -> None:
    with pytest.raises(ValueError, match="another key"):
        Registry().apply(record_key("globex", "wh_1"), encode(_hook("acme")), 1)


def test_the_registry_says_whether_an_enabled_endpoint_takes_message_events() -> None:
    registry = Registry()
    assert not registry.takes_messages()

    def put(webhook_id: str, events: list[str], offset: int, disabled: bool = False) -> None:
        hook = _hook(webhook_id=webhook_id, disabled=disabled).model_copy(update={"events": events})
        registry.apply(record_key("acme", webhook_id), encode(hook), offset)

    put("wh_jobs", ["job.*", "job.completed"], 1)
    assert not registry.takes_messages()
    put("wh_off", ["message.failed"], 2, disabled=True)
    assert not registry.takes_messages()
    for offset, events in enumerate((["message.failed"], ["message.*"], ["*"]), start=3):
        put("wh_on", events, offset)
        assert registry.takes_messages()
    registry.apply(record_key("acme", "wh_on"), None, 10)  # deleted
    assert not registry.takes_messages()
