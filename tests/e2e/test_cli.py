"""The admin CLI (`tally workspace|token|counter ...`) on a real database, checked against a
running server where it matters."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from .conftest import ServerFactory
from .server import TOKEN_RE, TallyCli, TallyServer

REVOKE_WITHIN = 1.5  # TALLY_TOKEN_CACHE_TTL is 1 s by default


def _http(server: TallyServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, trust_env=False, timeout=5)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rows(cli: TallyCli, *args: str) -> list[list[str]]:
    return [line.split("\t") for line in cli.run(*args).stdout.splitlines()]


def _assert_fails(cli: TallyCli, *args: str, says: str) -> str:
    proc = cli.run(*args, check=False)
    assert proc.returncode != 0, f"tally {' '.join(args)} succeeded:\n{proc.stdout}"
    assert says in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert not TOKEN_RE.search(proc.stdout + proc.stderr), proc.stdout
    return proc.stderr


# workspaces ---------------------------------------------------------------------------


def test_workspace_create_and_list(cli: TallyCli) -> None:
    """workspace create prints the new workspace; list shows all of them, sorted by slug."""
    assert cli.run("workspace", "list").stdout == ""
    out = cli.run("workspace", "create", "zeta", "--name", "Zeta Corp").stdout
    assert "created workspace zeta" in out
    cli.workspace("acme")
    rows = _rows(cli, "workspace", "list")
    assert [(r[1], r[2]) for r in rows] == [("acme", "acme"), ("zeta", "Zeta Corp")]


def test_workspace_create_duplicate_fails_clearly(cli: TallyCli) -> None:
    """Creating an existing workspace again exits non-zero with "already exists"."""
    cli.workspace("acme")
    _assert_fails(cli, "workspace", "create", "acme", says="already exists")
    assert [r[1] for r in _rows(cli, "workspace", "list")] == ["acme"]


@pytest.mark.parametrize("slug", ["Bad Slug", "UPPER", "_lead", "a" * 65, "dot.ted"])
def test_workspace_create_bad_slug_fails_clearly(cli: TallyCli, slug: str) -> None:
    """A slug that is not 1-64 lowercase letters/digits/-/_ is refused; nothing is created."""
    _assert_fails(cli, "workspace", "create", slug, says="lowercase letters")
    assert cli.run("workspace", "list").stdout == ""


# tokens ---------------------------------------------------------------------------------


def test_token_create_prints_the_token_alone_on_the_last_line(cli: TallyCli) -> None:
    """token create: the token, and nothing else, is the last stdout line; nothing on stderr."""
    cli.workspace("acme")
    proc = cli.run("token", "create", "--workspace", "acme", "--permission", "read")
    lines = proc.stdout.splitlines()
    assert len(lines) >= 2, proc.stdout
    assert TOKEN_RE.fullmatch(lines[-1]), proc.stdout
    assert not any(TOKEN_RE.search(line) for line in lines[:-1]), proc.stdout
    assert proc.stderr == ""


def test_tokens_work_against_the_server_with_their_permission(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """A read token may get a private counter but not up it (403); a write token may."""
    cli.workspace("acme")
    cli.counter("acme/secret", private=True)
    read = cli.token("acme", "read")
    write = cli.token("acme", "write")
    server = make_server(args=["--no-bootstrap"])
    with _http(server) as http:
        r = http.get("/v2/acme/secret", headers=_auth(read))
        assert r.status_code == 200, r.text
        r = http.get("/v2/acme/secret/up", headers=_auth(read))
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "403"
        r = http.get("/v2/acme/secret/up", headers=_auth(write))
        assert r.status_code == 200, r.text
        r = http.get("/v2/acme/secret/stats", headers=_auth(read))
        assert r.status_code == 200, r.text
        assert r.json()["data"]["up_count"] == 1


def test_token_list_shows_the_prefix_never_the_token(cli: TallyCli) -> None:
    """token list shows each token's prefix and permission, never the full secret."""
    cli.workspace("acme")
    read = cli.token("acme", "read")
    admin = cli.token("acme", "admin")
    out = cli.run("token", "list", "--workspace", "acme").stdout
    assert read not in out
    assert admin not in out
    assert not TOKEN_RE.search(out), out
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == 2, out
    assert [(r[1].rstrip("…"), r[2], r[3]) for r in rows] == [
        (read[:12], "read", "active"),
        (admin[:12], "admin", "active"),
    ]


def test_token_revoke_is_refused_by_the_server_within_the_cache_ttl(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """After token revoke, the running server answers 401 within ~1.5 s (1 s token cache)."""
    cli.workspace("acme")
    cli.counter("acme/hits")
    token = cli.token("acme", "write")
    token_id = _rows(cli, "token", "list", "--workspace", "acme")[0][0]
    server = make_server(args=["--no-bootstrap"])
    with _http(server) as http:
        assert http.get("/v2/acme/hits/up", headers=_auth(token)).status_code == 200

        assert f"revoked token {token_id}" in cli.run("token", "revoke", token_id).stdout
        revoked_at = time.monotonic()
        status = 200
        for _ in range(200):  # bounded in count and in time (3 x the promise)
            status = http.get("/v2/acme/hits/up", headers=_auth(token)).status_code
            if status != 200 or time.monotonic() - revoked_at > 3 * REVOKE_WITHIN:
                break
            time.sleep(0.02)
        waited = time.monotonic() - revoked_at
        print(f"\nrevoked token refused after {waited:.2f} s")
        assert status == 401, f"still {status} {waited:.2f} s after the revoke"
        assert waited <= REVOKE_WITHIN, f"the revoked token worked for {waited:.2f} s"
        assert http.get("/v2/acme/hits").json()["data"]["up_count"] >= 1
    rows = _rows(cli, "token", "list", "--workspace", "acme")
    assert rows[0][3].startswith("revoked"), rows
    _assert_fails(cli, "token", "revoke", token_id, says="no active token")
    _assert_fails(cli, "token", "revoke", "999", says="no active token")


def test_token_create_bad_input_fails_clearly(cli: TallyCli) -> None:
    """token create for an unknown workspace or permission exits non-zero, issuing nothing."""
    cli.workspace("acme")
    _assert_fails(
        cli, "token", "create", "--workspace", "nope", "--permission", "read", says="nope"
    )
    _assert_fails(
        cli, "token", "create", "--workspace", "acme", "--permission", "root", says="root"
    )
    for days in ("0", "3651", "soon"):
        _assert_fails(
            cli, "token", "create", "--workspace", "acme", "--permission", "read",
            "--expires-in-days", days, says="expires-in-days",
        )  # fmt: skip
    assert cli.run("token", "list", "--workspace", "acme").stdout == ""
    _assert_fails(cli, "token", "list", "--workspace", "nope", says="no workspace 'nope'")


def test_token_create_with_an_expiry(make_server: ServerFactory, cli: TallyCli) -> None:
    """--expires-in-days N: the token works until then, and the list says when it expires."""
    cli.workspace("acme")
    cli.counter("acme/secret", private=True)
    proc = cli.run(
        "token", "create", "--workspace", "acme", "--permission", "read", "--expires-in-days", "7"
    )
    token = proc.stdout.splitlines()[-1]
    assert TOKEN_RE.fullmatch(token), proc.stdout
    [row] = _rows(cli, "token", "list", "--workspace", "acme")
    assert row[3].startswith("expires "), row
    server = make_server(args=["--no-bootstrap"])
    with _http(server) as http:
        assert http.get("/v2/acme/secret", headers=_auth(token)).status_code == 200


# counters -----------------------------------------------------------------------------


def test_counter_create_private_is_hidden_from_anonymous(
    make_server: ServerFactory, cli: TallyCli
) -> None:
    """A --private counter answers 404 to anonymous requests; a public one answers 200."""
    cli.workspace("acme")
    out = cli.run("counter", "create", "acme/hidden", "--private").stdout
    assert "created private counter acme/hidden" in out
    out = cli.run("counter", "create", "acme/shown").stdout
    assert "created public counter acme/shown" in out
    read = cli.token("acme", "read")
    server = make_server(args=["--no-bootstrap"])
    with _http(server) as http:
        for action in ("", "/up", "/stats"):
            r = http.get(f"/v2/acme/hidden{action}")
            assert r.status_code == 404, (action, r.text)
        assert http.get("/v2/acme/hidden", headers=_auth(read)).status_code == 200
        assert http.get("/v2/acme/shown").status_code == 200
    rows = _rows(cli, "counter", "list", "acme")
    assert [(r[1], r[2]) for r in rows] == [("hidden", "private"), ("shown", "public")]


def test_counter_list_shows_the_counts(make_server: ServerFactory, cli: TallyCli) -> None:
    """counter list shows each counter's committed up and down totals."""
    cli.workspace("acme")
    cli.counter("acme/a")
    cli.counter("acme/b", private=True)
    write = cli.token("acme", "write")
    server = make_server(args=["--no-bootstrap"])  # commit mode: answered = committed
    with _http(server) as http:
        for path in ["a/up"] * 3 + ["a/down"] + ["b/down"] * 2:
            assert http.get(f"/v2/acme/{path}", headers=_auth(write)).status_code == 200
    rows = _rows(cli, "counter", "list", "acme")
    assert [(r[1], r[2], r[3], r[4]) for r in rows] == [
        ("a", "public", "up=3", "down=1"),
        ("b", "private", "up=0", "down=2"),
    ]


def test_counter_create_duplicate_fails_clearly(cli: TallyCli) -> None:
    """Creating a counter twice exits non-zero with "already exists"."""
    cli.workspace("acme")
    cli.counter("acme/a")
    _assert_fails(cli, "counter", "create", "acme/a", says="already exists")
    assert len(_rows(cli, "counter", "list", "acme")) == 1


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("nope/a", "no workspace 'nope'"),
        ("acme/a/b", "'/'"),
        ("acme", "WORKSPACE/NAME"),
        ("acme/", "empty"),
        ("acme/ ", "must not begin or end with a space"),
        ("acme/visits ", "must not begin or end with a space"),
        ("acme/\u200b", "must have a visible character"),
    ],
    ids=[
        "unknown-workspace",
        "slash-in-name",
        "no-name",
        "empty-name",
        "blank-name",
        "trailing-space",
        "invisible-name",
    ],
)
def test_counter_create_bad_input_fails_clearly(cli: TallyCli, path: str, says: str) -> None:
    """counter create with an unknown workspace or a bad name exits non-zero, creating nothing."""
    cli.workspace("acme")
    _assert_fails(cli, "counter", "create", path, says=says)
    assert cli.run("counter", "list", "acme").stdout == ""
    assert [r[1] for r in _rows(cli, "workspace", "list")] == ["acme"]
    _assert_fails(cli, "counter", "list", "nope", says="no workspace 'nope'")


# accounts -----------------------------------------------------------------------------


def test_user_create_verify_and_reset_password(cli: TallyCli, make_server: ServerFactory) -> None:
    """`tally user create|verify|reset-password` manage dashboard accounts beside a running
    server; the first account owns the bootstrap workspace `default`; the server's start
    message prints the dashboard's URL."""
    server = make_server()
    assert f"The dashboard: {server.base_url}/" in server.stdout()
    out = cli.run("user", "create", "Ops@Example.com", "--password", "operator pass 1").stdout
    assert "created account" in out
    assert "not confirmed" in out
    assert "workspace ops" in out
    assert "confirmed Ops@Example.com" in cli.run("user", "verify", "ops@example.com").stdout
    _assert_fails(
        cli, "user", "create", "ops@example.com", "--password", "a good passphrase", says="exists"
    )
    _assert_fails(
        cli, "user", "create", "not-an-email", "--password", "a good passphrase", says="valid email"
    )
    _assert_fails(
        cli, "user", "reset-password", "ops@example.com", "--password", "short", says="at least"
    )
    _assert_fails(
        cli,
        "user",
        "reset-password",
        "nobody@example.com",
        "--password",
        "x" * 12,
        says="no account",
    )
    reset = cli.run("user", "reset-password", "ops@example.com", "--password", "new operator pass")
    assert "new password set" in reset.stdout
    with _http(server) as http:
        login = http.get("/login")
        csrf = login.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        r = http.post(
            "/login",
            data={"email": "ops@example.com", "password": "new operator pass", "csrf_token": csrf},
        )
        assert r.status_code == 303, r.text
        home = http.get("/")
        assert home.status_code == 200
        assert "/w/default" in home.text
        assert "/w/ops" in home.text


# counter rules and V1 (issue 12) --------------------------------------------------------


def test_counter_update_sets_bounds_and_origins(make_server: ServerFactory, cli: TallyCli) -> None:
    """counter update sets a floor, a ceiling and allowed origins, keeps what is not given,
    clears with none; a running server applies them (within the cache TTL)."""
    cli.workspace("acme")
    cli.counter("acme/stock")
    out = cli.run("counter", "update", "acme/stock", "--floor", "0", "--ceiling", "2").stdout
    assert out.strip() == "counter acme/stock: floor=0 ceiling=2 origins=any"
    out = cli.run(
        "counter",
        "update",
        "acme/stock",
        "--origins",
        "https://Shop.example/, http://localhost:8080",
    ).stdout
    assert out.strip() == (
        "counter acme/stock: floor=0 ceiling=2 origins=https://shop.example,http://localhost:8080"
    )
    server = make_server(args=["--no-bootstrap"])
    shop = {"Origin": "https://shop.example"}
    with _http(server) as http:
        assert http.get("/v2/acme/stock/up?by=1", headers=shop).status_code == 200
        assert http.get("/v2/acme/stock/up", headers=shop).status_code == 200
        assert http.get("/v2/acme/stock/up", headers=shop).status_code == 409
        assert http.get("/v2/acme/stock/down").status_code == 403
        cli.run("counter", "update", "acme/stock", "--ceiling", "none", "--origins", "none")
        time.sleep(REVOKE_WITHIN)
        r = http.get("/v2/acme/stock/up")
        assert r.status_code == 200, r.text
        assert r.json()["data"]["value"] == 3


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--floor", "x"], "whole number"),
        (["--floor", "5", "--ceiling", "4"], "above the ceiling"),
        (["--origins", "example.com"], "not an origin"),
        (["--origins", "https://example.com/page"], "not an origin"),
    ],
)
def test_counter_update_refuses_bad_values(cli: TallyCli, args: list[str], says: str) -> None:
    """Bad bounds or origins exit non-zero with a clear message and change nothing."""
    cli.workspace("acme")
    cli.counter("acme/c")
    _assert_fails(cli, "counter", "update", "acme/c", *args, says=says)
    out = cli.run("counter", "update", "acme/c").stdout
    assert out.strip() == "counter acme/c: floor=none ceiling=none origins=any"
    _assert_fails(cli, "counter", "update", "acme/missing", "--floor", "1", says="no counter")


STOCK_AT_3 = "\n".join(
    (
        '{"tally_export":2,"exported_at":"2026-12-01T00:00:00Z"}',
        '{"workspace":{"slug":"acme","name":"acme","created_at":1.0,"v1_open":false,'
        '"allowed_origins":[]}}',
        '{"counter":{"workspace":"acme","name":"stock","description":"","private":false,'
        '"up_count":5,"down_count":2,"created_at":1.0,"updated_at":2.0,"floor":null,'
        '"ceiling":null,"allowed_origins":[],"hours":[]}}',
        '{"end":{"workspaces":1,"counters":1,"buckets":0}}',
        "",
    )
)


@pytest.mark.parametrize(
    "backend",
    [pytest.param("sqlite", marks=pytest.mark.sqlite),
     pytest.param("postgresql", marks=pytest.mark.postgres)],
)  # fmt: skip
def test_counter_update_refuses_a_new_bound_the_value_breaks(
    request: pytest.FixtureRequest, tmp_path: Path, cli: TallyCli, backend: str
) -> None:
    """As in the dashboard and the management API: a new or changed bound that the
    counter's committed value (3, imported) breaks is refused, naming the value, and
    changes nothing; a bound equal to the value is fine; an unchanged bound is not
    checked again."""
    if backend == "postgresql":
        cli = TallyCli(request.getfixturevalue("postgres_url"))
    (tmp_path / "stock.jsonl").write_text(STOCK_AT_3)
    cli.run("import", str(tmp_path / "stock.jsonl"))
    says = "the counter's value is 3, above a ceiling of 2"
    _assert_fails(cli, "counter", "update", "acme/stock", "--ceiling", "2", says=says)
    says = "the counter's value is 3, below a floor of 4"
    _assert_fails(
        cli, "counter", "update", "acme/stock", "--floor", "4", "--origins", "https://a.example",
        says=says,
    )  # fmt: skip
    out = cli.run("counter", "update", "acme/stock").stdout
    assert out.strip() == "counter acme/stock: floor=none ceiling=none origins=any"
    out = cli.run("counter", "update", "acme/stock", "--floor", "3", "--ceiling", "3").stdout
    assert out.strip() == "counter acme/stock: floor=3 ceiling=3 origins=any"
    (tmp_path / "stock.jsonl").write_text(
        STOCK_AT_3.replace('"ceiling":null', '"ceiling":1').replace('"floor":null', '"floor":0')
    )
    cli.run("import", str(tmp_path / "stock.jsonl"))  # a ceiling below the value, kept
    out = cli.run(
        "counter", "update", "acme/stock", "--floor", "-1", "--origins", "https://a.example"
    ).stdout
    assert out.strip() == "counter acme/stock: floor=-1 ceiling=1 origins=https://a.example"
    _assert_fails(cli, "counter", "update", "acme/stock", "--ceiling", "2", says="above a ceiling")


def test_workspace_v1_flag_and_origins(make_server: ServerFactory, cli: TallyCli) -> None:
    """workspace create --v1 and workspace update --v1/--no-v1 open and close a V1
    namespace; --origins sets the workspace's allowed origins."""
    out = cli.run("workspace", "create", "site", "--v1").stdout
    assert "open for V1" in out
    cli.workspace("closed")
    out = cli.run("workspace", "update", "site", "--origins", "https://site.example").stdout
    assert out.strip() == "workspace site: v1=open origins=https://site.example pages=off"
    _assert_fails(cli, "workspace", "update", "closed", "--page-views", says="allowed origins")
    out = cli.run("workspace", "update", "site", "--page-views", "--honour-dnt").stdout
    assert out.strip().endswith("origins=https://site.example pages=on,honour-dnt")
    server = make_server(args=["--no-bootstrap"])
    with _http(server) as http:
        r = http.get("/v1/site/hits/up", headers={"Origin": "https://site.example"})
        assert r.status_code == 200, r.text
        assert r.json()["count"] == 1
        assert http.get("/v1/site/hits/up").status_code == 403
        assert http.get("/v1/closed/hits/up").status_code == 404
        cli.run("workspace", "update", "site", "--no-v1")
        time.sleep(REVOKE_WITHIN)
        r = http.get("/v1/site/hits")
        assert r.status_code == 404, r.text
        assert r.json()["code"] == 404
    _assert_fails(cli, "workspace", "update", "nowhere", "--v1", says="no workspace")
