"""Where a pull's time goes: pyinstrument over 300 in-process pulls (304 path, every instance's
state in memory) through the WSGI application gunicorn serves (sso_admin/wsgi.py), against the
database bench/pull.py left behind.
Run: python bench/profile_pull.py TOKENS_FILE (the path bench/pull.py prints)."""

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import environment  # noqa: E402

os.environ.update(
    environment("sso_bench_pull", ALLOWED_HOSTS="testserver,127.0.0.1", LOG_LEVEL="ERROR")
)

import django  # noqa: E402

django.setup()

from django.test import RequestFactory  # noqa: E402
from pyinstrument import Profiler  # noqa: E402

from sso_admin.wsgi import application  # noqa: E402

instances = [line.split() for line in Path(sys.argv[1]).read_text().splitlines()][:300]
factory = RequestFactory()


def pull(pk, token, etag):
    """The poll's HTTP status."""
    request = factory.get(
        f"/api/v1/instances/{pk}/config",
        HTTP_AUTHORIZATION=f"Bearer {token}",
        HTTP_IF_NONE_MATCH=etag,
    )
    statuses = []
    b"".join(application(request.environ, lambda status, headers: statuses.append(status)))
    return int(statuses[0].split()[0])


from console.pull_state import pull_states  # noqa: E402

pull(*instances[0])  # starts the subscription to invalidations
while not pull_states.trusted:
    time.sleep(0.05)
for entry in instances:
    pull(*entry)  # warm: connections, every instance's state in memory, as in a polling fleet
profiler = Profiler()
profiler.start()
started = time.perf_counter()
for entry in instances:
    assert pull(*entry) == 304
elapsed = time.perf_counter() - started
profiler.stop()
print(f"{elapsed / len(instances) * 1000:.2f} ms per pull")
print(profiler.output_text(unicode=False, color=False))
