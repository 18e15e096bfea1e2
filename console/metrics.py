"""Prometheus metrics, served at GET /metrics (console/views/site.py) with METRICS_TOKEN.

Two kinds. What each web process counts itself (pull answers by status, request latency) uses
prometheus-client's multi-process mode under gunicorn (gunicorn.conf.py gives the workers a
shared PROMETHEUS_MULTIPROC_DIR), so a scrape answered by any worker reports all of them. What
the database knows (the fleet, pushes, providers, the audit chain) and the broker's queue are
read at scrape time, so they are exact whichever process, host or worker count answers.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter as Tally
from functools import wraps

from django.db.models import Count, Q, Sum
from django.utils import timezone
from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
)

from console import broker, instances
from console.models import AuditChainHead, Instance, Provider, PushRequest

logger = logging.getLogger(__name__)
PREFIX = "diffgram_sso"
SIGNIN_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

PULLS = Counter(f"{PREFIX}_pulls", "Pull API answers to instances, by HTTP status.", ["status"])
PULL_STATE_ENTRIES = Gauge(
    f"{PREFIX}_pull_state_entries",
    "Instances the web processes answer from memory (console/pull_state.py), summed over the "
    "live processes of this host: the fleet size times the process count once every process "
    "has seen every instance.",
    multiprocess_mode="livesum",
)
_noted_size = -1


def note_pull_state_size(size: int) -> None:
    """Set PULL_STATE_ENTRIES when it changed: a poll answered from memory (most of them)
    writes nothing to the shared metrics files."""
    global _noted_size
    if size != _noted_size:
        PULL_STATE_ENTRIES.set(size)
        _noted_size = size


REQUEST_SECONDS = Histogram(
    f"{PREFIX}_request_duration_seconds",
    "Time to answer an HTTP request, by the URL pattern's name.",
    ["view"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)


def counted_pulls(view):
    """Count every answer of the pull API by status, refusals included."""

    @wraps(view)
    def counted(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        _child(PULLS, response.status_code).inc()
        return response

    return counted


_children: dict[tuple[int, object], object] = {}


def _child(metric, label):
    """metric.labels(label), kept: labels() takes a lock and builds its key on every call,
    which the pull API (thousands of polls a second) should not pay for."""
    key = (id(metric), label)
    child = _children.get(key)
    if child is None:
        child = _children.setdefault(key, metric.labels(str(label)))
    return child


class RequestTimer:
    """Middleware: the latency of every request, labelled by its URL pattern's name (a bounded
    set; unmatched paths share one label)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = (match.url_name if match else "") or "unmatched"
        _child(REQUEST_SECONDS, view).observe(time.perf_counter() - started)
        return response


class DatabaseCollector:
    """The fleet, pushes, providers and audit chain as the database has them now."""

    def collect(self):
        yield self._instances()
        yield from self._signins()
        yield from self._pushes()
        yield from self._providers()
        head = AuditChainHead.objects.filter(pk=1).values_list("last_id", flat=True).first()
        yield CounterMetricFamily(
            f"{PREFIX}_audit_events", "Audit events written (the chain's length).", head or 0
        )
        queue = broker.queue_length()
        if queue is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_celery_queue_length",
                "Tasks waiting in the console's Celery queue.",
                value=queue,
            )

    def _instances(self):
        states = instances.fleet_counts()  # one aggregate query
        family = GaugeMetricFamily(
            f"{PREFIX}_instances",
            "Diffgram instances by state, each in its worst: failing, drifting, blocked (by a "
            "known Diffgram defect), not_verified (not signed in), in_sync, unassigned.",
            labels=["state"],
        )
        for state in instances.HEALTH_STATES:
            family.add_metric([state], states[state])
        return family

    def _signins(self):
        """The newest synthetic sign-in of each instance that has one: up or down, and the
        distribution of how long they took (a gauge histogram: the newest per instance)."""
        up = GaugeMetricFamily(
            f"{PREFIX}_signin_up",
            "1 when the newest synthetic sign-in to the instance's Diffgram passed, 0 when it "
            "failed (instances never signed in to are absent).",
            labels=["instance"],
        )
        signed = Instance.objects.filter(last_signin_ok__isnull=False)
        for name, ok in signed.values_list("name", "last_signin_ok").iterator():
            up.add_metric([name], 1 if ok else 0)
        yield up
        counts = signed.aggregate(
            total=Sum("last_signin_seconds"),
            **{
                f"le_{index}": Count("pk", filter=Q(last_signin_seconds__lte=bound))
                for index, bound in enumerate(SIGNIN_BUCKETS)
            },
            all=Count("pk"),
        )
        buckets = [(str(bound), counts[f"le_{i}"]) for i, bound in enumerate(SIGNIN_BUCKETS)]
        yield GaugeHistogramMetricFamily(
            f"{PREFIX}_signin_duration_seconds",
            "How long the newest synthetic sign-in of each instance took.",
            buckets=[*buckets, ("+Inf", counts["all"])],
            gsum_value=counts["total"] or 0.0,
        )

    def _pushes(self):
        counts = dict(PushRequest.objects.order_by().values_list("state").annotate(Count("pk")))
        done = CounterMetricFamily(
            f"{PREFIX}_pushes", "Pushes finished, by outcome.", labels=["outcome"]
        )
        for outcome in (PushRequest.State.SUCCEEDED, PushRequest.State.FAILED):
            done.add_metric([outcome], counts.get(outcome, 0))
        yield done
        yield GaugeMetricFamily(
            f"{PREFIX}_pushes_pending",
            "Pushes not finished yet (being sent or waiting to be retried).",
            value=counts.get(PushRequest.State.PENDING, 0),
        )

    def _providers(self):
        outcomes = GaugeMetricFamily(
            f"{PREFIX}_providers",
            "Enabled identity providers by their latest validation: passed, failed, not_validated.",
            labels=["outcome"],
        )
        ages = GaugeMetricFamily(
            f"{PREFIX}_provider_last_passed_age_seconds",
            "Seconds since each enabled provider last passed validation (absent if never).",
            labels=["provider"],
        )
        tally = Tally()
        now = timezone.now()
        for name, passed, last_passed in Provider.objects.filter(enabled=True).values_list(
            "name", "validation_passed", "last_passed_at"
        ):
            tally[{True: "passed", False: "failed", None: "not_validated"}[passed]] += 1
            if last_passed is not None:
                ages.add_metric([name], (now - last_passed).total_seconds())
        for outcome in ("passed", "failed", "not_validated"):
            outcomes.add_metric([outcome], tally.get(outcome, 0))
        return outcomes, ages


def scrape() -> bytes:
    """The text exposition format: this host's processes plus what the database knows."""
    database = CollectorRegistry(auto_describe=False)
    database.register(DatabaseCollector())
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes)
    else:  # one process (make run): its own registry
        processes = REGISTRY
    return generate_latest(processes) + generate_latest(database)
