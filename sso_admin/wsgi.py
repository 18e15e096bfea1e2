"""The console's WSGI application (gunicorn serves `sso_admin.wsgi:application`).

A fleet's polls are most of the console's requests (docs/BENCHMARKS.md, P1), and they need
little of the middleware the console's pages do: the machine API's views authenticate a bearer
token (console/api/pull.py), so no session, sign-in, CSRF or role check applies, and their
answers are never HTML. A second Django handler answers those two paths with
MACHINE_API_MIDDLEWARE (sso_admin/settings.py); every other request gets the full stack.
"""

import os
import re

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sso_admin.settings")

console = get_wsgi_application()

from django.conf import settings  # noqa: E402 - once Django is set up
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402

MACHINE_API_PATH = re.compile(r"/api/v1/instances/[0-9]+/(config|applied)")


class MachineApiHandler(WSGIHandler):
    """Django's own handler, built with MACHINE_API_MIDDLEWARE instead of MIDDLEWARE (which
    Django reads once, here, while no request is served)."""

    def load_middleware(self, is_async=False):
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = settings.MACHINE_API_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


machine_api = MachineApiHandler()


def application(environ, start_response):
    handler = machine_api if MACHINE_API_PATH.fullmatch(environ.get("PATH_INFO", "")) else console
    return handler(environ, start_response)
