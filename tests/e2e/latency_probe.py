"""An API client for the abuse tests, in a process of its own (so the test's own load
does not slow it): GETs `path` one after another on one keep-alive connection for
`seconds`, and prints a JSON list of [wall-clock start, seconds taken, status].

    python latency_probe.py PORT PATH TOKEN SECONDS
"""

from __future__ import annotations

import http.client
import json
import sys
import time


def main() -> None:
    port, path, token, seconds = int(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    samples = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        wall, t0 = time.time(), time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        samples.append([wall, time.perf_counter() - t0, response.status])
    conn.close()
    print(json.dumps(samples))


if __name__ == "__main__":
    main()
