"""Where the machine API's time goes: pyinstrument over 300 in-process requests through the
WSGI application gunicorn serves (sso_admin/wsgi.py), against the database a benchmark left
behind, after 100 to warm up (connections, every instance's state in memory).

- pull: a poll answered 304, as a polling fleet sends them (bench/pull.py's database).
- report: a verification report after a push (bench/reports.py's database): each instance's
  verification is cleared first, so that each report is news, with its event in the history.

Run: python bench/profile_api.py pull|report TOKENS_FILE (the path the benchmark prints)."""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import environment  # noqa: E402

WHAT, TOKENS_FILE = sys.argv[1], Path(sys.argv[2])
DATABASES = {"pull": "sso_bench_pull", "report": "sso_bench_reports"}
os.environ.update(
    environment(DATABASES[WHAT], ALLOWED_HOSTS="testserver,127.0.0.1", LOG_LEVEL="ERROR")
)

import django  # noqa: E402

django.setup()

from django.test import RequestFactory  # noqa: E402
from pyinstrument import Profiler  # noqa: E402

from bench.reports import report_body, unverify  # noqa: E402
from console.models import Instance  # noqa: E402
from console.pull_state import pull_states  # noqa: E402
from sso_admin.wsgi import application  # noqa: E402

instances = [line.split() for line in TOKENS_FILE.read_text().splitlines()][:400]
factory = RequestFactory()


def poll(pk, token, etag):
    return factory.get(
        f"/api/v1/instances/{pk}/config", HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_IF_NONE_MATCH=etag,
    )  # fmt: skip


def report(pk, token, *_):
    return factory.post(
        f"/api/v1/instances/{pk}/applied", BODY, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip


def status(request):
    """The request's HTTP status, answered by the WSGI application."""
    statuses = []
    b"".join(application(request.environ, lambda status, headers: statuses.append(status)))
    return int(statuses[0].split()[0])


if WHAT == "report":
    chosen = Instance.objects.filter(pk__in=[int(entry[0]) for entry in instances])
    BODY = report_body(chosen.first().applied_version_number)
    unverify(chosen)
request_for, expected = (poll, 304) if WHAT == "pull" else (report, 200)
status(request_for(*instances[0]))  # starts the subscription to invalidations
while not pull_states.trusted:
    time.sleep(0.05)
for entry in instances[:100]:
    status(request_for(*entry))
measured = instances[100:]
profiler = Profiler()
profiler.start()
started = time.perf_counter()
for entry in measured:
    assert status(request_for(*entry)) == expected
elapsed = time.perf_counter() - started
profiler.stop()
print(f"{elapsed / len(measured) * 1000:.2f} ms per {WHAT}")
print(profiler.output_text(unicode=False, color=False))
