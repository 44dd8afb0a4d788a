"""A real `tally serve` process: the metrics listener, the probes, the API page."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import ServerFactory
from .server import TallyCli, free_port


def test_metrics_listener_probes_and_docs(make_server: ServerFactory, cli: TallyCli) -> None:
    """TALLY_METRICS_ADDRESS serves /metrics on its own port (not on the API's), the
    probes answer, and /docs loads its script from the server itself."""
    cli.workspace("ws")
    token = cli.token("ws", "write")
    metrics_port = free_port()
    server = make_server(
        args=["--no-bootstrap"], env={"TALLY_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}"}
    )
    with httpx.Client(base_url=server.base_url, trust_env=False, timeout=10) as api:
        for _ in range(3):
            assert api.get("/v2/ws/c/up", headers={"Authorization": f"Bearer {token}"}).is_success
        assert api.get("/metrics").status_code == 404
        assert api.get("/readyz").json()["status"] == "ready"
        page = api.get("/docs")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert api.get("/docs/redoc.standalone.js").status_code == 200
        assert api.get("/openapi.json").json()["openapi"] == "3.1.0"
    scrape = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", trust_env=False, timeout=10)
    assert scrape.status_code == 200
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
    }
    up = (("route", "/v2/{workspace}/{name}/up"), ("status", "200"))
    assert samples[("tally_http_requests_total", up)] == 3
    assert samples[("tally_batch_requests_sum", ())] == 3
    assert samples[("tally_pending_changes", ())] == 0
