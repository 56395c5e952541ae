"""POST, GET and DELETE /webhooks over a real API process: per tenant, records on
bulk.webhooks, the URL policy at creation."""

from __future__ import annotations

import base64

from streams.testing.topics import read_topic
from streams.webhooks.subscriptions import parse_key
from tests.streams.webhooks.conftest import Stack


def test_create_list_delete_per_tenant(stack: Stack) -> None:
    api = stack.api()
    with api.client("acme") as acme, api.client("globex") as globex:
        created = acme.post(
            "/webhooks", json={"url": "http://127.0.0.1:9/in", "events": ["job.*", "job.*"]}
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert set(hook) == {"id", "url", "events", "secret", "disabled"}
        assert hook["events"] == ["job.*"]
        assert hook["disabled"] is False
        assert 24 <= len(base64.b64decode(hook["secret"].removeprefix("whsec_"))) <= 32
        other = globex.post("/webhooks", json={"url": "http://127.0.0.1:9/g", "events": ["*"]})
        assert other.status_code == 201

        # Each tenant sees its own, secrets included; another's id is not there for it.
        assert acme.get("/webhooks").json() == {"items": [hook]}
        assert [h["url"] for h in globex.get("/webhooks").json()["items"]] == [
            "http://127.0.0.1:9/g"
        ]
        refused = globex.delete(f"/webhooks/{hook['id']}")
        assert refused.status_code == 404
        assert refused.json()["type"] == "invalid_request_error"
        assert globex.delete("/webhooks/wh_000000000000000000000000").json() == {
            "message": "Webhook wh_000000000000000000000000 not found",
            "type": "invalid_request_error",
        }  # as another tenant's: nothing tells the two apart
        assert acme.get("/webhooks").json() == {"items": [hook]}

        assert acme.delete(f"/webhooks/{hook['id']}").status_code == 204
        assert acme.delete(f"/webhooks/{hook['id']}").status_code == 404
        assert acme.get("/webhooks").json() == {"items": []}
        assert len(globex.get("/webhooks").json()["items"]) == 1

    # Kafka holds the truth: the record, then its tombstone, keyed by tenant and id.
    records = read_topic(stack.settings, stack.settings.topic_webhooks)
    keyed = [(value, parse_key(key)) for key, value, _ in records if key is not None]
    assert len(keyed) == len(records) == 3
    acme_records = [(value, where) for value, where in keyed if where[0] == "acme"]
    assert [value is None for value, _ in acme_records] == [False, True]
    assert acme_records[0][0]["tenant"] == "acme"
    assert acme_records[0][0]["secret"] == hook["secret"]
    assert {where for _, where in acme_records} == {("acme", hook["id"])}


def test_the_same_idempotency_key_makes_one_webhook(stack: Stack) -> None:
    api = stack.api()
    with api.client("acme", **{"Idempotency-Key": "hook-1"}) as acme:
        body = {"url": "http://127.0.0.1:9/in", "events": ["message.delivered"]}
        first = acme.post("/webhooks", json=body)
        again = acme.post("/webhooks", json=body)
        assert first.status_code == again.status_code == 201
        assert again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert len(acme.get("/webhooks").json()["items"]) == 1


BAD = [
    ({"url": "ftp://example.com/", "events": ["*"]}, "url: must be an http"),
    ({"url": "http://user@example.com/", "events": ["*"]}, "url: must be an http"),
    ({"url": "http://example.com/#x", "events": ["*"]}, "url: must be an http"),
    ({"url": "http://example.com/", "events": []}, "events: List should have at least 1"),
    ({"url": "http://example.com/", "events": ["job.done"]}, "unknown event types: job.done"),
    ({"url": "http://example.com/"}, "events: Field required"),
    ({"url": "http://example.com/", "events": ["*"], "x": 1}, "x: Extra inputs"),
    ([1], "Request body must be a JSON object"),
]
PRIVATE = [
    "http://127.0.0.1:8080/in",
    "http://localhost/in",
    "http://10.1.2.3/in",
    "http://169.254.169.254/latest/meta-data",
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://0.0.0.0:80/",
]


def test_bad_input_is_a_400(stack: Stack) -> None:
    api = stack.api()
    with api.client("acme") as acme:
        for body, message in BAD:
            answer = acme.post("/webhooks", json=body)
            assert answer.status_code == 400, (body, answer.text)
            assert answer.json()["type"] == "invalid_request_error"
            assert message in answer.json()["message"], (body, answer.text)
        assert acme.get("/webhooks").json() == {"items": []}
    with api.client(None) as anonymous:
        assert anonymous.get("/webhooks").status_code == 401


def test_private_urls_are_refused_without_the_setting(stack: Stack) -> None:
    api = stack.api(webhooks_allow_private=False)
    with api.client("acme") as acme:
        for url in PRIVATE:
            answer = acme.post("/webhooks", json={"url": url, "events": ["*"]})
            assert answer.status_code == 400, (url, answer.text)
            assert answer.json()["type"] == "invalid_request_error"
            assert "private address" in answer.json()["message"], (url, answer.text)
        # A public address (no DNS needed) is taken.
        public = acme.post("/webhooks", json={"url": "http://93.184.216.34/in", "events": ["*"]})
        assert public.status_code == 201, public.text


def test_a_tenant_has_at_most_its_limit_of_webhooks(stack: Stack) -> None:
    api = stack.api(webhooks_per_tenant=2)
    with api.client("acme") as acme, api.client("globex") as globex:
        body = {"url": "http://127.0.0.1:9/in", "events": ["*"]}
        assert [acme.post("/webhooks", json=body).status_code for _ in range(3)] == [201, 201, 400]
        assert globex.post("/webhooks", json=body).status_code == 201
