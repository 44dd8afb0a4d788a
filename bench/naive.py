"""The naive reference: `up` as a first attempt would build it, for the benchmark only.

A Starlette app (what FastAPI is built on) whose `up` endpoint is a plain synchronous
handler, run in Starlette's thread pool: it opens the SQLite file with the stdlib
defaults (as a `get_db` dependency does), runs one UPDATE of the counter, commits and
answers the new totals. No batching, no cache: one transaction and one fsync per request
(the file is in WAL mode, as Tally left it; `synchronous` is SQLite's default, FULL).
It counts exactly (the benchmark checks it like Tally's totals) and answers in the V2
envelope, so wrk's drain phase finds its mark.

`python -m bench.naive --port N --database PATH` serves it with granian, with the
options `tally serve` uses (as bench.hello does).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

DATABASE_ENV = "BENCH_NAIVE_DATABASE"
_UP = """
UPDATE counters SET up_count = up_count + 1, updated_at = ?
WHERE workspace_id = (SELECT id FROM workspaces WHERE slug = ?) AND name = ?
RETURNING id, up_count, down_count
"""


def up(request: Request) -> JSONResponse:
    workspace = request.path_params["workspace"]
    name = request.path_params["name"]
    conn = sqlite3.connect(os.environ[DATABASE_ENV], timeout=30.0)
    try:
        row = conn.execute(_UP, (time.time(), workspace, name)).fetchone()
        conn.commit()
    finally:
        conn.close()
    if row is None:
        return JSONResponse({"code": "404", "message": "counter not found"}, status_code=404)
    counter_id, up_count, down_count = row
    data = {
        "id": counter_id,
        "name": name,
        "workspace_slug": workspace,
        "up_count": up_count,
        "down_count": down_count,
        "value": up_count - down_count,
    }
    return JSONResponse({"code": "200", "data": data})


def ready(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[Route("/v2/{workspace}/{name}/up", up), Route("/healthz", ready)],
)


def main() -> None:
    from granian import Granian

    from bench.hello import tally_granian_options

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--database", required=True)
    args = parser.parse_args()
    os.environ[DATABASE_ENV] = args.database
    options, _ = tally_granian_options()
    Granian("bench.naive:app", address=args.host, port=args.port, **options).serve()


if __name__ == "__main__":
    main()
