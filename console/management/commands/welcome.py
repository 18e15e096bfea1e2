import signal
import time
import urllib.error
import urllib.request

from django.core.management.base import BaseCommand, CommandError

from console import users
from console.management.commands.bootstrap_admin import first_admin_banner

# The worker and beat start with the web server; their banners take a moment longer to print.
BANNERS_SETTLE_SECONDS = 3


class Command(BaseCommand):
    help = (
        "For `make run`: wait until the console answers on PORT, then create the bootstrap "
        "admin on an empty database and print where to sign in, below the web, worker and beat "
        "banners so that it does not scroll away. Then wait: honcho stops every process as "
        "soon as one exits."
    )

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--timeout", type=float, default=120, help="seconds to wait")

    def handle(self, *args, port, timeout, **options):
        url = f"http://127.0.0.1:{port}/"
        self._wait_for(url + "healthz", timeout)
        time.sleep(BANNERS_SETTLE_SECONDS)
        password = users.create_bootstrap_admin()
        if password:
            self.stdout.write(self.style.WARNING(first_admin_banner(password, url)))
        else:
            self.stdout.write(self.style.SUCCESS(f"\nThe console is ready: open {url}\n"))
        self.stdout.flush()
        signal.pause()

    def _wait_for(self, url, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - our own server
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise CommandError(f"The console did not answer at {url} within {timeout:.0f} s.")
