"""``GET /metrics``: the dispatcher's state and counters in the Prometheus text format.

Nothing is counted here: at each scrape :class:`DispatcherCollector` reads what the hubs count
(:mod:`dispatcher.stats`), what they hold (open incidents, alarms, armed deadlines, boards), the MQTT
gateway's counters and outbox, and the webhook subscriptions' cursors and failures, and writes them out
with ``prometheus_client``. So a scrape costs the scraper, not the intake. The process's own CPU,
memory and file descriptors come from ``prometheus_client``'s process collector.

Every series of a township carries ``township``; docs/operations.md says what each one means and what
to alert on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from dispatcher.stats import Histogram
from dispatcher.tail_feed import TailFeeds
from gateways.context import AppContext, context_of

if TYPE_CHECKING:
    from gateways.webhooks import Deliverer

router = APIRouter()


def _histogram(name: str, documentation: str, township: str, histogram: Histogram) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, documentation, labels=["township"])
    family.add_metric([township], histogram.cumulative(), sum_value=histogram.sum)
    return family


class DispatcherCollector(Collector):
    """Reads the app's parts at each scrape (see the module's docstring)."""

    def __init__(self, context: AppContext) -> None:
        self._context = context

    def collect(self) -> Iterator[Metric]:
        townships = self._context.townships
        events = CounterMetricFamily(
            "dispatcher_events", "Events committed to the log, by type", labels=["township", "type"]
        )
        reports = CounterMetricFamily(
            "dispatcher_reports", "Reports taken, by door and outcome", labels=["township", "channel", "outcome"]
        )
        failures = CounterMetricFamily(
            "dispatcher_writer_failures", "Writer batches not stored, by kind", labels=["township", "kind"]
        )
        applied = CounterMetricFamily(
            "dispatcher_writer_batches_applied",
            "Writer batches by how they were applied: overlapped (beside the commit of the batch before), "
            "after (every earlier batch landed), again (applied beside a batch that then failed, and redone)",
            labels=["township", "how"],
        )
        gauges = {
            name: GaugeMetricFamily(f"dispatcher_{name}", text, labels=["township"])
            for name, text in (
                ("open_incidents", "Incidents open now"),
                ("open_alarms", "Alarms open on the board now"),
                ("armed_deadlines", "Deadline marks held now (one or more per open incident with a deadline pending)"),
                ("feed_subscribers", "Live feed subscribers now: boards, phones, the MQTT outbox, webhook workers"),
                ("last_seq", "The last event's sequence number"),
                ("writer_running", "1 while the hub's writer task runs"),
            )
        }
        histograms: list[Metric] = []
        board_latency = HistogramMetricFamily(
            "dispatcher_board_latency_seconds",
            "From an event's commit to its frame written to a board's socket (one per board), by source: "
            "hub (the township's hub here), tail (a township served by another replica, followed in its log)",
            labels=["township", "source"],
        )
        served = GaugeMetricFamily(
            "dispatcher_lease_held",
            "1 while this process serves the township (replica mode: holds its lease)",
            labels=["township"],
        )
        for township_id, township in townships.items():
            served.add_metric([township_id], 1 if township.serving else 0)
            if not township.serving:
                continue  # another replica serves it and reports it
            hub = township.hub
            stats = hub.stats
            for type_name, count in sorted(stats.events.items()):
                events.add_metric([township_id, type_name], count)
            for (channel, outcome), count in sorted(stats.reports.items()):
                reports.add_metric([township_id, channel, outcome], count)
            for kind, count in sorted(stats.commit_failures.items()):
                failures.add_metric([township_id, kind], count)
            for how, count in sorted(stats.batches_applied.items()):
                applied.add_metric([township_id, how], count)
            values = {
                "open_incidents": len(hub.open_index),
                "open_alarms": len(hub.alarms),
                "armed_deadlines": hub.armed_deadlines,
                "feed_subscribers": hub.feed.subscriber_count,
                "last_seq": hub.last_seq,
                "writer_running": 1 if hub.running else 0,
            }
            for name, value in values.items():
                gauges[name].add_metric([township_id], value)
            histograms += [
                _histogram("dispatcher_writer_batch_size", "Commands per writer commit", township_id, stats.batch_size),
                _histogram(
                    "dispatcher_writer_commit_seconds",
                    "Time of one writer commit (the database transaction)",
                    township_id,
                    stats.commit_seconds,
                ),
            ]
            board_latency.add_metric(
                [township_id, "hub"], stats.board_latency.cumulative(), sum_value=stats.board_latency.sum
            )
        tails = self._context.tail_feeds.tails() if isinstance(self._context.tail_feeds, TailFeeds) else {}
        for township_id, tail in sorted(tails.items()):
            latency = tail.stats.board_latency
            board_latency.add_metric([township_id, "tail"], latency.cumulative(), sum_value=latency.sum)
        histograms.append(board_latency)
        yield served
        yield events
        yield reports
        yield failures
        yield applied
        yield from gauges.values()
        yield from histograms
        yield from self._mqtt()
        yield from self._webhooks()

    def _mqtt(self) -> Iterator[Metric]:
        gateway = self._context.mqtt
        if gateway is None:
            return
        stats: dict[str, Any] = gateway.stats()
        connected = GaugeMetricFamily("dispatcher_mqtt_connected", "1 while connected to the broker")
        connected.add_metric([], 1 if stats["state"] == "connected" else 0)
        received = CounterMetricFamily("dispatcher_mqtt_messages", "MQTT gateway counters", labels=["counter"])
        for name, count in sorted(stats["received"].items()):
            received.add_metric([name], count)
        dead = CounterMetricFamily(
            "dispatcher_mqtt_dead_letters", "Messages refused to the dead-letter topic", labels=["reason"]
        )
        for reason, count in sorted(stats["dead_letters"].items()):
            dead.add_metric([reason], count)
        lag = GaugeMetricFamily("dispatcher_mqtt_outbox_lag", "Events committed but not yet published to the broker")
        lag.add_metric([], stats["outbox"]["lag"])
        yield from (connected, received, dead, lag)

    def _webhooks(self) -> Iterator[Metric]:
        deliverer: Deliverer | None = self._context.webhooks
        if deliverer is None:
            return
        labels = ["township", "subscription"]
        attempts = CounterMetricFamily(
            "dispatcher_webhook_attempts",
            "Webhook deliveries tried since start, by outcome",
            labels=[*labels, "outcome"],
        )
        lag = GaugeMetricFamily("dispatcher_webhook_lag", "Events after the subscription's cursor", labels=labels)
        enabled = GaugeMetricFamily("dispatcher_webhook_enabled", "1 while the subscription is enabled", labels=labels)
        failing = GaugeMetricFamily(
            "dispatcher_webhook_failing_since_seconds",
            "Unix time of the first failure of the current run of failures (absent when healthy)",
            labels=labels,
        )
        for subscription in deliverer.store.all():
            key = [subscription.township, str(subscription.id)]
            township = self._context.townships.get(subscription.township)
            hub = township.hub if township is not None else None
            for outcome in ("ok", "failed"):
                attempts.add_metric([*key, outcome], deliverer.attempt_counts[subscription.id, outcome])
            if hub is not None:
                lag.add_metric(key, max(0, hub.last_seq - subscription.delivered_seq))
            enabled.add_metric(key, 1 if subscription.enabled else 0)
            if subscription.failing_since is not None:
                failing.add_metric(key, subscription.failing_since.timestamp())
        yield from (attempts, lag, enabled, failing)


def build_registry(context: AppContext) -> CollectorRegistry:
    """The registry ``/metrics`` writes: the dispatcher's collector and the process's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DispatcherCollector(context))
    ProcessCollector(registry=registry)
    return registry


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    context = context_of(request)
    registry = context.metrics
    if registry is None:
        registry = context.metrics = build_registry(context)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
