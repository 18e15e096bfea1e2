"""Settings for the benchmarks: the console's own, plus a trivial view as the baseline."""

from sso_admin.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
