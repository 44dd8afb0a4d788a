"""The OpenAPI 3.1 document of the public routes, served at GET /openapi.json.

Everything the document says is declared here: the shared schemas, headers and error
responses once in COMPONENTS, and each route as one `Operation` in OPERATIONS. A new
endpoint is one more `Operation` (and its schema, if it answers something new);
tests/test_openapi.py fails until the document and the routes the app serves agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson

from tally.numbers import INT64_MAX
from tally.web import badge

JSON = dict[str, Any]


def ref(kind: str, name: str) -> JSON:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_body(schema: JSON, description: str, headers: JSON | None = None) -> JSON:
    """A JSON response; every response carries X-Request-Id."""
    return {
        "description": description,
        "headers": {"X-Request-Id": ref("headers", "X-Request-Id"), **(headers or {})},
        "content": {"application/json": {"schema": schema}},
    }


RATE_LIMIT_HEADERS = {
    name: ref("headers", name)
    for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
}

COUNTS = {"type": "object", "required": ["up", "down"], "properties": {
    "up": {"type": "integer", "minimum": 0},
    "down": {"type": "integer", "minimum": 0},
}}  # fmt: skip


def counts_by(*keys: str) -> JSON:
    return {
        "type": "object",
        "required": list(keys),
        "properties": dict.fromkeys(keys, ref("schemas", "Counts")),
    }


TIME = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC, to the second"}
UNIQUE = {
    "type": ["integer", "null"],
    "description": "The unique-visitor window in seconds; null: off (docs/api.md)",
}
UNIQUE_BY = {
    "enum": ["address_agent", "address"],
    "description": "How unique visitors are told apart: by client address and User-Agent, "
    "or by address alone (docs/api.md)",
}
V1_TIME = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339 with the offset of TALLY_TIMEZONE, to the second",
}

SCHEMAS: JSON = {
    "StreamEnd": {
        "type": "object",
        "description": "The data of the `end` event that ends a live stream: why it ended "
        "(docs/api.md#live-counts), in the shape of an error body.",
        "required": ["code", "message", "reason"],
        "properties": {
            "code": {"type": "string", "enum": ["401", "403", "404", "500", "503"]},
            "message": {"type": "string"},
            "reason": {
                "enum": [
                    "unauthorized",
                    "forbidden",
                    "not_found",
                    "replaced",
                    "unavailable",
                    "stopping",
                    "error",
                ]
            },
        },
    },
    "Error": {
        "type": "object",
        "description": "Every error, whatever the status; the request changed nothing.",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": "string", "description": "the HTTP status, as a string"},
            "message": {"type": "string"},
        },
    },
    "Counter": {
        "type": "object",
        "required": [
            "id", "name", "slug", "description", "team_id", "user_id", "workspace_id",
            "workspace_slug", "up_count", "down_count", "value", "private", "created_at",
            "updated_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "slug": {"type": "string", "description": "equals name"},
            "description": {"type": "string"},
            "team_id": {"type": "integer", "description": "the workspace's id"},
            "user_id": {"type": "integer", "description": "the owning account; 0 for none"},
            "workspace_id": {"type": "integer"},
            "workspace_slug": {"type": "string"},
            "up_count": {"type": "integer", "minimum": 0},
            "down_count": {"type": "integer", "minimum": 0},
            "value": {"type": "integer", "description": "up_count - down_count"},
            "private": {"type": "boolean"},
            "created_at": TIME,
            "updated_at": TIME,
            "counted": {
                "type": "boolean",
                "description": "Only on an up of a counter with a unique window: whether "
                "this request counted (false: the visitor was counted within the window; "
                "nothing changed). Clients that do not know it ignore it.",
            },
        },
    },
    "CounterEnvelope": {
        "type": "object",
        "required": ["code", "data"],
        "properties": {"code": {"const": "200"}, "data": ref("schemas", "Counter")},
    },
    "ResetEnvelope": {
        "type": "object",
        "required": ["code", "message", "data"],
        "properties": {
            "code": {"const": "200"},
            "message": {"const": "Counter reset successfully"},
            "data": ref("schemas", "Counter"),
        },
    },
    "Counts": COUNTS,
    "Stats": {
        "type": "object",
        "description": "docs/stats.md: every key is always present",
        "required": ["today", "this_week", "temporal"],
        "properties": {
            "today": ref("schemas", "Counts"),
            "this_week": ref("schemas", "Counts"),
            "temporal": {
                "type": "object",
                "required": ["hours", "weekdays", "quarters"],
                "properties": {
                    "hours": counts_by(*(f"{h:02d}" for h in range(24))),
                    "weekdays": counts_by(
                        "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                        "sunday",
                    ),
                    "quarters": counts_by("q1", "q2", "q3", "q4"),
                },
            },
        },
    },
    "StatsEnvelope": {
        "type": "object",
        "required": ["code", "message", "data"],
        "properties": {
            "code": {"const": "200"},
            "message": {"const": "Counter stats retrieved successfully"},
            "data": {
                "type": "object",
                "required": [
                    "id", "counter_id", "up_count", "down_count", "stats", "created_at",
                    "updated_at",
                ],
                "properties": {
                    "id": {"type": "integer"},
                    "counter_id": {"type": "integer"},
                    "up_count": {"type": "integer", "minimum": 0},
                    "down_count": {"type": "integer", "minimum": 0},
                    "stats": ref("schemas", "Stats"),
                    "created_at": TIME,
                    "updated_at": TIME,
                },
            },
        },
    },
    "V1Counter": {
        "type": "object",
        "description": "A V1 counter (docs/api.md, V1): no envelope; count = up - down.",
        "required": [
            "id", "name", "count", "created_at", "updated_at", "namespace_id", "namespace",
        ],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "count": {"type": "integer"},
            "created_at": V1_TIME,
            "updated_at": V1_TIME,
            "namespace_id": {"type": "integer"},
            "namespace": {
                "type": "object",
                "required": ["id", "name", "created_at", "updated_at"],
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string"},
                    "created_at": V1_TIME,
                    "updated_at": V1_TIME,
                },
            },
        },
    },
    "V1Counts": {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["count", "date"],
            "properties": {
                "count": {"type": "integer", "description": "events in the period"},
                "date": {**V1_TIME, "description": "the period's local start"},
            },
        },
    },
    "V1Error": {
        "type": "object",
        "description": "A V1 error: `code` is the status as an integer (a 429's is the "
        "string \"429\", as V1 sent it).",
        "required": ["code", "message"],
        "properties": {
            "code": {"type": ["integer", "string"]},
            "message": {"type": "string"},
        },
    },
    "ManagedCounter": {
        "type": "object",
        "description": "A counter as the management API shows it (committed totals).",
        "required": [
            "id", "name", "description", "visibility", "private", "workspace_id",
            "workspace_slug", "up_count", "down_count", "value", "floor", "ceiling",
            "allowed_origins", "created_at", "updated_at", "unique", "unique_by",
        ],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "description": {"type": "string"},
            "visibility": {"enum": ["public", "private"]},
            "private": {"type": "boolean"},
            "workspace_id": {"type": "integer"},
            "workspace_slug": {"type": "string"},
            "up_count": {"type": "integer", "minimum": 0},
            "down_count": {"type": "integer", "minimum": 0},
            "value": {"type": "integer"},
            "floor": {
                "type": ["integer", "null"],
                "description": "the lowest value a down may reach (null: none)",
            },
            "ceiling": {
                "type": ["integer", "null"],
                "description": "the highest value an up may reach (null: none)",
            },
            "allowed_origins": {
                "type": "array",
                "items": {"type": "string"},
                "description": "its own allowed origins; empty: the workspace's apply",
            },
            "created_at": TIME,
            "updated_at": TIME,
            "unique": UNIQUE,
            "unique_by": UNIQUE_BY,
        },
    },
    "WorkspaceSettings": {
        "type": "object",
        "required": [
            "id",
            "slug",
            "name",
            "v1_open",
            "allowed_origins",
            "page_views",
            "honour_dnt",
            "created_at",
            "counters",
            "counter_quota",
            "counter_quota_own",
        ],
        "properties": {
            "id": {"type": "integer"},
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "v1_open": {
                "type": "boolean",
                "description": "the workspace answers the V1 legacy endpoints",
            },
            "allowed_origins": {
                "type": "array",
                "items": {"type": "string"},
                "description": "origins anonymous counts must come from, for counters "
                "without their own list (empty: any)",
            },
            "page_views": {
                "type": "boolean",
                "description": "it counts page views (/count.js): anonymous ups from its "
                "allowed origins create missing counters",
            },
            "honour_dnt": {
                "type": "boolean",
                "description": "page views sent with Do-Not-Track or Global Privacy "
                "Control are not counted",
            },
            "created_at": TIME,
            "counters": {"type": "integer", "description": "how many it has"},
            "counter_quota": {
                "type": "integer",
                "description": "how many it may have (0: no quota); new ones beyond are a 403",
            },
            "counter_quota_own": {
                "type": "boolean",
                "description": "the quota is the workspace's own, not the server's",
            },
            "timezone": {
                "type": ["string", "null"],
                "description": "the IANA zone of its dates (periods, charts, /stats); "
                "null: the server's (TALLY_TIMEZONE)",
            },
        },
    },
    "CounterList": {
        "type": "object",
        "required": ["counters", "total", "limit", "offset"],
        "properties": {
            "counters": {"type": "array", "items": ref("schemas", "ManagedCounter")},
            "total": {
                "type": "integer",
                "description": "counters matching q, all pages (of a search: 10,000 at most, "
                "see total_exact)",
            },
            "total_exact": {
                "type": "boolean",
                "description": "false: more than `total` counters match the search",
            },
            "limit": {"type": "integer"},
            "offset": {"type": "integer"},
            "next": {
                "type": ["string", "null"],
                "description": "the cursor of the next page, for `after` (null: none)",
            },
        },
    },
    "DeletedCounter": {
        "type": "object",
        "required": ["id", "name"],
        "properties": {"id": {"type": "integer"}, "name": {"type": "string"}},
    },
    "Share": {
        "type": "object",
        "description": "A shared dashboard: a read-only page for people without an account.",
        "required": [
            "id", "counter_id", "public", "name", "prefix", "include_private", "url",
            "created_at", "expires_at", "revoked_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "counter_id": {"type": ["integer", "null"], "description": "null: the overview"},
            "public": {"type": "boolean"},
            "name": {"type": "string"},
            "prefix": {
                "type": ["string", "null"],
                "description": "a secret link's first characters (null: public)",
            },
            "include_private": {"type": "array", "items": {"type": "integer"}},
            "url": {
                "type": ["string", "null"],
                "description": "the page's URL: a public one's always, a secret link's only "
                "in the answer that made it",
            },
            "created_at": TIME,
            "expires_at": {"anyOf": [TIME, {"type": "null"}]},
            "revoked_at": {"anyOf": [TIME, {"type": "null"}]},
        },
    },
    "ShareList": {
        "type": "object",
        "required": ["shares"],
        "properties": {"shares": {"type": "array", "items": ref("schemas", "Share")}},
    },
    "Token": {
        "type": "object",
        "description": "A token as lists show it: never its secret.",
        "required": [
            "id", "name", "prefix", "permission", "created_at", "expires_at", "last_used_at",
            "revoked_at",
        ],
        "properties": {
            "id": {"type": "integer"},
            "name": {"type": "string"},
            "prefix": {"type": "string", "description": "its first characters"},
            "permission": {"enum": ["read", "write", "admin"]},
            "created_at": TIME,
            "expires_at": {"anyOf": [TIME, {"type": "null"}]},
            "last_used_at": {"anyOf": [TIME, {"type": "null"}]},
            "revoked_at": {"anyOf": [TIME, {"type": "null"}]},
        },
    },
    "NewToken": {
        "allOf": [
            ref("schemas", "Token"),
            {
                "type": "object",
                "required": ["token"],
                "properties": {
                    "token": {"type": "string", "description": "the secret, shown only once"},
                },
            },
        ],
    },
    "TokenList": {
        "type": "object",
        "required": ["tokens"],
        "properties": {"tokens": {"type": "array", "items": ref("schemas", "Token")}},
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"const": "ready"},
            "checks": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "NotReady": {
        "allOf": [
            ref("schemas", "Error"),
            {
                "type": "object",
                "required": ["checks"],
                "properties": {
                    "checks": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        ],
    },
}  # fmt: skip

HEADERS: JSON = {
    "X-RateLimit-Limit": {
        "description": (
            "Requests admitted per period for this path and token (or client IP); while "
            "Redis is unreachable, this node's share: the limit over the live nodes."
        ),
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {
        "description": "Requests this key could make right now.",
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Reset": {
        "description": "Seconds until the key is back to a full budget.",
        "schema": {"type": "integer"},
    },
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    },
    "X-Request-Id": {
        "description": "The id the server logged this request under (a trusted proxy's, "
        "or made by the server).",
        "schema": {"type": "string"},
    },
}

ERRORS: dict[str, tuple[str, JSON]] = {
    "400": (
        "A bad workspace or counter name (refused before the rate limit), or a bad query "
        "parameter (`by`, `up_count`, `down_count`), or a bad JSON body or parameter of the "
        "management API: nothing was changed.",
        {},
    ),
    "401": (
        "An unknown, malformed or revoked token (counted against the client IP's budget); "
        "or an action that needs a token.",
        RATE_LIMIT_HEADERS,
    ),
    "403": (
        "The token lacks the permission, or belongs to another workspace; or an anonymous "
        "count from an origin the counter does not allow; or a new counter (an up, down or "
        "set of a new name, a created one) in a workspace at its counter quota "
        "(TALLY_COUNTER_QUOTA, the settings' counter_quota): nothing was created.",
        RATE_LIMIT_HEADERS,
    ),
    "404": (
        "No such workspace or counter (or a private one); for the management API, also no "
        "such token id, or a workspace the token is not of.",
        RATE_LIMIT_HEADERS,
    ),
    "409": (
        "The change would cross the counter's floor or ceiling; nothing was counted. (Create "
        "a counter: the workspace has a counter of that name. Change a counter: a new or "
        "changed bound the counter's value already breaks; nothing was changed.)",
        RATE_LIMIT_HEADERS,
    ),
    "429": (
        "Over the rate limit; nothing was counted. Or over the token's (or client IP's) "
        "budget of new counters (TALLY_CREATE_RATE_LIMIT): the counter was not created.",
        {**RATE_LIMIT_HEADERS, "Retry-After": ref("headers", "Retry-After")},
    ),
    "503": (
        "The database is unavailable; nothing was counted.",
        {"Retry-After": ref("headers", "Retry-After")},
    ),
}

RESPONSES: JSON = {
    status: json_body(ref("schemas", "Error"), text, headers)
    for status, (text, headers) in ERRORS.items()
}

SECURITY_SCHEMES: JSON = {
    "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "An API token (`tly_...`) from `tally token create`. Optional on "
        "public counters; a token never gives less than anonymous access.",
    },
}

# one event of a live stream: a value (its data a Counter in JSON), or the `end` event
# that ends the stream (its data a StreamEnd)
SSE_EVENT: JSON = {
    "oneOf": [
        {
            "type": "object",
            "required": ["data"],
            "properties": {
                # no `event` line: an SSE parser reports the default type, "message"
                "event": {"const": "message"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/Counter"},
                },
                "id": {"type": "string"},
                "retry": {"type": "integer", "minimum": 0},
            },
        },
        {
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"const": "end"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/StreamEnd"},
                },
            },
        },
    ]
}

# the badge's query parameters (tally.web.badge.parse_options)
BADGE_COLOUR: JSON = {
    "anyOf": [
        {"type": "string", "enum": sorted(badge.COLOURS)},
        {"type": "string", "pattern": "^#?([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$"},
    ]
}
# printable ASCII, Latin-1 (without NBSP and the soft hyphen), Latin Extended, IPA,
# Cyrillic and CJK: all printable, so always accepted; other printable text is too
BADGE_LABEL: JSON = {
    "type": "string",
    "maxLength": badge.MAX_LABEL,
    "pattern": "^[\\u0020-\\u007e\\u00a1-\\u00ac\\u00ae-\\u02ff\\u0400-\\u04ff\\u4e00-\\u9fef]*$",
}

# A workspace or counter name (tally.counters.check_name): 1 to 128 characters, no '/',
# no control characters (C0, DEL, C1), no line or paragraph separator, not '.' or '..',
# no space character (Unicode Zs) at either end. (Surrogates cannot occur in a decoded
# UTF-8 string. Not expressed here: a name of spaces and format characters alone, such
# as a zero-width space, is refused too.)
_NOT_IN_NAME = "/\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029"
_SPACES = "\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u202f\\u205f\\u3000"
NAME_SCHEMA: JSON = {
    "type": "string",
    "minLength": 1,
    "maxLength": 128,
    "pattern": f"^(?!\\.\\.?$)(?![{_SPACES}])[^{_NOT_IN_NAME}]*[^{_NOT_IN_NAME}{_SPACES}]$",
}

COUNTER_PARAMETERS = [
    {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what} name: 1 to 128 characters, percent-encoded, no '/', "
        "no control characters, no space at either end, not '.' or '..'.",
        "schema": NAME_SCHEMA,
    }
    for name, what in (("workspace", "workspace"), ("name", "counter"))
]


@dataclass(frozen=True)
class Operation:
    """One route and method of the document."""

    path: str
    operation_id: str
    summary: str
    description: str
    ok: JSON  # the 200 response
    errors: tuple[str, ...] = ()  # statuses of RESPONSES it may answer
    tags: tuple[str, ...] = ("counters",)
    counter: bool = False  # takes {workspace} and {name}, an optional token, is limited
    extra: JSON = field(default_factory=dict)  # more responses, by status
    query: tuple[JSON, ...] = ()  # query parameters
    v1: bool = False  # takes {namespace} and {name}, never a token (V1)
    method: str = "get"
    manage: str = ""  # the management API: "" no, else the item's id parameter ("-": none)
    body: JSON | None = None  # the JSON request body's schema
    ok_status: str = "200"  # the status of `ok`
    workspace: bool = False  # takes {workspace} only, and a token

    def render(self) -> JSON:
        responses: JSON = {self.ok_status: self.ok}
        responses.update({status: ref("responses", status) for status in self.errors})
        responses.update(self.extra)
        out: JSON = {
            "operationId": self.operation_id,
            "summary": self.summary,
            "description": self.description,
            "tags": list(self.tags),
            "responses": responses,
        }
        if self.counter:
            out["parameters"] = [*COUNTER_PARAMETERS, *self.query]
            out["security"] = [{}, {"bearer": []}]  # anonymous, or a token
        elif self.v1:
            out["parameters"] = [*V1_PARAMETERS, *self.query]
            out["security"] = [{}]
        elif self.manage:
            item = [] if self.manage == "-" else [id_parameter(self.manage)]
            out["parameters"] = [COUNTER_PARAMETERS[0], *item, *self.query]
            out["security"] = [{"bearer": []}]
            if self.body is not None:
                out["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": self.body}},
                }
        elif self.workspace:
            out["parameters"] = COUNTER_PARAMETERS[:1]
            out["security"] = [{"bearer": []}]
        else:
            if self.query:
                out["parameters"] = list(self.query)
            out["security"] = []
        return out


V1_PARAMETERS = [
    {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}: 1 to 128 characters, percent-encoded, no '/', no "
        "control characters, not '.' or '..'.",
        "schema": NAME_SCHEMA,
    }
    for name, what in (("namespace", "workspace opened for V1"), ("name", "counter name"))
]


def id_parameter(name: str) -> JSON:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": (
            "The id (a list shows it); another workspace's, or any that is no id "
            "(0, negative, over 2^63 - 1, not digits), is a 404."
        ),
        "schema": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
    }


def query(
    name: str, description: str, maximum: int, *, required: bool = False, minimum: int = 0
) -> JSON:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": {"type": "integer", "minimum": minimum, "maximum": maximum},
    }


BY = query(
    "by",
    "Count N at once (default 1). N > 1 needs a Write token of the workspace; empty, "
    "0, signed, repeated or non-numeric is a 400.",
    1_000_000,
)
BY["schema"]["minimum"] = 1


def v1_errors(*statuses: str) -> JSON:
    texts = {
        "400": "record not found (a missing or private counter), or a bad name or query",
        "403": "an origin the counter does not allow",
        "404": "no namespace of that name open for V1",
        "409": "the up would cross the counter's ceiling; nothing was counted",
        "429": "over V1's rate limit (30 per minute per path and client IP)",
        "503": "the database is unavailable; nothing was counted",
    }
    return {
        status: json_body(
            ref("schemas", "V1Error"),
            texts[status],
            {**RATE_LIMIT_HEADERS, "Retry-After": ref("headers", "Retry-After")}
            if status == "429"
            else None,
        )
        for status in statuses
    }


V1 = "/v1/{namespace}/{name}"
v1_ok = json_body(ref("schemas", "V1Counter"), "The counter (V1).", RATE_LIMIT_HEADERS)
V1_ERRORS = ("400", "403", "404", "409", "429", "503")

COUNTER = "/v2/{workspace}/{name}"
COUNTER_ERRORS = ("400", "401", "404", "429", "503")
counter_ok = json_body(ref("schemas", "CounterEnvelope"), "The counter.", RATE_LIMIT_HEADERS)

MANAGE = "/v2/{workspace}/-"
MANAGE_ERRORS = ("400", "401", "403", "404", "429", "503")


def managed(schema: JSON, message: str, status: str = "200") -> JSON:
    """A management API answer: the V2 envelope around `schema`."""
    return json_body(
        {
            "type": "object",
            "required": ["code", "message", "data"],
            "properties": {
                "code": {"const": status},
                "message": {"type": "string"},
                "data": schema,
            },
        },
        message,
        RATE_LIMIT_HEADERS,
    )


VISIBILITY = {"enum": ["public", "private"], "default": "public"}
DESCRIPTION = {"type": "string", "maxLength": 500}
UNIQUE_SETTING: JSON = {
    "description": "The unique-visitor window in seconds (3600 to 2592000); true: 86400 "
    "(24 h); false or null: off.",
    "oneOf": [
        {"type": "integer", "minimum": 3600, "maximum": 2592000},
        {"type": "boolean"},
        {"type": "null"},
    ],
}
# an origin as tally.origins.normalize takes it: http(s), a DNS name (its labels of
# letters, digits and inner hyphens; `*.` before it for every subdomain), a port of 0 to
# 65535, nothing after but one slash
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
ORIGIN_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://(\*\.)?{_LABEL}(\.{_LABEL})*(:{_PORT})?/?$"
ORIGINS = {
    "type": "array",
    "maxItems": 100,
    "items": {
        "type": "string",
        "pattern": ORIGIN_PATTERN,
        "examples": ["https://example.com", "https://*.example.com"],
    },
    "description": "Origins as scheme://host[:port], or https://*.example.com for every "
    "subdomain; [] clears the list.",
}
BOUND = {"type": ["integer", "null"], "minimum": -(2**62), "maximum": 2**62}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        COUNTER,
        "getCounter",
        "Read a counter",
        "Its totals, with every change acknowledged before the request.",
        counter_ok,
        (*COUNTER_ERRORS, "403"),
        counter=True,
    ),
    Operation(
        f"{COUNTER}/up",
        "countUp",
        "Count up",
        "up_count + 1 (or + by), answered with the totals right after this request's own "
        "change. A Write token of the workspace creates a missing counter. Anonymous "
        "counts may be limited to allowed origins; a counter's ceiling is a 409. On a "
        "counter with a unique window, an anonymous up counts once per visitor within "
        "the window: the answer's `counted` says whether this one did.",
        counter_ok,
        (*COUNTER_ERRORS, "403", "409"),
        counter=True,
        query=(BY,),
    ),
    Operation(
        f"{COUNTER}/down",
        "countDown",
        "Count down",
        "down_count + 1 (or + by; up_count is unchanged); like up otherwise, and a "
        "counter's floor is a 409.",
        counter_ok,
        (*COUNTER_ERRORS, "403", "409"),
        counter=True,
        query=(BY,),
    ),
    Operation(
        f"{COUNTER}/set",
        "setCounter",
        "Set a counter's totals",
        "Replaces both totals (Admin token of the workspace; creates a missing counter), in "
        "the group commit's order; the difference is recorded in the current hour's "
        "bucket, so the stats sum to the totals (docs/api.md, Setting a value).",
        counter_ok,
        (*COUNTER_ERRORS, "403", "409"),
        counter=True,
        query=(
            query("up_count", "The new up_count.", 2**53 - 1, required=True),
            query("down_count", "The new down_count (default 0).", 2**53 - 1),
        ),
    ),
    Operation(
        f"{COUNTER}/reset",
        "resetCounter",
        "Reset a counter",
        "Both totals back to 0 (the history stays). Needs a Write token of the workspace.",
        json_body(ref("schemas", "ResetEnvelope"), "The counter reset.", RATE_LIMIT_HEADERS),
        (*COUNTER_ERRORS, "403"),
        counter=True,
    ),
    Operation(
        f"{COUNTER}/stats",
        "counterStats",
        "A counter's stats",
        "Totals and when the events happened: today, this week, by hour, weekday and quarter.",
        json_body(ref("schemas", "StatsEnvelope"), "The counter's stats.", RATE_LIMIT_HEADERS),
        (*COUNTER_ERRORS, "403"),
        counter=True,
    ),
    Operation(
        f"{COUNTER}/badge.svg",
        "counterBadge",
        "A counter's badge",
        "The value as a shields-style SVG (docs/api.md#badges). The rules of get; with "
        "count=up those of up, counted like up. An error is an SVG badge too, with the "
        "error's status.",
        {
            "description": "The badge. Cache-Control: no-cache, max-age=0; an ETag "
            "(If-None-Match gives 304).",
            "headers": {"X-Request-Id": ref("headers", "X-Request-Id"), **RATE_LIMIT_HEADERS},
            "content": {"image/svg+xml": {"schema": {"type": "string"}}},
        },
        counter=True,
        extra={
            status: {
                "description": f"{text} The body is an error badge (SVG); a bad "
                "workspace or counter name, or a malformed token, is refused before the "
                "badge is drawn, in JSON as on every route.",
                "content": {
                    "image/svg+xml": {"schema": {"type": "string"}},
                    "application/json": {"schema": ref("schemas", "Error")},
                },
            }
            for status, text in (
                ("400", "A bad parameter."),
                ("401", "A bad token, or count=up on a private counter without one."),
                ("403", "The token lacks the permission."),
                ("404", "No such counter (or a private one)."),
                ("429", "Over the rate limit; nothing was counted."),
                ("503", "The database is unavailable; nothing was counted."),
            )
        },
        query=tuple(
            {"name": name, "in": "query", "description": text, "schema": schema}
            for name, text, schema in (
                (
                    "label",
                    "The left text (default: the counter's name): at most 64 "
                    "printable characters (the pattern is a subset that is always "
                    "accepted).",
                    BADGE_LABEL,
                ),
                ("color", "A colour name (blue, brightgreen, ...) or hex like 4c1.", BADGE_COLOUR),
                ("labelColor", "The left side's colour.", BADGE_COLOUR),
                (
                    "style",
                    "flat (default), flat-square or for-the-badge.",
                    {"type": "string", "enum": list(badge.STYLES)},
                ),
                (
                    "number",
                    "full (12,345, default) or compact (12k).",
                    {"type": "string", "enum": list(badge.NUMBERS)},
                ),
                (
                    "count",
                    "up: count this request like /up, then draw the new value.",
                    {"type": "string", "enum": ["up"]},
                ),
            )
        ),
    ),
    Operation(
        f"{COUNTER}/stream",
        "counterStream",
        "Live counter",
        "Server-Sent Events: get's data now, then after every change on any node (at "
        "most 10 events a second), a heartbeat every 15 s (TALLY_STREAM_HEARTBEAT): access "
        "checked again, and a comment if nothing changed (docs/api.md#live-counts). A "
        "stream whose access ends (token revoked, counter deleted or made private) ends "
        "with an `end` event saying why. 429 beyond the open streams allowed per client "
        "(IP; IPv6 /64) or per node.",
        {
            "description": "An event stream; each value's data is a Counter, the `end` "
            "event's a StreamEnd.",
            "headers": {"X-Request-Id": ref("headers", "X-Request-Id"), **RATE_LIMIT_HEADERS},
            # before OpenAPI 3.2 (itemSchema), an event stream's schema is each event's
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
        (*COUNTER_ERRORS, "403"),
        counter=True,
    ),
    Operation(
        "/export/{workspace}",
        "exportWorkspace",
        "Export a workspace",
        "The workspace's export file (JSON lines, docs/export.md), streamed. Needs an "
        "Admin token of the workspace.",
        {
            "description": "The export file, as an attachment.",
            "headers": {"X-Request-Id": ref("headers", "X-Request-Id"), **RATE_LIMIT_HEADERS},
            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
        },
        ("401", "403", "404", "429", "503"),
        tags=("operations",),
        workspace=True,
    ),
    Operation(
        V1,
        "v1GetCounter",
        "V1: read a counter",
        "The retired V1 API, on workspaces opened for V1; no tokens, public counters only.",
        v1_ok,
        tags=("v1",),
        v1=True,
        extra=v1_errors("400", "404", "429", "503"),
    ),
    Operation(
        f"{V1}/up",
        "v1CountUp",
        "V1: count up",
        "count + 1, creating the counter.",
        v1_ok,
        tags=("v1",),
        v1=True,
        extra=v1_errors(*V1_ERRORS),
    ),
    Operation(
        f"{V1}/down",
        "v1CountDown",
        "V1: count down",
        "count - 1, creating the counter; never below 0 (then the counter as it is).",
        v1_ok,
        tags=("v1",),
        v1=True,
        extra=v1_errors(*V1_ERRORS),
    ),
    Operation(
        f"{V1}/set",
        "v1SetCounter",
        "V1: set the count",
        "count = N (up_count N, down_count 0), creating the counter.",
        v1_ok,
        tags=("v1",),
        v1=True,
        query=(query("count", "The new count.", 2**53 - 1, required=True),),
        extra=v1_errors(*V1_ERRORS),
    ),
    Operation(
        f"{V1}/list",
        "v1ListCounts",
        "V1: events per period",
        "The events of each hour, day, week, month or year with any, in TALLY_TIMEZONE.",
        json_body(ref("schemas", "V1Counts"), "The periods.", RATE_LIMIT_HEADERS),
        tags=("v1",),
        v1=True,
        query=(
            {
                "name": "group_by",
                "in": "query",
                "schema": {"enum": ["hour", "day", "week", "month", "year"], "default": "day"},
            },
            {
                "name": "order_by",
                "in": "query",
                "schema": {"enum": ["asc", "desc"], "default": "asc"},
            },
        ),
        extra=v1_errors("400", "404", "429", "503"),
    ),
    Operation(
        f"{MANAGE}/counters",
        "listCounters",
        "List a workspace's counters",
        "One page of the workspace's counters, sorted by name, whose name contains `q` (any "
        "case). Admin token of the workspace.",
        managed(ref("schemas", "CounterList"), "The page."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="-",
        query=(
            {
                "name": "q",
                "in": "query",
                "description": "Only names containing this text (any case).",
                "schema": {"type": "string", "maxLength": 128},
            },
            query("limit", "Counters per page, 1 to 200 (default 50).", 200, minimum=1),
            {
                "name": "after",
                "in": "query",
                "description": "The `next` cursor of the page before: the next page, as "
                "quick at any depth. Not with offset; a string no list gave is a 400.",
                "schema": {"type": "string", "maxLength": 1024},
            },
            query(
                "offset",
                "Counters to skip (default 0); slower the deeper: prefer after.",
                10**9,
            ),
        ),
    ),
    Operation(
        f"{MANAGE}/counters",
        "createCounter",
        "Create a counter",
        "A new counter of the workspace at 0. Admin token of the workspace; a name the "
        "workspace has is a 409.",
        managed(ref("schemas", "ManagedCounter"), "The new counter.", "201"),
        (*MANAGE_ERRORS, "409"),
        tags=("management",),
        manage="-",
        ok_status="201",
        method="post",
        body={
            "type": "object",
            "required": ["name"],
            "additionalProperties": False,
            "properties": {
                "name": NAME_SCHEMA,
                "description": DESCRIPTION,
                "visibility": VISIBILITY,
            },
        },
    ),
    Operation(
        f"{MANAGE}/counters/{{counter_id}}",
        "getManagedCounter",
        "Read a counter by id",
        "The counter's settings and committed totals. Admin token of the workspace.",
        managed(ref("schemas", "ManagedCounter"), "The counter."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="counter_id",
    ),
    Operation(
        f"{MANAGE}/counters/{{counter_id}}",
        "updateCounter",
        "Change a counter",
        "Its description, visibility, allowed origins, floor and ceiling (null: none), "
        "and unique-visitor window and how it tells visitors apart; fields left out keep "
        "their value, and a floor above "
        "the ceiling is a 400. A new or changed bound that the counter's value already "
        "breaks is a 409 (an unchanged one is not checked again); nothing is changed. "
        "Every node sees the change within TALLY_TOKEN_CACHE_TTL. Admin token of the "
        "workspace.",
        managed(ref("schemas", "ManagedCounter"), "The changed counter."),
        (*MANAGE_ERRORS, "409"),
        tags=("management",),
        manage="counter_id",
        method="patch",
        body={
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "description": DESCRIPTION,
                "visibility": VISIBILITY,
                "unique": UNIQUE_SETTING,
                "unique_by": UNIQUE_BY,
                "allowed_origins": ORIGINS,
                "floor": BOUND,
                "ceiling": BOUND,
            },
        },
    ),
    Operation(
        f"{MANAGE}/counters/{{counter_id}}",
        "deleteCounter",
        "Delete a counter",
        "The counter and its hourly history; every node answers 404 for it within "
        "TALLY_TOKEN_CACHE_TTL. Admin token of the workspace.",
        managed(ref("schemas", "DeletedCounter"), "The deleted counter."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="counter_id",
        method="delete",
    ),
    Operation(
        f"{MANAGE}/tokens",
        "listTokens",
        "List a workspace's tokens",
        "Every token of the workspace, revoked and expired ones included; never a secret. "
        "Admin token of the workspace.",
        managed(ref("schemas", "TokenList"), "The tokens."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="-",
    ),
    Operation(
        f"{MANAGE}/tokens",
        "createToken",
        "Create a token",
        "A new token of the workspace; its secret is in this answer only. Admin token of "
        "the workspace.",
        managed(ref("schemas", "NewToken"), "The new token, with its secret.", "201"),
        MANAGE_ERRORS,
        tags=("management",),
        manage="-",
        ok_status="201",
        method="post",
        body={
            "type": "object",
            "required": ["permission"],
            "additionalProperties": False,
            "properties": {
                "permission": {"enum": ["read", "write", "admin"]},
                "name": {"type": "string", "maxLength": 100},
                "expires_in_days": {"type": "integer", "minimum": 1, "maximum": 3650},
            },
        },
    ),
    Operation(
        f"{MANAGE}/tokens/{{token_id}}",
        "revokeToken",
        "Revoke a token",
        "Servers refuse it within TALLY_TOKEN_CACHE_TTL; revoking a revoked token changes "
        "nothing. Admin token of the workspace.",
        managed(ref("schemas", "Token"), "The revoked token."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="token_id",
        method="delete",
    ),
    Operation(
        f"{MANAGE}/shares",
        "listShares",
        "List a workspace's shared dashboards",
        "Every share of the workspace, revoked and expired ones included; a secret link's "
        "url is never shown again (only its prefix). Admin token of the workspace.",
        managed(ref("schemas", "ShareList"), "The shares."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="-",
    ),
    Operation(
        f"{MANAGE}/shares",
        "createShare",
        "Share the overview or a counter's page, read-only",
        "A secret link (its url is in this answer only: only a hash of it is kept) or, "
        "with public, the page's public URL (/p/SLUG or /p/SLUG/c/ID; a new one revokes "
        "the page's old one). A shared overview shows the public counters and the private "
        "ones of include_private. Admin token of the workspace.",
        managed(ref("schemas", "Share"), "The share, with its url.", "201"),
        MANAGE_ERRORS,
        tags=("management",),
        manage="-",
        ok_status="201",
        method="post",
        body={
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "counter_id": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "maximum": INT64_MAX,
                    "description": "the counter whose page is shared; null or absent: the "
                    "workspace overview",
                },
                "public": {"type": "boolean", "description": "no secret: a public URL"},
                "name": {"type": "string", "maxLength": 100},
                "expires_in_days": {"type": ["integer", "null"], "minimum": 1, "maximum": 3650},
                "include_private": {
                    "type": "array",
                    "maxItems": 100,
                    "items": {"type": "integer", "minimum": 1, "maximum": INT64_MAX},
                    "description": "private counters a shared overview shows too",
                },
            },
        },
    ),
    Operation(
        f"{MANAGE}/shares/{{share_id}}",
        "revokeShare",
        "Revoke a share",
        "Its link answers 410 from then on, and its open live streams end at their next "
        "heartbeat. Admin token of the workspace.",
        managed(ref("schemas", "Share"), "The revoked share."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="share_id",
        method="delete",
    ),
    Operation(
        f"{MANAGE}/settings",
        "getSettings",
        "Read the workspace's settings",
        "Its V1 flag and allowed origins. Admin token of the workspace.",
        managed(ref("schemas", "WorkspaceSettings"), "The settings."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="-",
    ),
    Operation(
        f"{MANAGE}/settings",
        "updateSettings",
        "Change the workspace's settings",
        "Open or close it for the V1 legacy endpoints, replace its allowed origins "
        "(the list of counters without their own), turn page counting on or off. Fields "
        "left out keep their value. Every node sees the change within "
        "TALLY_TOKEN_CACHE_TTL. Admin token of the workspace.",
        managed(ref("schemas", "WorkspaceSettings"), "The changed settings."),
        MANAGE_ERRORS,
        tags=("management",),
        manage="-",
        method="patch",
        body={
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "allowed_origins": ORIGINS,
                "v1_open": {"type": "boolean"},
                "page_views": {
                    "type": "boolean",
                    "description": "count page views; true needs allowed origins",
                },
                "honour_dnt": {"type": "boolean"},
                "counter_quota": {
                    "type": ["integer", "null"],
                    "minimum": 1,
                    "description": "the workspace's own counter quota, at most the "
                    "server's (TALLY_COUNTER_QUOTA); null: the server's",
                },
                "timezone": {
                    "type": ["string", "null"],
                    "maxLength": 64,
                    "description": "an IANA zone name (Europe/Berlin): the days of its "
                    "periods, charts and /stats; null or empty: the server's",
                },
            },
        },
    ),
    *(
        Operation(
            path,
            f"pageView{method.capitalize()}" if path == "/count" else "pageViewImage",
            "Count a page view" if path == "/count" else "Count a page view (an image)",
            "An anonymous up of the page's counter, for /count.js and <noscript> "
            "(docs/api.md#page-views): the workspace must count page views; a missing "
            "counter is created from one of its allowed origins only, within the quota "
            "and the budget of new counters. With honour_dnt, DNT: 1 or Sec-GPC: 1 "
            "counts nothing. The rate limit of the counter's /up.",
            {
                "description": "Counted (or not, by Do-Not-Track). Cache-Control: no-store."
                if path == "/count"
                else "A 1x1 transparent GIF. Cache-Control: no-store.",
                "headers": {"X-Request-Id": ref("headers", "X-Request-Id"), **RATE_LIMIT_HEADERS},
                **(
                    {}
                    if path == "/count"
                    else {"content": {"image/gif": {"schema": {"type": "string"}}}}
                ),
            },
            ("400", "403", "404", "429", "503"),
            tags=("page views",),
            method=method,
            ok_status="204" if path == "/count" else "200",
            query=tuple(
                {
                    "name": name,
                    "in": "query",
                    "required": name == "workspace",
                    "description": text,
                    "schema": NAME_SCHEMA
                    if name != "page"
                    else {"type": "string", "minLength": 1, "pattern": "^/"},
                }
                for name, text in (
                    ("workspace", "The workspace's slug."),
                    (
                        "page",
                        "The page's path, from '/' (its counter is named by the "
                        "mapping of docs/api.md#page-views, at most 128 characters once "
                        "mapped); give page or counter, not both.",
                    ),
                    ("counter", "The counter's name as is, instead of page."),
                )
            ),
        )
        for path, method in (("/count", "post"), ("/count", "get"), ("/count.gif", "get"))
    ),
    Operation(
        "/healthz",
        "health",
        "Liveness",
        "The process answers HTTP. Not rate-limited, not logged.",
        json_body(ref("schemas", "Health"), "Alive."),
        tags=("operations",),
    ),
    Operation(
        "/readyz",
        "readiness",
        "Readiness",
        "The database (and Redis, when the rate limit is shared through it) answered "
        "within 2 s. Not rate-limited, not logged.",
        json_body(ref("schemas", "Readiness"), "Ready."),
        tags=("operations",),
        extra={"503": json_body(ref("schemas", "NotReady"), "Not ready, and why.")},
    ),
    Operation(
        "/openapi.json",
        "openapi",
        "This document",
        "The OpenAPI 3.1 description of the public routes. /docs renders it.",
        json_body({}, "OpenAPI 3.1"),
        tags=("operations",),
    ),
)


def tally_version() -> str:
    try:
        return version("tally")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "0"


def document() -> JSON:
    """The whole OpenAPI 3.1 document."""
    from tally.web import openapi_alerts  # it builds on this module's parts

    paths: JSON = {}
    for op in (*OPERATIONS, *openapi_alerts.OPERATIONS):
        paths.setdefault(op.path, {})[op.method] = op.render()
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tally",
            "version": tally_version(),
            "summary": "A counting service that speaks the CounterAPI V2 wire format.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "counters", "description": "The CounterAPI V2 endpoints."},
            {"name": "v1", "description": "The retired V1 API, for old clients."},
            {
                "name": "management",
                "description": "A workspace's counters, tokens, settings and alerts, "
                "for its Admin tokens.",
            },
            {
                "name": "page views",
                "description": "What /count.js and its <noscript> image call.",
            },
            {"name": "operations", "description": "Health, readiness and this document."},
        ],
        "paths": paths,
        "components": {
            "schemas": {**SCHEMAS, **openapi_alerts.SCHEMAS},
            "headers": HEADERS,
            "responses": RESPONSES,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


def document_bytes() -> bytes:
    return orjson.dumps(document())
