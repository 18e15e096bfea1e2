"""`make run PORT=…` as a new user runs it: the console on the chosen port with its worker and
beat, the one-time admin password printed below their banners with the URL to open, and each
log line printed once."""

import http.cookiejar
import re
import urllib.parse
import urllib.request

from tests.support import MakeTarget, free_port, subprocess_environment

BANNER_TIMEOUT = 120


def test_make_run_on_a_chosen_port_prints_the_admin_password_last(tmp_path):
    port = free_port()
    environment = {
        key: value
        for key, value in subprocess_environment().items()
        if key not in {"DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "DJANGO_SETTINGS_MODULE"}
    }
    environment["DATABASE_URL"] = f"sqlite:///{tmp_path / 'console.sqlite3'}"
    run = MakeTarget("run", f"PORT={port}", env=environment)
    try:
        run.read_until(r"password: \S+", BANNER_TIMEOUT)
        output = run.output
        url = f"http://127.0.0.1:{port}/"

        banner_at = output.index("A local admin was created.")
        assert f"Open {url} and sign in with" in output[banner_at:]
        for earlier in (
            f"Starting development server at {url}",  # the web banner
            "[tasks]",  # the worker's banner
            "beat: Starting...",  # beat's
        ):
            assert -1 < output.find(earlier) < banner_at, earlier
        password = re.search(r"password: (\S+)", output).group(1)

        # The password signs in, and the new admin is asked to choose their own.
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        login_page = opener.open(url + "login/", timeout=10).read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page).group(1)
        form = {"csrfmiddlewaretoken": token, "username": "admin", "password": password}
        landed = opener.open(
            urllib.request.Request(
                url + "login/",
                data=urllib.parse.urlencode(form).encode(),
                headers={"Referer": url + "login/"},
            ),
            timeout=10,
        )
        assert landed.url == url + "account/password/"
        run.read_until(r'"POST /login/ HTTP/1.1" 302', 10)

        lines = run.lines
        web = [line for line in lines if line.split("|", 1)[0].split()[-1:] == ["web.1"]]
        assert sum("Watching for file changes" in line for line in web) == 1
        assert sum('"GET /login/ HTTP/1.1" 200' in line for line in web) == 1
        assert not [line for line in lines if "No hostname was supplied" in line]
    finally:
        run.interrupt()
