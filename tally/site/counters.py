"""Counter pages: the list (search, sort, pages), create, the counter page with its live
counts, chart data and snippets, edit, its rules (bounds, allowed origins), reset and
delete."""

from __future__ import annotations

import time
from datetime import tzinfo
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tally import charts, rules, stats, visitors, workspaces
from tally import periods as tally_periods
from tally.errors import BadRequest, NotFound, TallyError
from tally.models import Account, Counter, CounterChange, CounterPage, Role, Workspace
from tally.periods import Period
from tally.site import period_view
from tally.site.pages import (
    FormError,
    base_url,
    field,
    form,
    path_id,
    redirect,
    render,
    signed_in,
    site,
)
from tally.storage.dashboard import SORTS
from tally.storage.overview import EVERY, Scope

PAGE_SIZE = 50
MAX_PAGE = 1_000_000  # 50 million counters: far beyond any workspace, well within 64 bits


async def load_workspace(request: Request) -> tuple[Account, Workspace, Role]:
    session = await signed_in(request)
    ws, role = await workspaces.membership(
        site(request).store, session.account, request.path_params["slug"]
    )
    return session.account, ws, role


async def load_counter(request: Request, ws: Workspace) -> Counter:
    """The counter named by the path's id, if it belongs to `ws` (else 404: another
    workspace's counter is not revealed)."""
    counter_id = path_id(request, "counter_id", "counter")
    counter = await site(request).store.get_counter_by_id(counter_id)
    if counter is None or counter.workspace_id != ws.id:
        raise NotFound("No such counter.")
    return counter


async def read_list(
    request: Request, ws: Workspace, keep: dict[str, str], scope: Scope = EVERY
) -> dict[str, Any]:
    """The counter list's page of the request's query, as the template's context: a page
    after (or before) a cursor of the list's own, never an offset, so the last page of
    a million counters costs what the first does. `keep`: other query parameters its
    links keep (the period's)."""
    q = request.query_params
    search = q.get("q", "").strip()[:128]
    sort = q.get("sort", "name")
    if sort not in SORTS:
        sort = "name"
    descending = q.get("dir", "desc" if sort != "name" else "asc") == "desc"
    store = site(request).store
    error = None
    after, before = q.get("after", ""), q.get("before", "")

    async def read(after: str = "", before: str = "") -> CounterPage:
        return await store.counter_page(
            ws.id,
            search=search,
            sort=sort,
            descending=descending,
            limit=PAGE_SIZE,
            after=after,
            before=before,
            scope=scope,
        )

    try:
        try:
            result = await read(after, "" if after else before)
        except BadRequest:  # a cursor of another sort, or mangled: the first page
            result = await read()
    except BadRequest as exc:  # a search the workspace is too big for
        result, error = CounterPage([], 0), exc.message[0].upper() + exc.message[1:] + "."
    here = {"q": search, "sort": sort, "dir": "desc" if descending else "asc", **keep}
    return {
        "result": result,
        "search": search,
        "sort": sort,
        "descending": descending,
        "error": error,
        "list_keep": {"q": search, "sort": sort, "dir": here["dir"]},
        "first_link": "?" + urlencode(here),
        "next_link": "?" + urlencode({**here, "after": result.next}) if result.next else None,
        "previous_link": (
            "?" + urlencode({**here, "before": result.previous}) if result.previous else None
        ),
        "base": base_url(request),
        "sorts": [("name", "Name"), ("updated", "Last update"), ("up", "Up"), ("down", "Down")],
    }


async def create(request: Request) -> Response:
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "edit_counters")
    context: dict[str, Any] = {"workspace": ws, "role": role, "section": "counters"}
    if request.method == "GET":
        return render(request, "counter_new.html", name="", description="", **context)
    data = await form(request)
    # the name as typed: one with a space at either end is refused with the API's
    # reason (tally.counters.check_name), never quietly made into another name
    name, description = field(data, "name"), field(data, "description").strip()
    try:
        counter = await workspaces.create_counter(
            site(request).store, ws.id, name, description, field(data, "visibility") == "private"
        )
    except TallyError as exc:
        message = exc.message[0].upper() + exc.message[1:]
        return render(
            request,
            "counter_new.html",
            exc.status,
            error=message,
            name=name,
            description=description,
            **context,
        )
    return redirect(request, f"/w/{ws.slug}/c/{counter.id}", f"Counter {name} created.")


def periods(buckets: list[tuple[int, int, int]], now: float, tz: tzinfo) -> dict[str, Any]:
    """`today` and `this_week` as `stats` answers them: {"up": n, "down": m} each."""
    summary = stats.summarize(buckets, now, tz)
    return {"today": summary["today"], "this_week": summary["this_week"]}


async def detail(request: Request) -> Response:
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "view")
    counter = await load_counter(request, ws)
    return await _page(request, ws, role, counter)


def _rules_form(counter: Counter) -> dict[str, str]:
    """The rules form with the counter's saved values."""
    return {
        "floor": "" if counter.floor is None else str(counter.floor),
        "ceiling": "" if counter.ceiling is None else str(counter.ceiling),
        "origins": "\n".join(counter.origins),
        "unique": visitors.format_window(counter.unique_window),
        "unique_by": rules.unique_by(counter.unique_by_address),
    }


async def _page(
    request: Request,
    ws: Workspace,
    role: Role,
    counter: Counter,
    status: int = 200,
    form_error: FormError | None = None,
    submitted: dict[str, str] | None = None,
) -> Response:
    """The counter page; with a refused form's values as submitted and its error."""
    s = site(request)
    now, tz = time.time(), s.counters.zone(counter)
    period = period_view.chosen(request, now, tz)
    view = await s.counters.current(counter)
    since = stats.settled_before(now, tz)  # covers this week
    recent = periods(await s.counters.history(counter, since), now, tz)
    summary, chart = await period_numbers(request, counter, period)
    saved_rules = _rules_form(counter)
    edit_form = {
        "description": counter.description,
        "visibility": "private" if counter.private else "public",
    }
    refused = form_error.form if form_error else None
    return render(
        request,
        "counter.html",
        status,
        workspace=ws,
        role=role,
        section="counters",
        counter=counter,
        view=view,
        periods=recent,
        **period_view.context(period, summary, chart),
        period_keep={},
        period_fragment=f"/w/{ws.slug}/c/{counter.id}/period?{urlencode(period.query())}",
        base=base_url(request),
        form_error=form_error,
        saved_rules=saved_rules,
        rules_form=submitted if refused == "rules" and submitted else saved_rules,
        edit_form=submitted if refused == "edit" and submitted else edit_form,
        max_description=workspaces.MAX_DESCRIPTION,
        unique_now=visitors.describe_window(counter.unique_window),
    )


async def period_numbers(
    request: Request, counter: Counter, period: Period
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The counter's totals in `period` and the previous one, and the period's chart:
    one read of the buckets of both (pending changes included)."""
    before = period.previous()
    buckets = await site(request).counters.history(counter, before.start_hour, period.end_hour)
    return tally_periods.summary(buckets, period), tally_periods.chart(buckets, period)


async def period_fragment(request: Request) -> Response:
    """The counter page's period section alone (its live refresh reloads it)."""
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "view")
    counter = await load_counter(request, ws)
    return await render_period(request, counter, "")


async def render_period(request: Request, counter: Counter, fragment: str) -> Response:
    period = period_view.chosen(request, time.time(), site(request).counters.zone(counter))
    summary, chart = await period_numbers(request, counter, period)
    response = render(
        request,
        "_period.html",
        **period_view.context(period, summary, chart),
        period_keep={},
        period_fragment=fragment,
    )
    return response


async def counts(request: Request) -> Response:
    """The live counts fragment (htmx polls it while the page is open)."""
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "view")
    counter = await load_counter(request, ws)
    view = await site(request).counters.current(counter)
    return render(request, "_counts.html", workspace=ws, counter=counter, view=view)


async def data(request: Request) -> Response:
    """The charts' data as JSON."""
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "view")
    counter = await load_counter(request, ws)
    return JSONResponse(await chart_data(request, counter), headers={"cache-control": "no-store"})


async def chart_data(request: Request, counter: Counter) -> dict[str, Any]:
    """The counter page's charts and numbers (a shared counter's too: tally/site/shares.py)."""
    s = site(request)
    now, tz = time.time(), s.counters.zone(counter)
    period = period_view.chosen(request, now, tz)
    view = await s.counters.current(counter)
    buckets = await s.counters.history(counter)
    return {
        "up_count": view.up_count,
        "down_count": view.down_count,
        "updated_at": view.updated_at,
        "timezone": tally_periods.zone_name(tz),
        **periods(buckets, now, tz),
        **charts.series(buckets, now, tz, born=counter.created_at),
        "period": period_view.payload(
            period, tally_periods.summary(buckets, period), tally_periods.chart(buckets, period)
        ),
    }


async def edit(request: Request) -> Response:
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "edit_counters")
    counter = await load_counter(request, ws)
    data = await form(request)
    submitted = {key: field(data, key) for key in ("description", "visibility")}
    try:
        description = workspaces.check_description(submitted["description"])
    except BadRequest:
        refused = FormError(
            "edit",
            f"The description is {len(submitted['description'])} characters long: "
            f"{workspaces.MAX_DESCRIPTION} at most.",
            ("description",),
        )
        return await _page(request, ws, role, counter, 400, refused, submitted)
    change = CounterChange(description=description, private=submitted["visibility"] == "private")
    if await site(request).store.change_counter(counter.id, change) is None:
        raise NotFound("No such counter.")
    return redirect(request, f"/w/{ws.slug}/c/{counter.id}", "The counter is saved.")


async def set_rules(request: Request) -> Response:
    """The counter's floor, ceiling, allowed origins and unique-visitor window and how it
    tells visitors apart (tally.rules checks them all before anything is saved). A form
    without the window's field (or `unique_by`) keeps it; an empty window turns it off."""
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "counter_rules")
    counter = await load_counter(request, ws)
    data = await form(request)
    submitted = {key: field(data, key) for key in ("floor", "ceiling", "origins")}
    submitted["unique"] = (
        field(data, "unique") if "unique" in data else visitors.format_window(counter.unique_window)
    )
    fields: tuple[str, ...] = ()  # the field being checked, for the error
    submitted["unique_by"] = (
        field(data, "unique_by")
        if "unique_by" in data
        else rules.unique_by(counter.unique_by_address)
    )
    try:
        fields = ("unique",)
        window = rules.parse_unique(field(data, "unique")) if "unique" in data else None
        fields = ("unique_by",)
        by_address = rules.check_unique_by(submitted["unique_by"]) if "unique_by" in data else None
        fields = ("origins",)
        origins = rules.parse_origins(submitted["origins"])
        fields = ("floor",)
        floor = rules.parse_bound(submitted["floor"], "floor")
        fields = ("ceiling",)
        ceiling = rules.parse_bound(submitted["ceiling"], "ceiling")
        fields = ("floor", "ceiling")
        rules.check_bounds(floor, ceiling)
        change = CounterChange(
            bounds=(floor, ceiling),
            origins=origins,
            unique_window=window,
            unique_by_address=by_address,
        )
        saved = await site(request).counters.change_settings(counter, change)
    except TallyError as exc:
        if fields == ("floor", "ceiling"):  # a bound the value breaks: the one it names
            fields = tuple(f for f in fields if f in exc.message) or fields
        refused = FormError("rules", rules.sentence(exc.message), fields)
        return await _page(request, ws, role, counter, exc.status, refused, submitted)
    if saved is None:
        raise NotFound("No such counter.")
    return redirect(request, f"/w/{ws.slug}/c/{counter.id}", "The limits are saved.")


async def reset(request: Request) -> Response:
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "edit_counters")
    counter = await load_counter(request, ws)
    await form(request)
    await site(request).counters.reset_counter(counter)
    return redirect(request, f"/w/{ws.slug}/c/{counter.id}", "The counter is reset to zero.")


async def delete(request: Request) -> Response:
    _, ws, role = await load_workspace(request)
    workspaces.require_role(role, "edit_counters")
    counter = await load_counter(request, ws)
    data = await form(request)
    typed = field(data, "confirm")
    # exactly, or trimmed: a counter made before names with a space at an end were
    # refused (tally.counters.check_name) can still be deleted
    if counter.name not in (typed, typed.strip()):
        return redirect(
            request,
            f"/w/{ws.slug}/c/{counter.id}",
            f"Type the counter's name, {counter.name}, to delete it.",
        )
    await site(request).store.delete_counter(counter.id)
    return redirect(request, f"/w/{ws.slug}", f"Counter {counter.name} is deleted.")
