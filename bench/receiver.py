"""A webhook receiver for bench/push_fanout.py: answers 200 to every POST and appends the path
(the instance) to a file, so lost and duplicated deliveries can be counted."""

import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, log_path = int(sys.argv[1]), sys.argv[2]
lock = threading.Lock()
log = open(log_path, "a", buffering=1)  # noqa: SIM115 - open for the server's life


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self):
        super().setup()
        # Headers and body go out in two writes; without this, Nagle's algorithm and delayed
        # ACKs add 40 ms to every answer on a kept-alive connection.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with lock:
            log.write(self.path + "\n")
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: with tens of pushes connecting at once the
    # kernel resets the rest, a limit of this stand-in, not of the 1,000 agents it plays.
    request_queue_size = 1024


server = Server(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever()
