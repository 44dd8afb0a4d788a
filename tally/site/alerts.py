"""The alerts page of a workspace (owners only, as the management API's Admin tokens):
its webhooks (the secret shown once), its rules, and the delivery log with each firing's
tries and a resend button. Every form goes through the same checks as the management API
(tally.alerts, tally.webhooks) and the same store methods."""

from __future__ import annotations

import hmac
import time

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from tally import alerts, rules, webhooks, workspaces
from tally.errors import BadRequest, NotFound, TallyError
from tally.models import Webhook
from tally.numbers import row_id
from tally.site.pages import (
    field,
    form,
    path_id,
    redirect,
    redirect_revealing,
    render,
    revealed,
    signed_in,
    site,
)

KIND_LABELS = {
    "above": "reaches (from below)",
    "below": "falls to (from above)",
    "rate": "changes more than N times in an hour",
    "quiet": "does not change for (seconds)",
}


async def page(request: Request) -> Response:
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "alerts")
    error, status = None, 200
    if request.method == "POST":
        data = await form(request)
        try:
            if field(data, "form") == "webhook":
                hook = await _new_webhook(
                    request, ws.id, field(data, "url"), field(data, "description")
                )
                # Post/Redirect/Get: the page after the redirect shows the secret once
                return redirect_revealing(request, f"/w/{ws.slug}/alerts", hook.secret)
            await _new_rule(request, ws.id, ws.slug, data)
            return redirect(request, f"/w/{ws.slug}/alerts", "The alert rule is saved.")
        except TallyError as exc:
            error, status = rules.sentence(exc.message), exc.status
    hooks = await s.store.list_webhooks(ws.id)
    shown = revealed(request)
    # the webhook just added, if the cookie names its secret (a forged one shows nothing)
    made = next((h for h in hooks if shown and hmac.compare_digest(h.secret, shown)), None)
    return render(
        request,
        "alerts.html",
        status,
        error=error,
        workspace=ws,
        role=role,
        section="alerts",
        webhooks=hooks,
        hook_urls={h.id: h.url for h in hooks},
        rules=await s.store.list_alert_rules(ws.id),
        firings=await s.store.list_firings(ws.id, limit=50),
        made=made,
        kinds=KIND_LABELS,
        mail=s.mailer.configured,
        private_ok=s.settings.webhook_private,
    )


async def _new_webhook(request: Request, ws_id: int, url: str, description: str) -> Webhook:
    s = site(request)
    checked = webhooks.check_url(url.strip(), allow_private=s.settings.webhook_private)
    if len(description) > 200:
        raise BadRequest("the description is longer than 200 characters")
    return await s.store.create_webhook(
        ws_id, checked, webhooks.new_secret(), description.strip(), time.time(),
        limit=alerts.MAX_WEBHOOKS,
    )  # fmt: skip


async def _new_rule(request: Request, ws_id: int, slug: str, data: FormData) -> None:
    s = site(request)
    kind = alerts.check_kind(field(data, "kind"))
    text = field(data, "threshold").strip()
    if not text.lstrip("-").isascii() or not text.lstrip("-").isdigit() or len(text) > 20:
        raise BadRequest("the threshold must be a whole number")
    threshold = alerts.check_threshold(kind, int(text))
    name = field(data, "counter").strip()
    counter_id = None
    if name:
        counter = await s.store.read_counter(slug, name)
        if counter is None:
            raise NotFound(f"there is no counter {name!r} in this workspace")
        counter_id = counter.id
    target = field(data, "target")
    webhook_id, email = None, None
    if target == "email":
        if not s.mailer.configured:
            raise BadRequest("email alerts need SMTP on the server (TALLY_SMTP_HOST)")
        email = alerts.check_email(field(data, "email"))
    else:
        hook_id = row_id(target)
        hook = None if hook_id is None else await s.store.get_webhook(ws_id, hook_id)
        if hook is None:
            raise BadRequest("choose a webhook of this workspace (add one first), or email")
        webhook_id = hook.id
    await s.store.create_alert_rule(
        ws_id, counter_id, kind, threshold, webhook_id=webhook_id, email=email,
        now=time.time(), limit=alerts.MAX_RULES,
    )  # fmt: skip
    s.poke_alerts()  # this node's deliverer: watch commits from now on


async def delete_webhook(request: Request) -> Response:
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "alerts")
    await form(request)
    hook_id = path_id(request, "webhook_id", "webhook in this workspace")
    if not await s.store.delete_webhook(ws.id, hook_id):
        raise NotFound("No such webhook in this workspace.")
    return redirect(request, f"/w/{ws.slug}/alerts", "The webhook and its rules are deleted.")


async def delete_rule(request: Request) -> Response:
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "alerts")
    await form(request)
    rule_id = path_id(request, "rule_id", "alert rule in this workspace")
    if not await s.store.delete_alert_rule(ws.id, rule_id):
        raise NotFound("No such alert rule in this workspace.")
    return redirect(request, f"/w/{ws.slug}/alerts", "The alert rule is deleted.")


async def delivery(request: Request) -> Response:
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "alerts")
    firing_id = path_id(request, "delivery_id", "delivery in this workspace")
    firing = await s.store.get_firing(ws.id, firing_id)
    if firing is None:
        raise NotFound("No such delivery in this workspace.")
    return render(
        request,
        "alert_delivery.html",
        workspace=ws,
        role=role,
        section="alerts",
        firing=firing,
        body=alerts.payload(firing),
        attempts=await s.store.list_attempts(firing.id),
    )


async def resend(request: Request) -> Response:
    session = await signed_in(request)
    s = site(request)
    ws, role = await workspaces.membership(s.store, session.account, request.path_params["slug"])
    workspaces.require_role(role, "alerts")
    await form(request)
    firing_id = path_id(request, "delivery_id", "delivery in this workspace")
    if not await s.store.resend_firing(ws.id, firing_id, time.time()):
        raise NotFound("No such delivery in this workspace.")
    s.poke_alerts()
    return redirect(
        request, f"/w/{ws.slug}/alerts/deliveries/{firing_id}", "Queued again: it is sent now."
    )
