"""`--config` / TALLY_CONFIG with real processes: the file configures `tally serve` and
the admin commands, flags and variables win over it, and a bad value stops the start."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx

from .server import TALLY, TallyCli, TallyServer, clean_env, sqlite_url


def test_serve_reads_the_file_and_flags_win(tmp_path: Path) -> None:
    """The file's rate limit and database apply; its durability loses to the flag
    TallyServer passes; the admin CLI finds the file's database through TALLY_CONFIG."""
    db = sqlite_url(tmp_path / "from-file.db")
    config = tmp_path / "tally.toml"
    config.write_text(f'database_url = "{db}"\nrate_limit = "42/minute"\nbootstrap = false\n')
    env = {"TALLY_CONFIG": str(config)}
    out = subprocess.run(
        [str(TALLY), "workspace", "create", "ws"],
        capture_output=True,
        text=True,
        env=clean_env(env),
        timeout=30,
        check=True,
    )
    assert "created workspace ws" in out.stdout
    assert (tmp_path / "from-file.db").exists()
    server = TallyServer(tmp_path, database_url=db, args=["--config", str(config)])
    server.start()
    try:
        with httpx.Client(base_url=server.base_url, trust_env=False) as client:
            r = client.get("/v2/ws/c")
            assert r.status_code == 404
            assert r.headers["x-ratelimit-limit"] == "42"
        assert "tly_" not in server.stdout()  # bootstrap = false
    finally:
        server.close()
    cli = TallyCli(db)
    assert "ws" in cli.run("workspace", "list").stdout


def test_bad_value_stops_the_start_naming_it(tmp_path: Path) -> None:
    """`tally serve --config` with a bad value exits non-zero, naming file and key."""
    config = tmp_path / "tally.toml"
    config.write_text('durability = "sometimes"\n')
    out = subprocess.run(
        [str(TALLY), "serve", "--config", str(config), "--port", "0"],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=30,
        check=False,
    )
    assert out.returncode == 2, out
    assert "durability" in out.stderr
    assert str(config) in out.stderr
    assert "Traceback" not in out.stderr
