"""Real receivers for alerts: an SMTP server (aiosmtpd) and an HTTP server taking JSON POSTs,
both on 127.0.0.1, keeping what they received."""

import json
import threading
from email import message_from_bytes
from email.policy import default as default_policy
from http.server import BaseHTTPRequestHandler

from aiosmtpd.controller import Controller

from tests.loopback import LoopbackHTTPServer
from tests.support import free_port


class SmtpServer:
    """aiosmtpd's controller in a thread; `messages` are the received email.message objects."""

    def __init__(self):
        self.messages = []
        server = self

        class Handler:
            async def handle_DATA(self, smtp_server, session, envelope):  # noqa: N802 - aiosmtpd
                message = message_from_bytes(envelope.content, policy=default_policy)
                message["X-Rcpt-To"] = ", ".join(envelope.rcpt_tos)
                server.messages.append(message)
                return "250 Message accepted for delivery"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=free_port())
        self.controller.start()
        self.url = f"smtp://127.0.0.1:{self.controller.port}"

    def stop(self):
        self.controller.stop()


class HookReceiver:
    """Answers each POST with the next status in `statuses` (then 200) and keeps
    (headers, body) of every one, and its path. `posted` is released as each POST arrives; a
    test clears `answering` to hold the answers back (a busy receiver), sets it to let them go."""

    def __init__(self):
        self.received, self.statuses, self.paths, self.gets = [], [], [], {}
        self.lock = threading.Lock()
        self.posted = threading.Semaphore(0)
        self.answering = threading.Event()
        self.answering.set()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the stdlib's name
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append((dict(self.headers), body))
                    receiver.paths.append(self.path)
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                receiver.posted.release()
                receiver.answering.wait(timeout=60)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def do_GET(self):  # noqa: N802 - the stdlib's name
                body, headers = receiver.gets.get(self.path, (b"", {}))
                self.send_response(200 if self.path in receiver.gets else 404)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve_get(self, path, body, headers):
        """Answer GET `path` with 200, `body` and `headers` (every other GET: 404)."""
        self.gets[path] = (body.encode(), headers)

    def payloads(self):
        return [json.loads(body) for _, body in self.received]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
