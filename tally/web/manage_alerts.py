"""The management API's alert routes, for Admin tokens (tally.web.manage routes them):

    GET    /v2/{workspace}/-/webhooks              list (secrets not shown)
    POST   /v2/{workspace}/-/webhooks              create {url, description, secret?}: the
                                                   secret is shown once
    GET    /v2/{workspace}/-/webhooks/{id}         one webhook
    PATCH  /v2/{workspace}/-/webhooks/{id}         change {url, description, secret,
                                                   rotate_secret}
    DELETE /v2/{workspace}/-/webhooks/{id}         delete it, its rules and their firings
    GET    /v2/{workspace}/-/alerts                the rules
    POST   /v2/{workspace}/-/alerts                create {counter (a name; absent or null:
                                                   any counter), kind, threshold,
                                                   webhook_id | email}
    GET    /v2/{workspace}/-/alerts/{id}           one rule
    DELETE /v2/{workspace}/-/alerts/{id}           delete it
    GET    /v2/{workspace}/-/deliveries[?before=]  the firings, newest first, with their state
    GET    /v2/{workspace}/-/deliveries/{id}       one firing, its body and every try
    POST   /v2/{workspace}/-/deliveries/{id}       deliver it again (the same webhook-id)

A webhook's URL is http(s) and, unless TALLY_WEBHOOK_PRIVATE, not on a private address
(tally.webhooks.check_url); rules are checked by tally.alerts. Email rules need SMTP
(TALLY_SMTP_HOST). Another workspace's ids are a 404.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson

from tally import alerts, webhooks
from tally.errors import BadRequest, NotFound
from tally.models import AlertRule, DeliveryAttempt, Firing, Token, Webhook
from tally.numbers import row_id
from tally.storage.base import Store
from tally.web.api import query_number, rfc3339

MAX_DESCRIPTION = 200
PAGE = 50
STATES = ("pending", "delivered", "failed")


def webhook_data(w: Webhook, *, secret: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": w.id,
        "url": w.url,
        "description": w.description,
        "created_at": rfc3339(w.created_at),
    }
    if secret:
        data["secret"] = w.secret
    return data


def rule_data(r: AlertRule) -> dict[str, Any]:
    return {
        "id": r.id,
        "counter": r.counter_name,
        "counter_id": r.counter_id,
        "kind": r.kind,
        "threshold": r.threshold,
        "webhook_id": r.webhook_id,
        "email": r.email,
        "created_at": rfc3339(r.created_at),
    }


def firing_data(f: Firing) -> dict[str, Any]:
    return {
        "id": f.id,
        "event_id": f.event_id,
        "counter": f.counter_name,
        "rule_id": f.rule_id,
        "kind": f.kind,
        "value": f.value,
        "fired_at": rfc3339(f.fired_at),
        "webhook_id": f.webhook_id,
        "email": f.email,
        "state": STATES[f.state] if 0 <= f.state < len(STATES) else str(f.state),
        "attempts": f.attempts,
        "next_at": rfc3339(f.next_at) if f.state == 0 else None,
        "delivered_at": rfc3339(f.delivered_at) if f.delivered_at else None,
        "last_status": f.last_status,
    }


def attempt_data(a: DeliveryAttempt) -> dict[str, Any]:
    return {
        "attempt": a.attempt,
        "node": a.node,
        "at": rfc3339(a.started_at),
        "latency_ms": round(a.latency * 1000, 1),
        "status": a.status,
        "error": a.error,
        "response": a.response,
    }


def _description(data: dict[str, Any], default: str) -> str:
    value = data.get("description", default)
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        raise BadRequest(f"description must be a string of at most {MAX_DESCRIPTION} characters")
    return value.strip()


def _item(item: bytes, what: str) -> int:
    found = row_id(item)
    if found is None:
        raise NotFound(f"no such {what} in this workspace")
    return found


class ManageAlerts:
    def __init__(
        self,
        store: Store,
        allow_private: bool,
        mail: bool,
        poke: Callable[[], None] = lambda: None,
    ) -> None:
        self.store = store
        self.poke = poke  # the alert deliverer: look now (a new rule, a resend)
        self.allow_private = allow_private
        self.mail = mail  # SMTP is configured: email rules may be made

    async def webhooks_route(
        self, method: str, token: Token, item: bytes | None, body: bytes
    ) -> tuple[int, str, Any]:
        from tally.web.manage import parse_object  # one parser for the whole API

        store, ws = self.store, token.workspace_id
        if item is None and method == "GET":
            hooks = await store.list_webhooks(ws)
            return (
                200,
                "Webhooks listed successfully",
                {"webhooks": [webhook_data(w) for w in hooks]},
            )
        if item is None:  # POST
            data = parse_object(body, frozenset(("url", "description", "secret")))
            url = webhooks.check_url(data.get("url"), allow_private=self.allow_private)
            secret = (
                webhooks.check_secret(data["secret"]) if "secret" in data else webhooks.new_secret()
            )
            description = _description(data, "")
            made = await store.create_webhook(
                ws, url, secret, description, time.time(), limit=alerts.MAX_WEBHOOKS
            )
            return (
                201,
                "Webhook created; its secret is shown only once",
                webhook_data(made, secret=True),
            )
        hook = await store.get_webhook(ws, _item(item, "webhook"))
        if hook is None:
            raise NotFound("no such webhook in this workspace")
        if method == "GET":
            return 200, "Webhook retrieved successfully", webhook_data(hook)
        if method == "DELETE":
            await store.delete_webhook(ws, hook.id)
            return 200, "Webhook deleted successfully", webhook_data(hook)
        data = parse_object(body, frozenset(("url", "description", "secret", "rotate_secret")))
        if not data:
            raise BadRequest("nothing to change: give url, description, secret or rotate_secret")
        url = hook.url
        if "url" in data:
            url = webhooks.check_url(data["url"], allow_private=self.allow_private)
        secret = hook.secret
        rotate = data.get("rotate_secret", False)
        if type(rotate) is not bool:
            raise BadRequest("rotate_secret must be true or false")
        if "secret" in data and rotate:
            raise BadRequest("give secret or rotate_secret, not both")
        if "secret" in data:
            secret = webhooks.check_secret(data["secret"])
        elif rotate:
            secret = webhooks.new_secret()
        changed = await store.change_webhook(
            ws, hook.id, url=url, secret=secret, description=_description(data, hook.description)
        )
        if changed is None:
            raise NotFound("no such webhook in this workspace")
        new = secret != hook.secret
        return 200, "Webhook updated successfully", webhook_data(changed, secret=new)

    async def alerts_route(
        self, method: str, token: Token, item: bytes | None, body: bytes
    ) -> tuple[int, str, Any]:
        from tally.web.manage import parse_object

        store, ws = self.store, token.workspace_id
        if item is None and method == "GET":
            rules = await store.list_alert_rules(ws)
            return 200, "Alert rules listed successfully", {"alerts": [rule_data(r) for r in rules]}
        if item is None:  # POST
            fields = frozenset(("counter", "kind", "threshold", "webhook_id", "email"))
            data = parse_object(body, fields)
            kind = alerts.check_kind(data.get("kind"))
            threshold = alerts.check_threshold(kind, data.get("threshold"))
            counter_id = await self._counter(token, data.get("counter"))
            webhook_id, email = await self._target(ws, data)
            rule = await store.create_alert_rule(
                ws,
                counter_id,
                kind,
                threshold,
                webhook_id=webhook_id,
                email=email,
                now=time.time(),
                limit=alerts.MAX_RULES,
            )
            self.poke()  # this node's deliverer: watch commits from now on
            return 201, "Alert rule created successfully", rule_data(rule)
        found = await store.get_alert_rule(ws, _item(item, "alert rule"))
        if found is None:
            raise NotFound("no such alert rule in this workspace")
        rule = found
        if method == "GET":
            return 200, "Alert rule retrieved successfully", rule_data(rule)
        await store.delete_alert_rule(ws, rule.id)
        return 200, "Alert rule deleted successfully", rule_data(rule)

    async def _counter(self, token: Token, name: object) -> int | None:
        if name is None:
            return None
        if not isinstance(name, str) or not name:
            raise BadRequest("counter must be a counter's name, or null for any counter")
        counter = await self.store.read_counter(token.workspace_slug, name)
        if counter is None:
            raise NotFound("no such counter in this workspace")
        return counter.id

    async def _target(self, ws: int, data: dict[str, Any]) -> tuple[int | None, str | None]:
        if ("webhook_id" in data) == ("email" in data):
            raise BadRequest("give webhook_id or email (one of them)")
        if "email" in data:
            if not self.mail:
                raise BadRequest("email alerts need SMTP on the server (TALLY_SMTP_HOST)")
            return None, alerts.check_email(data["email"])
        raw = data["webhook_id"]
        hook_id = raw if type(raw) is int and raw > 0 else None
        hook = None if hook_id is None else await self.store.get_webhook(ws, hook_id)
        if hook is None:
            raise NotFound("no such webhook in this workspace")
        return hook.id, None

    async def deliveries_route(
        self, method: str, token: Token, item: bytes | None, query: bytes
    ) -> tuple[int, str, Any]:
        store, ws = self.store, token.workspace_id
        if item is None:
            before = query_number(query, "before", 2**62, 0)
            firings = await store.list_firings(ws, limit=PAGE, before=before or None)
            data = {
                "deliveries": [firing_data(f) for f in firings],
                "next": firings[-1].id if len(firings) == PAGE else None,
            }
            return 200, "Deliveries listed successfully", data
        firing = await store.get_firing(ws, _item(item, "delivery"))
        if firing is None:
            raise NotFound("no such delivery in this workspace")
        if method == "POST":
            await store.resend_firing(ws, firing.id, time.time())
            self.poke()
            firing = await store.get_firing(ws, firing.id) or firing
            return 202, "Delivery queued again", firing_data(firing)
        data = {
            **firing_data(firing),
            "body": orjson.loads(orjson.dumps(alerts.payload(firing))),
            "attempts_log": [attempt_data(a) for a in await store.list_attempts(firing.id)],
        }
        return 200, "Delivery retrieved successfully", data
