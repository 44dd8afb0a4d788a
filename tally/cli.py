"""The `tally` command: serve, and the admin commands on the same database."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from tally import rules, visitors, workspaces
from tally.auth import issue_token
from tally.config import Settings, SettingsError
from tally.counters import MAX_BY, MAX_SET, check_name
from tally.errors import BadRequest, Conflict, StorageError, TallyError
from tally.models import Counter, CounterChange, Permission, Workspace
from tally.storage import Store, store_from_url

if TYPE_CHECKING:
    from tally.accounts import Accounts
    from tally.storage.server_lock import ServerLock

# The web app (load_secret_key), accounts and mail are imported by the commands that use
# them: every admin command pays its imports, and the web stack alone doubles them.

T = TypeVar("T")

database_option = click.option(
    "--database",
    "database_url",
    default=None,
    help="Database URL (else TALLY_DATABASE_URL, the config file, sqlite:///./tally.db).",
)
config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="A TOML file of settings (else TALLY_CONFIG); docs/settings.md.",
)


def _settings(**overrides: Any) -> Settings:
    """Flags (`overrides`; None means not given) over TALLY_* over the config file."""
    ctx = click.get_current_context(silent=True)
    config = None
    while ctx is not None:
        config = config or ctx.params.get("config")
        ctx = ctx.parent
    try:
        return Settings.from_env(config=config, **overrides)
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from None


def _with_store(database_url: str | None, fn: Callable[[Store, Settings], Awaitable[T]]) -> T:
    settings = _settings(database_url=database_url)

    async def run() -> T:
        store = store_from_url(settings.database_url, node="cli")
        await store.open()
        try:
            return await fn(store, settings)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (TallyError, StorageError, ValueError) as exc:
        raise click.ClickException(str(getattr(exc, "message", exc))) from None


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@click.group(invoke_without_command=True)
@config_option
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """Tally: a counting service that speaks the CounterAPI V2 wire format."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@main.command()
@click.option("--host", default=None, help="Address to listen on (else TALLY_HOST, 127.0.0.1).")
@click.option("--port", default=None, type=int, help="Port (else TALLY_PORT, 8000).")
@database_option
@click.option(
    "--durability",
    type=click.Choice(["commit", "buffered"]),
    default=None,
    help="commit (the default): answer writes after they committed; buffered: flush every "
    "interval (else TALLY_DURABILITY).",
)
@click.option(
    "--redis",
    "redis_url",
    default=None,
    help="Redis shared by all nodes (rate limit), e.g. redis://127.0.0.1:6379/0 (else "
    "TALLY_REDIS_URL).",
)
@click.option("--no-bootstrap", is_flag=True, help="Do not create a starter workspace and token.")
@config_option
def serve(
    host: str | None,
    port: int | None,
    database_url: str | None,
    durability: str | None,
    redis_url: str | None,
    no_bootstrap: bool,
    config: str | None,
) -> None:
    """Serve the API (the default command). Flags win over TALLY_* variables, which win
    over the config file."""
    from tally.server import METRICS, PORT, CannotListen, check_address, run

    overrides: dict[str, Any] = {
        "host": host,
        "port": port,
        "database_url": database_url,
        "durability": durability,
        "redis_url": redis_url,
    }
    if no_bootstrap:
        overrides["bootstrap"] = False
    settings = _settings(**overrides)
    lock = _lock_database(settings)
    try:
        check_address(settings.host, settings.port, PORT)
        if settings.metrics_address is not None:
            check_address(*settings.metrics_address, METRICS)
        accounts = _with_store(settings.database_url, lambda store, _s: _prepare(store, settings))
        click.echo(f"\nTally is starting. {_dashboard_line(settings, accounts)}\n")
        run(settings)
    except CannotListen as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if lock is not None:
            lock.release()


def _listen_url(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


def _dashboard_url(settings: Settings) -> str:
    """Where people open the dashboard (an address of any interface: 127.0.0.1)."""
    if settings.public_url:
        return settings.public_url
    if settings.host in ("0.0.0.0", "::", ""):
        return f"http://127.0.0.1:{settings.port}"
    return _listen_url(settings)


def _lock_database(settings: Settings) -> ServerLock | None:
    """On SQLite, the database's server lock (tally.storage.server_lock), or exit with
    who holds it."""
    from tally.storage.backup import sqlite_path
    from tally.storage.server_lock import ServerLock

    if not settings.database_url.lower().startswith("sqlite:"):
        return None
    try:
        path = sqlite_path(settings.database_url)
        return ServerLock.acquire(path, _listen_url(settings))
    except (StorageError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None


async def _prepare(store: Store, settings: Settings) -> int:
    """Bootstrap (if asked for) and count the dashboard's accounts, for the banner."""
    if settings.bootstrap:
        await _bootstrap(store, settings)
    return await store.count_accounts()


def _dashboard_line(settings: Settings, accounts: int) -> str:
    """The banner's line: where the dashboard is, and what to do there now."""
    url = _dashboard_url(settings)
    if accounts:
        return f"The dashboard: {url}/ (sign in there)"
    if settings.signup == "open":
        return f"The dashboard: {url}/ (no account yet: sign up at {url}/signup)"
    why = "by invitation only" if settings.signup == "invite" else "closed"
    return (
        f"The dashboard: {url}/ (no account yet, and sign-up is {why}: create the first "
        "with `tally user create EMAIL`)"
    )


async def _bootstrap(store: Store, settings: Settings) -> None:
    """On an empty database, create a workspace and an Admin token and print them once.

    Nodes of a cluster started at the same moment on an empty database all find it empty:
    the workspace's unique slug decides which one bootstraps (its INSERT commits, the
    others' fail with Conflict), and the others start without printing anything."""
    from tally.web.app import load_secret_key

    if await store.list_workspaces():
        return
    try:
        workspace = await store.create_workspace(workspaces.BOOTSTRAP, "Default workspace")
    except Conflict:
        return  # another node made it a moment ago (and prints its token)
    key = await load_secret_key(store, settings)
    issued = await issue_token(store, key, workspace.id, Permission.ADMIN, "bootstrap admin")
    base = _dashboard_url(settings)
    click.echo(
        "\nA new database: created workspace 'default' and an Admin token.\n"
        "The token is shown only this once; keep it somewhere safe:\n\n"
        f"    {issued.secret}\n\n"
        "Make a first count:\n\n"
        f"    curl -H 'Authorization: Bearer {issued.secret}' {base}/v2/default/first/up\n\n"
        f"The first account that signs up on the dashboard ({base}/) owns 'default'.\n"
    )


# workspaces -----------------------------------------------------------------------


@main.group()
def workspace() -> None:
    """Create and list workspaces."""


@workspace.command("create")
@click.argument("slug")
@click.option("--name", default="", help="A display name (defaults to the slug).")
@click.option("--v1", is_flag=True, help="Open it as a namespace of the V1 legacy endpoints.")
@database_option
def workspace_create(slug: str, name: str, v1: bool, database_url: str | None) -> None:
    """Create a workspace."""
    check_slug(slug)

    async def run(store: Store, _s: Settings) -> Workspace:
        return await store.create_workspace(slug, name or slug, v1_open=v1)

    ws = _with_store(database_url, run)
    click.echo(f"created workspace {ws.slug} (id {ws.id})" + (", open for V1" if v1 else ""))


def _origins_option(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--origins",
        default=None,
        metavar="LIST",
        help=f"Web origins allowed to count anonymously on {what}, comma-separated "
        "(https://example.com, https://*.example.com); 'none' allows any.",
    )


def _parse_origins(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    if text.strip().lower() == "none":
        return ()
    try:
        return rules.parse_origins(text)
    except BadRequest as exc:
        raise click.BadParameter(exc.message, param_hint="--origins") from None


def _origins_text(origins: tuple[str, ...]) -> str:
    return ",".join(origins) if origins else "any"


@workspace.command("update")
@click.argument("slug")
@click.option("--v1/--no-v1", default=None, help="Open (or close) it for the V1 endpoints.")
@_origins_option("its counters (a counter's own list replaces it)")
@click.option(
    "--page-views/--no-page-views",
    default=None,
    help="Count page views (/count.js): anonymous ups from its allowed origins create "
    "counters. Needs allowed origins.",
)
@click.option(
    "--honour-dnt/--no-honour-dnt",
    default=None,
    help="Do not count page views sent with Do-Not-Track or Global Privacy Control.",
)
@database_option
def workspace_update(
    slug: str,
    v1: bool | None,
    origins: str | None,
    page_views: bool | None,
    honour_dnt: bool | None,
    database_url: str | None,
) -> None:
    """Change a workspace's settings (servers apply them within TALLY_TOKEN_CACHE_TTL)."""
    allowed = _parse_origins(origins)

    async def run(store: Store, _s: Settings) -> Workspace:
        ws = await _existing_workspace(store, slug)
        new_origins = ws.origins if allowed is None else allowed
        pages = ws.page_views if page_views is None else page_views
        if pages:
            try:
                rules.check_page_views(new_origins)
            except BadRequest as exc:
                raise click.ClickException(exc.message) from None
        updated = await store.set_workspace_rules(
            ws.id, v1_open=ws.v1_open if v1 is None else v1, origins=new_origins
        )
        if updated is not None and (page_views is not None or honour_dnt is not None):
            updated = await store.set_page_counting(
                ws.id,
                page_views=pages,
                honour_dnt=ws.honour_dnt if honour_dnt is None else honour_dnt,
            )
        if updated is None:
            raise click.ClickException(f"no workspace {slug!r}")
        return updated

    ws = _with_store(database_url, run)
    pages = "off" if not ws.page_views else "on,honour-dnt" if ws.honour_dnt else "on"
    click.echo(
        f"workspace {ws.slug}: v1={'open' if ws.v1_open else 'closed'} "
        f"origins={_origins_text(ws.origins)} pages={pages}"
    )


@workspace.command("list")
@database_option
def workspace_list(database_url: str | None) -> None:
    """List workspaces."""
    for ws in _with_store(database_url, lambda store, _s: store.list_workspaces()):
        click.echo(f"{ws.id}\t{ws.slug}\t{ws.name}\t{_when(ws.created_at)}")


async def _existing_workspace(store: Store, slug: str) -> Workspace:
    ws = await store.get_workspace(slug)
    if ws is None:
        raise click.ClickException(f"no workspace {slug!r}")
    return ws


def check_slug(slug: str) -> str:
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", slug):
        raise click.BadParameter(
            "use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit",
            param_hint="SLUG",
        )
    return slug


# tokens ------------------------------------------------------------------------------


@main.group()
def token() -> None:
    """Create, list and revoke API tokens."""


@token.command("create")
@click.option("--workspace", "slug", required=True, help="The workspace's slug.")
@click.option(
    "--permission",
    type=click.Choice(["read", "write", "admin"]),
    required=True,
    help="read: get, stats. write: also up, down, reset. admin: also create/delete counters.",
)
@click.option("--name", default="", help="What the token is for.")
@click.option(
    "--expires-in-days",
    type=click.IntRange(1, 3650),
    default=None,
    help="Refuse the token after this many days (1 to 3650; default: never).",
)
@database_option
def token_create(
    slug: str, permission: str, name: str, expires_in_days: int | None, database_url: str | None
) -> None:
    """Create a token; it is printed once, alone on the last line."""
    from tally.web.app import load_secret_key

    async def run(store: Store, settings: Settings) -> str:
        ws = await _existing_workspace(store, slug)
        key = await load_secret_key(store, settings)
        expires_at = None if expires_in_days is None else time.time() + expires_in_days * 86400
        issued = await issue_token(
            store, key, ws.id, Permission.parse(permission), name, expires_at
        )
        click.echo(
            f"created {permission} token {issued.token.id} for workspace {slug}; "
            "it is shown only this once:",
            err=False,
        )
        return issued.secret

    click.echo(_with_store(database_url, run))


@token.command("list")
@click.option("--workspace", "slug", required=True)
@database_option
def token_list(slug: str, database_url: str | None) -> None:
    """List a workspace's tokens (their prefixes only)."""

    async def run(store: Store, _s: Settings) -> None:
        ws = await _existing_workspace(store, slug)
        for t in await store.list_tokens(ws.id):
            if t.revoked_at:
                state = f"revoked {_when(t.revoked_at)}"
            elif t.expires_at is not None:
                state = f"{'expired' if t.expires_at <= time.time() else 'expires'} "
                state += _when(t.expires_at)
            else:
                state = "active"
            click.echo(
                f"{t.id}\t{t.prefix}…\t{t.permission.label}\t{state}\t{t.name}\t"
                f"{_when(t.created_at)}"
            )

    _with_store(database_url, run)


@token.command("revoke")
@click.argument("token_id", type=int)
@database_option
def token_revoke(token_id: int, database_url: str | None) -> None:
    """Revoke a token (servers stop accepting it within TALLY_TOKEN_CACHE_TTL)."""
    if not _with_store(database_url, lambda store, _s: store.revoke_token(token_id)):
        raise click.ClickException(f"no active token {token_id}")
    click.echo(f"revoked token {token_id}")


# accounts --------------------------------------------------------------------------


@main.group()
def user() -> None:
    """Create dashboard accounts, confirm their email, reset their password."""


def _accounts(store: Store, settings: Settings) -> Accounts:
    from tally.accounts import Accounts
    from tally.mail import Mailer

    return Accounts(store, Mailer(settings), settings.signup)


@user.command("create")
@click.argument("email")
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    envvar="TALLY_USER_PASSWORD",
    help="The password (prompted for if not given; also TALLY_USER_PASSWORD).",
)
@click.option("--verified", is_flag=True, help="Mark the email as confirmed.")
@database_option
def user_create(email: str, password: str, verified: bool, database_url: str) -> None:
    """Create an account (whatever TALLY_SIGNUP says) with a personal workspace."""

    async def run(store: Store, settings: Settings) -> str:
        try:
            done = await _accounts(store, settings).create_by_operator(email, password, verified)
        except Conflict:
            raise click.ClickException(f"an account with the email {email!r} exists") from None
        state = "confirmed" if done.account.verified else "not confirmed"
        return (
            f"created account {done.account.id} {done.account.email} ({state}), "
            f"workspace {done.workspace_slug}"
        )

    click.echo(_with_store(database_url, run))


@user.command("verify")
@click.argument("email")
@database_option
def user_verify(email: str, database_url: str) -> None:
    """Mark an account's email as confirmed."""
    account = _with_store(database_url, lambda s, st: _accounts(s, st).mark_verified(email))
    click.echo(f"confirmed {account.email}")


@user.command("reset-password")
@click.argument("email")
@click.option(
    "--password",
    prompt="New password",
    hide_input=True,
    confirmation_prompt=True,
    envvar="TALLY_USER_PASSWORD",
    help="The new password (prompted for if not given; also TALLY_USER_PASSWORD).",
)
@database_option
def user_reset_password(email: str, password: str, database_url: str) -> None:
    """Set a new password for an account and end its sessions."""

    async def run(store: Store, settings: Settings) -> str:
        accounts = _accounts(store, settings)
        account = await accounts.by_email(email)
        await accounts.set_password(account, password)
        return f"new password set for {account.email}; its sessions are ended"

    click.echo(_with_store(database_url, run))


# counters --------------------------------------------------------------------------


@main.group()
def counter() -> None:
    """Create and list counters."""


@counter.command("create")
@click.argument("path", metavar="WORKSPACE/NAME")
@click.option("--private", is_flag=True, help="Only tokens of the workspace may use it.")
@click.option("--description", default="")
@database_option
def counter_create(path: str, private: bool, description: str, database_url: str | None) -> None:
    """Create a counter (public unless --private)."""
    slug, sep, name = path.partition("/")
    if not sep:
        raise click.BadParameter("use WORKSPACE/NAME", param_hint="WORKSPACE/NAME")
    try:
        check_name("counter", name)
    except TallyError as exc:
        raise click.BadParameter(exc.message, param_hint="WORKSPACE/NAME") from None

    async def run(store: Store, _s: Settings) -> str:
        ws = await _existing_workspace(store, slug)
        try:
            c = await store.create_counter(ws.id, name, private=private, description=description)
        except Conflict as exc:
            raise click.ClickException(exc.message) from None
        kind = "private" if c.private else "public"
        return f"created {kind} counter {slug}/{c.name} (id {c.id})"

    click.echo(_with_store(database_url, run))


def _bound(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    try:
        return rules.parse_bound(text, what, blank="none")
    except BadRequest as exc:
        raise click.BadParameter(exc.message, param_hint=f"--{what}") from None


@counter.command("update")
@click.argument("path", metavar="WORKSPACE/NAME")
@click.option("--floor", default=None, metavar="N|none", help="The lowest value a down may reach.")
@click.option(
    "--ceiling", default=None, metavar="N|none", help="The highest value an up may reach."
)
@_origins_option("this counter")
@database_option
def counter_update(
    path: str,
    floor: str | None,
    ceiling: str | None,
    origins: str | None,
    database_url: str | None,
) -> None:
    """Change a counter's bounds and allowed origins (servers apply them within
    TALLY_TOKEN_CACHE_TTL). Options left out keep their value. A new or changed bound
    that the counter's committed value already breaks is refused."""
    slug, sep, name = path.partition("/")
    if not sep or not name:
        raise click.BadParameter("use WORKSPACE/NAME", param_hint="WORKSPACE/NAME")
    allowed = _parse_origins(origins)
    new_floor, new_ceiling = _bound(floor, "floor"), _bound(ceiling, "ceiling")

    async def run(store: Store, _s: Settings) -> Counter:
        c = await store.read_counter(slug, name)
        if c is None:
            raise click.ClickException(f"no counter {slug}/{name}")
        lo = c.floor if floor is None else new_floor
        hi = c.ceiling if ceiling is None else new_ceiling
        rules.check_bounds(lo, hi)
        bounds = None if floor is None and ceiling is None else (lo, hi)
        updated = await store.change_counter(c.id, CounterChange(bounds=bounds, origins=allowed))
        if updated is None:
            raise click.ClickException(f"no counter {slug}/{name}")
        return updated

    c = _with_store(database_url, run)
    click.echo(
        f"counter {slug}/{c.name}: floor={'none' if c.floor is None else c.floor} "
        f"ceiling={'none' if c.ceiling is None else c.ceiling} origins={_origins_text(c.origins)}"
    )


@counter.command("unique")
@click.argument("path", metavar="WORKSPACE/NAME")
@click.argument("window", metavar="[WINDOW]", required=False)
@click.option(
    "--by",
    "by",
    type=click.Choice(visitors.UNIQUE_BY),
    help="What a visitor is: its address and User-Agent (address_agent, the default), or "
    "its address alone (address: changing the User-Agent counts nothing more).",
)
@database_option
def counter_unique(path: str, window: str | None, by: str | None, database_url: str | None) -> None:
    """Count an anonymous up once per visitor within WINDOW: 1h to 30d (like 36h or
    7d), on (24h) or off; without WINDOW or --by, show it. Servers apply it within
    TALLY_TOKEN_CACHE_TTL."""
    slug, sep, name = path.partition("/")
    if not sep or not name:
        raise click.BadParameter("use WORKSPACE/NAME", param_hint="WORKSPACE/NAME")
    try:
        seconds = None if window is None else visitors.parse_window(window)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="WINDOW") from None

    async def run(store: Store, _s: Settings) -> Counter:
        c = await store.read_counter(slug, name)
        if c is None or (seconds is None and by is None):
            updated = c
        else:
            change = CounterChange(
                unique_window=seconds,
                unique_by_address=None if by is None else by == "address",
            )
            updated = await store.change_counter(c.id, change)
        if updated is None:
            raise click.ClickException(f"no counter {slug}/{name}")
        return updated

    c = _with_store(database_url, run)
    click.echo(
        f"counter {slug}/{c.name}: unique={visitors.describe_window(c.unique_window)} "
        f"by={rules.unique_by(c.unique_by_address)}"
    )


@counter.command("list")
@click.argument("slug", metavar="WORKSPACE")
@database_option
def counter_list(slug: str, database_url: str | None) -> None:
    """List a workspace's counters with their committed totals."""

    async def run(store: Store, _s: Settings) -> None:
        ws = await _existing_workspace(store, slug)
        for c in await store.list_counters(ws.id):
            kind = "private" if c.private else "public"
            click.echo(
                f"{c.id}\t{c.name}\t{kind}\tup={c.up_count}\tdown={c.down_count}\t"
                f"{_when(c.updated_at)}\t{c.description}"
            )

    _with_store(database_url, run)


# backups ------------------------------------------------------------------------------


@main.command("backup")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace PATH if it exists.")
@database_option
def backup_command(path: Path, force: bool, database_url: str | None) -> None:
    """Copy a live SQLite database to PATH (consistent, while the server counts)."""
    from tally.storage.backup import backup

    settings = _settings(database_url=database_url)
    try:
        version = backup(settings.database_url, path, overwrite=force)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"backed up {settings.database_url} to {path} (schema version {version})")


@main.command("restore")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the database if it has data.")
@database_option
def restore_command(path: Path, force: bool, database_url: str | None) -> None:
    """Put the backup PATH back as the SQLite database (stop its servers first)."""
    from tally.storage.backup import restore

    settings = _settings(database_url=database_url)
    try:
        version = restore(path, settings.database_url, overwrite=force)
    except StorageError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"restored {path} into {settings.database_url} (schema version {version})")


# client commands --------------------------------------------------------------------

url_option = click.option(
    "--url",
    envvar="TALLY_URL",
    default="http://127.0.0.1:8000",
    show_default=True,
    help="Base URL of a Tally (or any CounterAPI V2) server (also TALLY_URL).",
)
token_option = click.option(
    "--token", envvar="TALLY_TOKEN", default=None, help="API token (also TALLY_TOKEN)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print the answer's data.")


def _call(url: str, token: str | None, action: str, path: str, as_json: bool, **args: int) -> None:
    """One client call on WORKSPACE/NAME, printed; an error answer exits 1 with it."""
    import json

    import httpx

    from tally.client import ApiError, Client, Counter

    slug, sep, name = path.partition("/")
    if not sep or not slug or not name:
        raise click.BadParameter("use WORKSPACE/NAME", param_hint="WORKSPACE/NAME")
    try:
        with Client(url, token) as client:
            result = getattr(client, action)(slug, name, **args)
    except ApiError as exc:
        raise click.ClickException(f"{exc.status}: {exc.message}") from None
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise click.ClickException(f"{exc}\n{_url_hint(url)}") from None
    except httpx.HTTPError as exc:
        raise click.ClickException(f"{url}: {exc}") from None
    if as_json or not isinstance(result, Counter):
        click.echo(json.dumps(dict(result.raw), indent=None if as_json else 2))
    else:
        click.echo(
            f"{slug}/{name}: up {result.up_count}, down {result.down_count}, value {result.value}"
        )


def _url_hint(url: str) -> str:
    """Where the server address came from, and how to give another."""
    ctx = click.get_current_context(silent=True)
    source = ctx.get_parameter_source("url") if ctx is not None else None
    if source == click.core.ParameterSource.ENVIRONMENT:
        return "Is Tally running there? The address comes from TALLY_URL (--url overrides it)."
    if source == click.core.ParameterSource.COMMANDLINE:
        return "Is Tally running there? The address comes from --url (else TALLY_URL)."
    return (
        f"{url} is the default address: point to your server with --url or TALLY_URL "
        "(e.g. --url http://127.0.0.1:9000)."
    )


def _client_command(action: str, doc: str) -> None:
    @main.command(action, help=doc)
    @click.argument("path", metavar="WORKSPACE/NAME")
    @url_option
    @token_option
    @json_option
    def command(path: str, url: str, token: str | None, as_json: bool) -> None:
        _call(url, token, action, path, as_json)


by_option = click.option(
    "--by",
    type=click.IntRange(1, MAX_BY),
    default=1,
    show_default=True,
    help="Count N at once (more than 1 needs a Write token of the workspace).",
)


def _count_command(action: str, doc: str) -> None:
    @main.command(action, help=doc)
    @click.argument("path", metavar="WORKSPACE/NAME")
    @by_option
    @url_option
    @token_option
    @json_option
    def command(path: str, by: int, url: str, token: str | None, as_json: bool) -> None:
        _call(url, token, action, path, as_json, by=by)


_count_command("up", "Count up on a counter of a running server (one, or --by N).")
_count_command("down", "Count down on a counter of a running server (one, or --by N).")
_client_command("get", "Show a counter's totals.")
_client_command("stats", "Show a counter's stats (JSON).")
_client_command("reset", "Set a counter's totals back to zero (needs a Write token).")


@main.command("set")
@click.argument("path", metavar="WORKSPACE/NAME")
@click.option("--up", "up_count", type=click.IntRange(0, MAX_SET), required=True, help="up_count")
@click.option("--down", "down_count", type=click.IntRange(0, MAX_SET), default=0, show_default=True)
@url_option
@token_option
@json_option
def set_command(
    path: str, up_count: int, down_count: int, url: str, token: str | None, as_json: bool
) -> None:
    """Set a counter's totals (needs an Admin token; recorded in its history)."""
    _call(url, token, "set", path, as_json, up_count=up_count, down_count=down_count)


# export / import ------------------------------------------------------------------


@main.command("export")
@click.option(
    "--workspace",
    "slugs",
    multiple=True,
    help="Export this workspace (repeatable; default: every workspace).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["jsonl", "csv"]),
    default="jsonl",
    show_default=True,
    help="jsonl: counters, settings and hourly history; csv: totals and settings only.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, allow_dash=True),
    default="-",
    help="The file to write (default: standard output).",
)
@database_option
def export_command(slugs: tuple[str, ...], fmt: str, output: str, database_url: str | None) -> None:
    """Export counters (docs/export.md has the format). Progress goes to stderr."""
    from tally.exports import export_csv, export_jsonl

    async def run(store: Store, _s: Settings) -> int:
        if slugs:
            workspaces = [await _existing_workspace(store, slug) for slug in slugs]
        else:
            workspaces = await store.list_workspaces()
        total = sum([await store.count_counters(ws.id) for ws in workspaces])
        chunks = export_csv if fmt == "csv" else export_jsonl
        with (
            click.open_file(output, "wb") as out,
            click.progressbar(length=total, label="exporting", file=sys.stderr) as bar,
        ):
            async for chunk in chunks(store, workspaces, bar.update):
                out.write(chunk)
        return total

    total = _with_store(database_url, run)
    click.echo(f"exported {total} counters", err=True)


@main.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--check", is_flag=True, help="Only validate the file; write nothing.")
@database_option
def import_command(path: Path, check: bool, database_url: str | None) -> None:
    """Import an export file: validated whole first, then every counter of the file is set
    to the file's values (running it again changes nothing). Counters not in the file
    are left alone."""
    from tally.imports import InvalidFile, import_file, validate

    try:
        summary = validate(path)
    except InvalidFile as exc:
        raise click.ClickException(
            "the file is not valid, nothing was written:\n  " + "\n  ".join(exc.errors)
        ) from None
    click.echo(
        f"{path}: valid, {len(summary.workspaces)} workspaces, {summary.counters} counters, "
        f"{summary.buckets} hourly buckets",
        err=True,
    )
    if check:
        return

    async def run(store: Store, _s: Settings) -> list[str]:
        with click.progressbar(length=summary.counters, label="importing", file=sys.stderr) as bar:
            report = await import_file(store, path, summary, bar.update)
        return report.lines()

    for line in _with_store(database_url, run):
        click.echo(line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
