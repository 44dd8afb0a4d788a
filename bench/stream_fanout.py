"""Live-stream fan-out: N streams on one counter, ups at a steady rate, and what arrives.

    .venv/bin/python -m bench.stream_fanout [--streams 1000] [--rate 20] [--seconds 5]
        [--postgres URL --redis URL]   # two nodes: streams on node A, ups on node B

Prints the events delivered per second (all streams together), the latency from an up's
answer to the event carrying its value (p50, p99, max over all streams), and the events
per stream per second (at most 10 by design).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson

HOST = "127.0.0.1"
TALLY = Path(sys.executable).parent / "tally"
EVENT = re.compile(rb"data: (\{[^\n]*\})\n\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start(database: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [str(TALLY), "serve", "--port", str(port), "--database", database, "--no-bootstrap"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return proc, port
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("tally serve did not start")


class Stream:
    def __init__(self) -> None:
        self.events: list[tuple[float, int]] = []  # (arrival, up_count)

    async def run(self, port: int, ready: asyncio.Event, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(f"GET /v2/ws/c/stream HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        await reader.readuntil(b"\r\n\r\n")
        buffer = b""
        first = True
        while not stop.is_set():
            try:
                chunk = await asyncio.wait_for(reader.read(65536), 0.5)
            except TimeoutError:
                continue
            if not chunk:
                break
            buffer += chunk
            now = time.monotonic()
            while (m := EVENT.search(buffer)) is not None:
                buffer = buffer[m.end() :]
                if first:
                    first = False
                    ready.set()
                else:
                    self.events.append((now, orjson.loads(m.group(1))["up_count"]))
        writer.transport.abort()


async def ups(port: int, rate: float, seconds: float) -> dict[int, float]:
    """Ups at `rate` a second on one keep-alive connection: up_count -> answer time."""
    reader, writer = await asyncio.open_connection(HOST, port)
    answered: dict[int, float] = {}
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < seconds:
        writer.write(f"GET /v2/ws/c/up HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"content-length: (\d+)", head, re.I).group(1))  # type: ignore[union-attr]
        body = orjson.loads(await reader.readexactly(length))
        answered[body["data"]["up_count"]] = time.monotonic()
        n += 1
        await asyncio.sleep(max(0.0, started + n / rate - time.monotonic()))
    writer.close()
    return answered


async def measure(stream_port: int, up_port: int, n: int, rate: float, seconds: float) -> None:
    stop = asyncio.Event()
    streams = [Stream() for _ in range(n)]
    readies = [asyncio.Event() for _ in range(n)]
    tasks = []
    for i in range(0, n, 100):
        tasks += [
            asyncio.create_task(s.run(stream_port, r, stop))
            for s, r in zip(streams[i : i + 100], readies[i : i + 100], strict=True)
        ]
        await asyncio.gather(*(r.wait() for r in readies[i : i + 100]))
    await asyncio.sleep(1)
    answered = await ups(up_port, rate, seconds)
    await asyncio.sleep(2)
    stop.set()
    await asyncio.gather(*tasks)
    latencies = [
        at - answered[count] for s in streams for at, count in s.events if count in answered
    ]
    events = sum(len(s.events) for s in streams)
    window = seconds + 2
    final = max(answered)
    complete = sum(1 for s in streams if s.events and s.events[-1][1] == final)
    latencies.sort()
    print(f"streams: {n}, ups: {len(answered)} at {rate:g}/s for {seconds:g} s")
    print(f"events delivered: {events} ({events / window:.0f}/s over {window:g} s)")
    print(f"events per stream per second: {events / n / seconds:.1f}")
    print(f"streams that saw the final value: {complete} of {n}")
    if latencies:
        p = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000  # noqa: E731
        print(
            f"latency up answered -> event: p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
            f"max {latencies[-1] * 1000:.1f} ms, mean {statistics.mean(latencies) * 1000:.1f} ms"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--postgres")
    parser.add_argument("--redis")
    args = parser.parse_args()
    env = {
        "TALLY_RATE_LIMIT": "off",
        "TALLY_STREAMS_PER_CLIENT": str(args.streams),
        "TALLY_STREAMS_PER_NODE": str(args.streams),
    }
    procs = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.postgres:
            schema = f"fanout_{uuid.uuid4().hex[:8]}"
            database = f"{args.postgres}?schema={schema}"
            env.update(TALLY_REDIS_URL=args.redis, TALLY_REDIS_PREFIX=f"{schema}:")
        else:
            database = f"sqlite:///{tmp}/fanout.db"
        subprocess.run(
            [str(TALLY), "workspace", "create", "ws", "--database", database], check=True
        )
        subprocess.run(
            [str(TALLY), "counter", "create", "ws/c", "--database", database], check=True
        )
        try:
            a, port_a = start(database, env)
            procs.append(a)
            port_b = port_a
            if args.postgres:
                b, port_b = start(database, env)
                procs.append(b)
            asyncio.run(measure(port_a, port_b, args.streams, args.rate, args.seconds))
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)


if __name__ == "__main__":
    main()
