"""gunicorn's settings for the console; gunicorn reads this file from the working directory.

Metrics: every worker writes its counters to one shared folder, so that /metrics answered by any
worker reports all of them (prometheus-client's multi-process mode, console/metrics.py). The
folder is PROMETHEUS_MULTIPROC_DIR, or one made for this gunicorn; its counter files (*.db) are
removed at start-up
and a worker's files are merged when it exits.

Logs: with LOG_FORMAT=json, gunicorn's own lines are JSON objects too (as the console's are,
sso_admin/settings.py), so every line of the process parses.
"""

import glob
import os
import tempfile

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set before anything imports prometheus_client, here or in the workers forked from this
    # process: it chooses at import whether metrics are counted in the shared folder.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="diffgram-sso-metrics-")

from prometheus_client import multiprocess  # noqa: E402 - after the folder is set, see above


def on_starting(server):
    folder = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(folder, exist_ok=True)
    for stale in glob.glob(os.path.join(folder, "*.db")):  # counters of an earlier run
        os.remove(stale)


def child_exit(server, worker):
    multiprocess.mark_process_dead(worker.pid)


if os.environ.get("LOG_FORMAT") == "json":
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(levelname)s %(name)s %(message)s",
                "rename_fields": {"levelname": "level", "name": "logger"},
                "timestamp": "time",
            }
        },
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json"}},
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
        },
    }
