"""The alert routes of the OpenAPI document (tally.web.manage_alerts): their operations
and schemas, added to tally.web.openapi's by `document()`."""

from __future__ import annotations

from tally.web.openapi import (
    _PORT,
    JSON,
    MANAGE,
    MANAGE_ERRORS,
    TIME,
    Operation,
    managed,
    query,
    ref,
)

_NULLABLE_TIME = {"anyOf": [TIME, {"type": "null"}]}
_KINDS = {"enum": ["above", "below", "rate", "quiet"]}

SCHEMAS: JSON = {
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "description", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "url": {"type": "string"},
            "description": {"type": "string"},
            "created_at": TIME,
            "secret": {
                "type": "string",
                "description": 'Only when made or changed: "whsec_" and base64, the key of '
                "the Standard Webhooks signature.",
            },
        },
    },
    "AlertRule": {
        "type": "object",
        "required": ["id", "counter", "kind", "threshold", "webhook_id", "email", "created_at"],
        "properties": {
            "id": {"type": "integer"},
            "counter": {"type": ["string", "null"], "description": "null: any counter"},
            "counter_id": {"type": ["integer", "null"]},
            "kind": _KINDS,
            "threshold": {"type": "integer"},
            "webhook_id": {"type": ["integer", "null"]},
            "email": {"type": ["string", "null"]},
            "created_at": TIME,
        },
    },
    "Delivery": {
        "type": "object",
        "required": ["id", "event_id", "kind", "state", "attempts", "fired_at"],
        "properties": {
            "id": {"type": "integer"},
            "event_id": {"type": "string", "description": "the webhook-id header"},
            "counter": {"type": "string"},
            "rule_id": {"type": ["integer", "null"]},
            "kind": _KINDS,
            "value": {"type": "integer"},
            "fired_at": TIME,
            "webhook_id": {"type": ["integer", "null"]},
            "email": {"type": ["string", "null"]},
            "state": {"enum": ["pending", "delivered", "failed"]},
            "attempts": {"type": "integer"},
            "next_at": _NULLABLE_TIME,
            "delivered_at": _NULLABLE_TIME,
            "last_status": {"type": "string"},
            "body": {"type": "object", "description": "the JSON body posted"},
            "attempts_log": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "attempt": {"type": "integer"},
                        "node": {"type": "string"},
                        "at": TIME,
                        "latency_ms": {"type": "number"},
                        "status": {"type": ["integer", "null"]},
                        "error": {"type": "string"},
                        "response": {"type": "string"},
                    },
                },
            },
        },
    },
}

_HOOK = ref("schemas", "Webhook")
_RULE = ref("schemas", "AlertRule")
_DELIVERY = ref("schemas", "Delivery")
_TAGS = ("management",)
_URL = {
    "type": "string",
    "maxLength": 2000,
    "pattern": rf"^[Hh][Tt][Tt][Pp][Ss]?://[A-Za-z0-9._~%!$&'()*+,;=-]+(:{_PORT})?([/?#][!-~]*)?$",
    "description": "http or https, without credentials; not a private address unless the "
    "server allows it (TALLY_WEBHOOK_PRIVATE)",
}
_SECRET = {
    "type": "string",
    "pattern": "^whsec_",
    "description": '"whsec_" and the base64 of 24 to 64 bytes',
}
_DESCRIPTION = {"type": "string", "maxLength": 200}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        f"{MANAGE}/webhooks",
        "listWebhooks",
        "List a workspace's webhooks",
        "Never their secrets. Admin token of the workspace.",
        managed(
            {"type": "object", "properties": {"webhooks": {"type": "array", "items": _HOOK}}},
            "The webhooks.",
        ),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="-",
    ),
    Operation(
        f"{MANAGE}/webhooks",
        "createWebhook",
        "Create a webhook",
        "A receiver of alerts; its secret (given, or made) is in this answer only. A URL "
        "that is not http(s), or on a private address without TALLY_WEBHOOK_PRIVATE, is a "
        "400; more than 20 webhooks a 409. Admin token of the workspace.",
        managed(_HOOK, "The webhook, with its secret.", "201"),
        (*MANAGE_ERRORS, "409"),
        tags=_TAGS,
        manage="-",
        method="post",
        ok_status="201",
        body={
            "type": "object",
            "required": ["url"],
            "additionalProperties": False,
            "properties": {"url": _URL, "description": _DESCRIPTION, "secret": _SECRET},
        },
    ),
    Operation(
        f"{MANAGE}/webhooks/{{webhook_id}}",
        "getWebhook",
        "Read a webhook",
        "Admin token of the workspace.",
        managed(_HOOK, "The webhook."),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="webhook_id",
    ),
    Operation(
        f"{MANAGE}/webhooks/{{webhook_id}}",
        "updateWebhook",
        "Change a webhook",
        "Its URL, description, or secret (given, or a new one with rotate_secret); a new "
        "secret is in this answer only. Admin token of the workspace.",
        managed(_HOOK, "The changed webhook."),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="webhook_id",
        method="patch",
        body={
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "url": _URL,
                "description": _DESCRIPTION,
                "secret": _SECRET,
                "rotate_secret": {"type": "boolean", "description": "not with secret"},
            },
        },
    ),
    Operation(
        f"{MANAGE}/webhooks/{{webhook_id}}",
        "deleteWebhook",
        "Delete a webhook",
        "With its rules and their deliveries. Admin token of the workspace.",
        managed(_HOOK, "The deleted webhook."),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="webhook_id",
        method="delete",
    ),
    Operation(
        f"{MANAGE}/alerts",
        "listAlerts",
        "List a workspace's alert rules",
        "Admin token of the workspace.",
        managed(
            {"type": "object", "properties": {"alerts": {"type": "array", "items": _RULE}}},
            "The rules.",
        ),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="-",
    ),
    Operation(
        f"{MANAGE}/alerts",
        "createAlert",
        "Create an alert rule",
        "above / below: the value reaches threshold from below / above; rate: more than "
        "threshold events in one UTC hour; quiet: no change for threshold seconds (60 to "
        "366 days). For one counter (by name) or any (counter absent or null); delivered "
        "to a webhook of the workspace or by email (needs SMTP). More than 100 rules is a "
        "409. Admin token of the workspace.",
        managed(_RULE, "The rule.", "201"),
        (*MANAGE_ERRORS, "409"),
        tags=_TAGS,
        manage="-",
        method="post",
        ok_status="201",
        body={
            "type": "object",
            "required": ["kind", "threshold"],
            "additionalProperties": False,
            "oneOf": [{"required": ["webhook_id"]}, {"required": ["email"]}],
            "properties": {
                "counter": {"type": ["string", "null"], "minLength": 1},
                "kind": _KINDS,
                "threshold": {
                    "type": "integer",
                    "minimum": -(2**62),
                    "maximum": 2**62,
                    "description": "rate: from 0; quiet: 60 to 31622400",
                },
                "webhook_id": {"type": "integer", "minimum": 1},
                "email": {"type": "string", "format": "email", "description": "needs SMTP"},
            },
        },
    ),
    Operation(
        f"{MANAGE}/alerts/{{alert_id}}",
        "getAlert",
        "Read an alert rule",
        "Admin token of the workspace.",
        managed(_RULE, "The rule."),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="alert_id",
    ),
    Operation(
        f"{MANAGE}/alerts/{{alert_id}}",
        "deleteAlert",
        "Delete an alert rule",
        "Its pending deliveries are still made. Admin token of the workspace.",
        managed(_RULE, "The deleted rule."),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="alert_id",
        method="delete",
    ),
    Operation(
        f"{MANAGE}/deliveries",
        "listDeliveries",
        "The delivery log",
        "The workspace's firings, newest first, 50 a page (next: the before= of the next "
        "page), with their state. Admin token of the workspace.",
        managed(
            {
                "type": "object",
                "properties": {
                    "deliveries": {"type": "array", "items": _DELIVERY},
                    "next": {"type": ["integer", "null"]},
                },
            },
            "The firings.",
        ),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="-",
        query=(query("before", "Firings with a smaller id (a page's next).", 2**62),),
    ),
    Operation(
        f"{MANAGE}/deliveries/{{delivery_id}}",
        "getDelivery",
        "One delivery",
        "The firing, the body posted and every try (status, latency, the start of the "
        "answer). Admin token of the workspace.",
        managed(_DELIVERY, "The firing."),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="delivery_id",
    ),
    Operation(
        f"{MANAGE}/deliveries/{{delivery_id}}",
        "resendDelivery",
        "Deliver again",
        "Queue the firing again, now, with the same webhook-id. Admin token of the workspace.",
        managed(_DELIVERY, "The firing, queued.", "202"),
        MANAGE_ERRORS,
        tags=_TAGS,
        manage="delivery_id",
        method="post",
        ok_status="202",
    ),
)
