"""A local cluster: N `tally serve` nodes behind Debian's nginx, on loopback.

    python -m tools.cluster up --nodes 2 --port 8100 \\
        --database postgresql://postgres@127.0.0.1:5432/test --redis redis://127.0.0.1:6379/0
    python -m tools.cluster status
    python -m tools.cluster down

State (pids, logs, nginx.conf) lives in `--dir` (default .cache/cluster). The nodes listen
on PORT+1 .. PORT+N and trust the balancer's X-Forwarded-For. `Cluster` is also used by
the benchmark and the tests, with any node command (e.g. the plain-ASGI ceiling app).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tools import apt

NGINX_CONF = """\
worker_processes {workers};
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    upstream nodes {{
{servers}
        keepalive 256;
        keepalive_timeout 5s;  # below the nodes' 10 s request-head timeout
    }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        # Never replay a request on another node after it was sent: one that counts
        # (up, down, reset, ...) could have committed on a node that died before it
        # answered, and would count twice. The client gets a 502 and decides.
        location / {{
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream off;
        }}
        # Reads only (a counter, its stats) may be tried again on another node.
        location ~ ^/v2/[^/]+/[^/]+(/stats)?$ {{
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Request-Id $request_id;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_next_upstream error timeout;
        }}
    }}
}}
"""


def ensure_nginx() -> str:
    """The nginx binary, installed from Debian's packages if missing."""
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if found:
        return found
    if not apt.install("nginx-light", quiet=True):
        raise RuntimeError("apt-get install -y nginx-light failed")
    return shutil.which("nginx") or "/usr/sbin/nginx"


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status < 500:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {timeout} s")
        time.sleep(0.1)


@dataclass
class Cluster:
    """Nodes (any command serving HTTP on the port it is given) behind one nginx."""

    dir: Path
    port: int = 8100
    nodes: int = 2
    health_path: str = "/healthz"
    nginx_workers: int = 1
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def node_port(self, i: int) -> int:
        return self.port + 1 + i

    def start_nodes(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        """Start `command + ["--port", P]` for each node (or {port} in command replaced)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        for i in range(self.nodes):
            port = str(self.node_port(i))
            argv = [a.replace("{port}", port) for a in command]
            if not any("{port}" in a for a in command):
                argv += ["--port", port]
            with open(self.dir / f"node{i}.log", "wb") as log:  # the child keeps its copy
                proc = subprocess.Popen(
                    argv,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **(env or {})},
                    start_new_session=True,
                )
            self.procs.append(proc)
            (self.dir / f"node{i}.pid").write_text(str(proc.pid))
        for i in range(self.nodes):
            wait_http(f"http://127.0.0.1:{self.node_port(i)}{self.health_path}")

    def start_balancer(self) -> None:
        nginx = ensure_nginx()
        (self.dir / "tmp").mkdir(parents=True, exist_ok=True)
        servers = "\n".join(
            f"        server 127.0.0.1:{self.node_port(i)} max_fails=0;" for i in range(self.nodes)
        )
        conf = self.dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                workers=self.nginx_workers, dir=self.dir.resolve(), servers=servers, port=self.port
            )
        )
        subprocess.run(
            [nginx, "-p", str(self.dir.resolve()), "-c", str(conf.resolve())], check=True
        )
        wait_http(f"http://127.0.0.1:{self.port}{self.health_path}")

    def stop(self) -> None:
        """Stop nginx and the nodes (SIGTERM: nodes commit what they hold), then reap."""
        stop_dir(self.dir)
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def _signal_pidfile(path: Path, sig: signal.Signals) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, sig)
    except (OSError, ValueError):
        return None
    return pid


def _alive(pid: int) -> bool:
    """Whether `pid` still runs; reaps it if it is our own child that exited (a zombie
    still answers kill(pid, 0))."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: its parent reaps it
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def stop_dir(dir: Path, timeout: float = 15.0) -> None:
    """Stop whatever a cluster in `dir` started (also from another process)."""
    _signal_pidfile(dir / "nginx.pid", signal.SIGQUIT)
    pids = [p for f in sorted(dir.glob("node*.pid")) if (p := _signal_pidfile(f, signal.SIGTERM))]
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            continue
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for f in dir.glob("node*.pid"):
        f.unlink()


def tally_command(database: str, redis: str | None, durability: str) -> list[str]:
    tally = str(Path(sys.executable).parent / "tally")
    cmd = [tally, "serve", "--no-bootstrap", "--database", database, "--durability", durability]
    return cmd + (["--redis", redis] if redis else [])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tools.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["up", "down", "status"])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--durability", default="commit", choices=["commit", "buffered"])
    parser.add_argument("--dir", type=Path, default=Path(".cache/cluster"))
    args = parser.parse_args(argv)
    if args.action == "down":
        stop_dir(args.dir)
        print("stopped")
        return
    if args.action == "status":
        for f in sorted(args.dir.glob("*.pid")):
            pid = f.read_text().strip()
            alive = Path(f"/proc/{pid}").exists()
            print(f"{f.stem}\tpid {pid}\t{'running' if alive else 'gone'}")
        return
    cluster = Cluster(args.dir, port=args.port, nodes=args.nodes)
    env = {"TALLY_TRUSTED_PROXIES": "127.0.0.1"}
    try:
        cluster.start_nodes(tally_command(args.database, args.redis, args.durability), env)
        cluster.start_balancer()
    except BaseException:
        cluster.stop()
        raise
    print(f"{args.nodes} nodes behind nginx at http://127.0.0.1:{args.port} (logs in {args.dir})")


if __name__ == "__main__":
    main()
