"""The workspace overview, the first page of a workspace (/w/{slug}): the period's
totals and chart for the whole workspace, the counters that changed most, and the
counter list, each counter with a sparkline of the period.

Whatever the workspace's size, a page costs a fixed number of statements (all through
the store's `_fetch`, off the event loop on SQLite): the list's page and total, the
workspace's bars and previous period, the counters that changed most, and the page's
sparklines, one statement for all its counters (tally/storage/overview.py). The same
view, read-only, is what a shared overview shows (tally/site/shares.py), with a scope
that leaves out private counters not picked for it.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from tally import charts, periods, workspaces
from tally.models import Workspace
from tally.periods import Period
from tally.site import period_view
from tally.site.counters import load_workspace, read_list
from tally.site.pages import render, site
from tally.storage.overview import EVERY, Mover, Scope

MOVERS = 5  # the counters that changed most, shown


def zone_of(request: Request, ws: Workspace) -> Any:
    return periods.zone(ws.timezone, site(request).settings.timezone)


async def workspace_period(
    request: Request, ws: Workspace, period: Period, scope: Scope = EVERY
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workspace's summary of `period` (as tally.periods.summary) and its chart."""
    labels, starts = period.bars()
    before = period.previous()
    bars, previous = await site(request).store.period_bars(
        ws.id, starts, period.end_hour, before.start_hour, scope
    )
    up, down = sum(b[0] for b in bars), sum(b[1] for b in bars)
    summary = {
        "up": up,
        "down": down,
        "previous": {"up": previous[0], "down": previous[1]},
        "change": {
            "up": periods.change(up, previous[0]),
            "down": periods.change(down, previous[1]),
        },
    }
    chart = {
        "unit": period.unit,
        "labels": labels,
        "up": [b[0] for b in bars],
        "down": [b[1] for b in bars],
    }
    return summary, chart


def mover_rows(movers: list[Mover]) -> list[dict[str, Any]]:
    rows = []
    for m in movers:
        now, before = m.up + m.down, m.previous_up + m.previous_down
        change = periods.change(now, before)
        rows.append(
            {
                "id": m.id,
                "name": m.name,
                "private": m.private,
                "events": now,
                "previous": before,
                "diff": change["diff"],
                "percent": change["percent"],
            }
        )
    return rows


async def sparklines(request: Request, counter_ids: list[int], period: Period) -> dict[int, Any]:
    """Each listed counter's sparkline of the period: one statement for the page."""
    _, starts = period.bars()
    lines = await site(request).store.sparklines(counter_ids, starts, period.end_hour)
    return {
        cid: charts.sparkline_svg(points, f"Ups per {period.unit}, {period.dates}")
        for cid, points in lines.items()
    }


async def view(
    request: Request, ws: Workspace, period: Period, scope: Scope = EVERY, **keep: str
) -> dict[str, Any]:
    """The overview's numbers: the period's section (its links keep `keep`), the
    movers."""
    summary, chart = await workspace_period(request, ws, period, scope)
    before = period.previous()
    movers = await site(request).store.movers(
        ws.id, before.start_hour, period.start_hour, period.end_hour, MOVERS, scope
    )
    return {
        **period_view.context(period, summary, chart, **keep),
        "movers": mover_rows(movers),
    }


async def overview(request: Request) -> Response:
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "view")
    period = period_view.chosen(request, time.time(), zone_of(request, ws))
    listed = await read_list(request, ws, period.query())
    numbers = await view(request, ws, period, **listed["list_keep"])
    ids = [c.id for c in listed["result"].counters]
    return render(
        request,
        "counters.html",
        workspace=ws,
        role=role,
        section="counters",
        **listed,
        **numbers,
        period_keep=listed["list_keep"],
        period_fragment=f"/w/{ws.slug}/period?{urlencode(period.query())}",
        sparklines=await sparklines(request, ids, period),
        counter_link=f"/w/{ws.slug}/c/{{id}}?{urlencode(period.query())}",
    )


async def period_fragment(request: Request) -> Response:
    """The overview's period section alone (its periodic refresh reloads it)."""
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "view")
    period = period_view.chosen(request, time.time(), zone_of(request, ws))
    summary, chart = await workspace_period(request, ws, period)
    response = render(
        request,
        "_period.html",
        **period_view.context(period, summary, chart),
        period_keep={},
        period_fragment="",
    )
    return response
