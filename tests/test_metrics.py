"""``/metrics`` in process: every family is there (MQTT and webhooks included), and the deploy files
(Grafana dashboard, Prometheus alert rules) name only metrics the dispatcher exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client.parser import text_string_to_metric_families

from dispatcher.settings import Settings
from server.app import create_app
from tests.conftest import HubRig, api_client
from tests.test_hub import five_way

_OURS = re.compile(r"\b((?:dispatcher|process)_[a-z_]+)")
_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")


def _family(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


async def _scrape(crew: HubRig) -> set[str]:
    # An MQTT URL makes the gateway (not started here: its counters and outbox lag exist all the same).
    app = create_app(Settings(database_url=crew.url, mqtt_url="mqtt://127.0.0.1:9"), hub=crew.hub)
    try:
        async with api_client(app) as http:
            made = await http.post(
                "/api/v1/webhooks", json={"url": "http://127.0.0.1:9/hook", "event_types": ["IncidentReported"]}
            )
            assert made.status_code == 201, made.text
            await crew.hub.report(five_way(), crew.clock.now())
            answer = await http.get("/metrics", headers={"Authorization": ""})
            assert answer.status_code == 200, answer.text
    finally:
        await app.state.context.webhooks.store.close()
        await app.state.context.directory.close()
    return {family.name for family in text_string_to_metric_families(answer.text)}


async def test_the_deploy_files_name_only_exported_metrics(crew: HubRig, repo_root: Path) -> None:
    exported = await _scrape(crew)
    assert {
        "dispatcher_events",
        "dispatcher_reports",
        "dispatcher_writer_commit_seconds",
        "dispatcher_board_latency_seconds",
        "dispatcher_open_incidents",
        "dispatcher_mqtt_outbox_lag",
        "dispatcher_webhook_lag",
        "process_resident_memory_bytes",
    } <= exported
    dashboard = json.loads((repo_root / "deploy/grafana/dashboards/dispatcher.json").read_text(encoding="utf-8"))
    expressions = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    rules = yaml.safe_load((repo_root / "deploy/prometheus/alerts.yml").read_text(encoding="utf-8"))
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    named = {_family(name) for expression in expressions for name in _OURS.findall(expression)}
    assert len(named) >= 10
    assert sorted(named - exported) == []
