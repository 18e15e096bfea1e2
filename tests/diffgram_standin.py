"""A stand-in Diffgram for verified rollouts: an HTTP server on 127.0.0.1 that reads the .env
file the agent writes, on every request as a restarted Diffgram would, and answers
`GET /api/configs/is-oauth2-set` as Diffgram 56f04d8 does (docs/DIFFGRAM.md): use_oauth2 from
USE_OAUTH2 and, when OAUTH2_PROVIDER_HOST and OAUTH2_PROVIDER_CLIENT_ID are set (Diffgram's
defaults count), the login URL of its Cognito or Keycloak client (tests/diffgram_contract.py).

Stopping it leaves its port closed: a Diffgram that does not come back after a restart."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dotenv import dotenv_values

from agent.diffgram_sso_agent import send_json
from tests.diffgram_contract import CognitoClient, DiffgramSettings, KeycloakClient

DEFAULT_URL_BASE = "http://localhost:8085/"  # Diffgram's own default


def is_oauth2_set(env):
    """Diffgram's answer for the environment `env` (a dict of its variables)."""
    settings = DiffgramSettings(env, env.get("URL_BASE", DEFAULT_URL_BASE))
    if not settings.use_oauth2:
        return {"use_oauth2": False}
    if not (settings.host and settings.client_id):
        return {"use_oauth2": False}
    if settings.provider_name == "cognito":
        login_url = CognitoClient(settings).login_url()
    elif settings.provider_name == "keycloak":
        login_url = KeycloakClient(settings, client_secret_from_admin_api="").login_url()
    else:
        raise ValueError(f"Diffgram has no client for {settings.provider_name!r}")
    return {"use_oauth2": True, "login_url": login_url}


IS_OAUTH2_SET = "api/configs/is-oauth2-set"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a fleet's probes arrive together (Python's default is 5)


class StandInDiffgram:
    """One Diffgram instance; `url_base` is where it answers (put it in the .env as URL_BASE).

    With `fleet_folder`, one server plays many instances (bench/verify_rollout.py): the one
    named N answers at `url_base_of(N)` from `fleet_folder/N/.env`."""

    def __init__(self, env_file=None, *, fleet_folder=None):
        self.env_file, self.fleet_folder = env_file, fleet_folder
        self.requests = 0
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                standin.requests += 1
                prefix, found, _ = self.path.split("?")[0].partition("/" + IS_OAUTH2_SET)
                env_file = standin.env_file_of(prefix.strip("/"))
                if not found or env_file is None:
                    return self._answer(404, {"error": "not found"})
                env = dotenv_values(env_file) if env_file.exists() else {}
                return self._answer(200, is_oauth2_set({k: v or "" for k, v in env.items()}))

            def _answer(self, status, document):
                send_json(self, status, document)

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.url_base = f"http://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def env_file_of(self, name):
        if self.fleet_folder is None:
            return self.env_file if name == "" else None
        return self.fleet_folder / name / ".env" if name.isidentifier() else None

    def url_base_of(self, name):
        return f"{self.url_base}{name}/"

    def write_own_settings(self):
        """What the operator's .env holds before the agent ever runs: Diffgram's URL_BASE."""
        self.env_file.write_text(f"URL_BASE={self.url_base}\n")

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
