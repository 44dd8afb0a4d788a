"""Shared fixtures: a store per backend, a started app, an in-process HTTP client."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher
from psycopg import sql
from services import TcpProxy, require_redis
from site_client import SiteClient
from smtp_inbox import Inbox, smtp_server

from tally import passwords
from tally.auth import issue_token
from tally.config import Settings
from tally.models import Counter, Permission, Workspace
from tally.storage import Store, store_from_url
from tally.web.app import App, create_app, load_secret_key

T = TypeVar("T")


# Production hashes dashboard passwords with argon2id at the library's recommended cost
# (64 MiB, 3 passes: about 0.1 s a hash, several times that on a loaded 2-core CI machine),
# which the site tests pay at every sign-up and sign-in. In-process tests hash with argon2id
# at a low cost instead: the same code paths, real hashes and checks, only cheaper.
# tests/test_site_accounts.py::test_passwords_use_argon2id_at_the_recommended_cost checks
# what production uses; tally serve (tests/e2e) is never patched.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passwords, "_hasher", CHEAP_HASHER)
    monkeypatch.setattr(passwords, "_dummy", _CHEAP_DUMMY_HASH)


_CHEAP_DUMMY_HASH = CHEAP_HASHER.hash("tally: no such account")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'tally.db'}"


POSTGRES_URL = os.environ.get(
    "TALLY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def with_query(url: str, **params: str) -> str:
    """`url` with `params` added to its query string."""
    parts = urlsplit(url)
    extra = "&".join(f"{k}={v}" for k, v in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """TALLY_TEST_POSTGRES_URL, once the server answers there; the tests that need it are
    skipped if it does not, except under CI=true, where they fail: CI never skips them."""
    try:
        with psycopg.connect(POSTGRES_URL, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        where = urlsplit(POSTGRES_URL)
        reason = (
            f"PostgreSQL at {where.hostname}:{where.port or 5432}{where.path} is not reachable "
            f"(set TALLY_TEST_POSTGRES_URL): {' '.join(str(exc).split())}"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_base_url: str) -> Iterator[str]:
    """A URL whose tables live in a schema of this test's own, dropped at teardown."""
    schema = f"tally_test_{secrets.token_hex(6)}"
    yield with_query(postgres_base_url, schema=schema)
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# Schemas of this session that hold every migration and no data, for `migrated_postgres_url`:
# migrating a schema costs more than a whole API test on PostgreSQL, and most tests only
# need their own empty, current schema, not a new one.


def _in_thread(coro: Coroutine[object, object, T]) -> T:
    """Run `coro` on an event loop of its own (a session fixture may be set up while a
    test's loop runs)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def _schema_fingerprint(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> list[str]:
    """Everything a test could change in a schema's definition (relations and their
    privileges, columns, defaults, constraints, indexes, functions, triggers, types) and
    its schema version, with the schema's name taken out."""
    rows = conn.execute(_FINGERPRINT, {"schema": schema}).fetchall()
    meta = conn.execute(
        sql.SQL("SELECT 'meta', key, value FROM {}.tally_meta WHERE key = 'schema_version'").format(
            sql.Identifier(schema)
        )
    ).fetchall()
    return [" ".join(str(v) for v in row).replace(schema, "@") for row in [*rows, *meta]]


_FINGERPRINT = """
WITH rel AS (
    SELECT oid, relname, relkind, relacl FROM pg_class
    WHERE relnamespace = %(schema)s::regnamespace
)
SELECT 'rel', relname, relkind::text || coalesce(relacl::text, '') FROM rel
UNION ALL
SELECT 'col', r.relname || '.' || a.attname, format_type(a.atttypid, a.atttypmod) || ' '
       || a.attnotnull::text || ' ' || a.attidentity::text || ' '
       || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
  FROM rel r JOIN pg_attribute a ON a.attrelid = r.oid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE r.relkind IN ('r', 'p', 'v', 'm', 'f') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'con', conname, pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'idx', r.relname, pg_get_indexdef(r.oid) FROM rel r WHERE r.relkind IN ('i', 'I')
UNION ALL
SELECT 'fn', p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')',
       md5(p.prosrc) || ' ' || coalesce(array_to_string(p.proconfig, ','), '')
  FROM pg_proc p WHERE p.pronamespace = %(schema)s::regnamespace
UNION ALL
SELECT 'trg', t.tgname, pg_get_triggerdef(t.oid)
  FROM rel r JOIN pg_trigger t ON t.tgrelid = r.oid WHERE NOT t.tgisinternal
UNION ALL
SELECT 'typ', typname, typtype::text FROM pg_type
  WHERE typnamespace = %(schema)s::regnamespace
ORDER BY 1, 2, 3
"""


@dataclass
class _SchemaPool:
    """Migrated, empty schemas free for the next test, and what one looks like."""

    base_url: str
    reference: list[str]
    tables: list[str]  # but tally_meta; every table before the ones it references
    free: list[str]

    def recycle(self, schema: str) -> None:
        """Put `schema` back in the pool, emptied, if its definition is still the freshly
        migrated one; drop it otherwise (or if emptying it fails). DELETE, not TRUNCATE:
        a TRUNCATE of every table costs as much as migrating a new schema."""
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            try:
                conn.execute("SET lock_timeout = '5s'")
                if _schema_fingerprint(conn, schema) != self.reference:
                    raise LookupError(schema)  # changed by the test: never reused
                # one round trip: a script of statements, sent as one simple query
                empty = [
                    sql.SQL("DELETE FROM {}").format(sql.Identifier(schema, table))
                    for table in self.tables
                ]
                empty.append(
                    sql.SQL("DELETE FROM {} WHERE key <> 'schema_version'").format(
                        sql.Identifier(schema, "tally_meta")
                    )
                )
                empty.append(
                    sql.SQL(
                        "SELECT setval(format('%I.%I', schemaname, sequencename), "
                        "start_value, false) FROM pg_sequences WHERE schemaname = {}"
                    ).format(sql.Literal(schema))
                )
                script = sql.SQL("BEGIN; {}; COMMIT").format(sql.SQL("; ").join(empty))
                conn.execute(script.as_string(conn).encode())
            except (psycopg.Error, LookupError):
                conn.execute("ROLLBACK")  # if the script failed inside its transaction
                conn.execute("RESET lock_timeout")
                _drop_schema(conn, schema)
                return
        self.free.append(schema)


def _deletion_order(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> list[str] | None:
    """The schema's tables but tally_meta, each before every table it references; None if
    the references make a cycle."""
    tables = [
        str(name)
        for (name,) in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'tally_meta' "
            "ORDER BY tablename",
            (schema,),
        ).fetchall()
    ]
    refs = conn.execute(
        "SELECT c.relname, p.relname FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
        "WHERE k.contype = 'f' AND k.connamespace = %s::regnamespace AND c.oid <> p.oid",
        (schema,),
    ).fetchall()
    referencing = {t: {str(c) for c, p in refs if p == t} for t in tables}
    order: list[str] = []
    while len(order) < len(tables):
        ready = [t for t in tables if t not in order and referencing[t] <= set(order)]
        if not ready:
            return None
        order.extend(ready)
    return order


def _drop_schema(conn: psycopg.Connection[tuple[object, ...]], schema: str) -> None:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="session")
def _schema_pool(postgres_base_url: str) -> Iterator[_SchemaPool | None]:
    """The pool, its first schema migrated by PostgresStore.open; None (every test gets a
    new schema) if the migrations leave any data besides the schema version, or tables
    that reference each other in a cycle."""
    from tally.storage.postgres import PostgresStore

    schema = f"tally_test_{secrets.token_hex(6)}"
    store = PostgresStore.from_url(with_query(postgres_base_url, schema=schema), node="pool")

    async def migrate() -> None:
        await store.open()
        await store.close()

    _in_thread(migrate())
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        tables = _deletion_order(conn, schema)
        seeded = tables is None or any(
            conn.execute(
                sql.SQL("SELECT EXISTS (SELECT FROM {})").format(sql.Identifier(schema, table))
            ).fetchone()
            != (False,)
            for table in tables
        )
        reference = _schema_fingerprint(conn, schema)
    pool = _SchemaPool(postgres_base_url, reference, tables or [], [schema])
    yield None if seeded else pool
    with psycopg.connect(postgres_base_url, autocommit=True) as conn:
        for name in pool.free if not seeded else [schema]:
            _drop_schema(conn, name)


@pytest.fixture
def migrated_postgres_url(
    postgres_base_url: str, _schema_pool: _SchemaPool | None
) -> Iterator[str]:
    """Like `postgres_url` (a schema no other test uses while this one runs), but the
    schema may be one an earlier test used: migrated to the latest version, every table
    emptied (identities restarted), tally_meta holding only the schema version. For tests
    that open the store (the app) and do not care how the schema came to be; a test of
    migrations themselves takes `postgres_url` or `store_url`. A schema the test changed
    the definition of is dropped, never reused."""
    if _schema_pool is None or not _schema_pool.free:
        schema = f"tally_test_{secrets.token_hex(6)}"
    else:
        schema = _schema_pool.free.pop()
    yield with_query(postgres_base_url, schema=schema)
    if _schema_pool is not None:
        _schema_pool.recycle(schema)
    else:
        with psycopg.connect(postgres_base_url, autocommit=True) as conn:
            _drop_schema(conn, schema)


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgresql", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest) -> str:
    """The database URL of each backend the contract suite runs against."""
    fixture = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = store_from_url(store_url, node="test-node")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.sqlite),
        pytest.param("postgresql+redis", marks=pytest.mark.postgres),
    ]
)
def settings(request: pytest.FixtureRequest) -> Settings:
    """App settings for each configuration: embedded SQLite, and the scale-out one
    (PostgreSQL in a schema of the test's own, see `migrated_postgres_url`, Redis under a
    key prefix of its own).
    The rate limit is on; tests of it lower it with `replace`."""
    if request.param == "sqlite":
        return Settings(database_url=request.getfixturevalue("sqlite_url"))
    # a test that takes `postgres_url` too has always shared its schema with the app
    database = "postgres_url" if "postgres_url" in request.fixturenames else "migrated_postgres_url"
    return Settings(
        database_url=request.getfixturevalue(database),
        redis_url=require_redis(),
        redis_prefix=request.getfixturevalue("redis_prefix"),
    )


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted at teardown."""
    prefix = f"tally-test-{secrets.token_hex(6)}:"
    yield prefix
    client = aioredis.Redis.from_url(require_redis())
    async for key in client.scan_iter(match=f"{prefix}*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture
async def redis_proxy() -> AsyncIterator[TcpProxy]:
    """A proxy to the test Redis that a test can cut and restore (cut at teardown)."""
    target = urlsplit(require_redis())
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    yield proxy
    await proxy.cut()


@dataclass
class Harness:
    """A started app, an HTTP client on it, and shortcuts to set up data."""

    app: App
    client: httpx.AsyncClient

    @property
    def store(self) -> Store:
        assert self.app.services is not None
        return self.app.services.store

    async def mail_sent(self) -> None:
        """Wait until the website's email work queued so far is done (it is off the
        request: tally.mail.Outbox)."""
        assert self.app.services is not None
        assert self.app.services.outbox is not None
        await self.app.services.outbox.idle()

    async def workspace(self, slug: str = "ws") -> Workspace:
        return await self.store.create_workspace(slug, slug)

    async def workspace_id(self, slug: str) -> int:
        ws = await self.store.get_workspace(slug)
        assert ws is not None
        return ws.id

    async def token(self, workspace: Workspace, permission: Permission) -> str:
        key = await load_secret_key(self.store, self.app.settings)
        return (await issue_token(self.store, key, workspace.id, permission)).secret

    async def counter(
        self, workspace: Workspace, name: str, *, private: bool = False, description: str = ""
    ) -> Counter:
        return await self.store.create_counter(
            workspace.id, name, private=private, description=description
        )

    async def get(self, path: str, token: str | None = None, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.get(path, headers=headers, **kw)  # type: ignore[arg-type]


HarnessFactory = Callable[..., Awaitable[Harness]]


@pytest.fixture
async def make_harness(settings: Settings) -> AsyncIterator[HarnessFactory]:
    """Start apps with `await make_harness(**setting_overrides)`; all stop at teardown."""
    apps: list[tuple[App, httpx.AsyncClient]] = []

    async def make(**overrides: object) -> Harness:
        chosen = replace(settings, **overrides)  # type: ignore[arg-type]
        # two xdist workers (or two runs of the suite) share one Redis: an app on Redis
        # keeps its keys under the test's own prefix (the `redis_prefix` fixture)
        assert not chosen.redis_url or chosen.redis_prefix != Settings().redis_prefix, (
            "an app on Redis needs redis_prefix=<the redis_prefix fixture>"
        )
        app = create_app(chosen)
        await app.startup()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=("198.51.100.7", 40000)),
            base_url="http://tally.test",
        )
        apps.append((app, client))
        return Harness(app, client)

    yield make
    for app, client in reversed(apps):
        await client.aclose()
        await app.shutdown()


@pytest.fixture
async def harness(make_harness: HarnessFactory) -> Harness:
    return await make_harness()


BrowserFactory = Callable[..., Awaitable[SiteClient]]


@pytest.fixture
async def make_browser() -> AsyncIterator[BrowserFactory]:
    """`await make_browser(harness)`: a SiteClient with a cookie jar of its own (one person's
    browser) on the harness's app; all closed at teardown."""
    clients: list[httpx.AsyncClient] = []

    async def make(harness: Harness, ip: str = "198.51.100.7") -> SiteClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=harness.app, client=(ip, 40000)),
            base_url="http://tally.test",
        )
        clients.append(client)
        return SiteClient(client)

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    """A real SMTP server on 127.0.0.1 (tests/smtp_inbox.py): its inbox and port."""
    with smtp_server() as server:
        yield server
