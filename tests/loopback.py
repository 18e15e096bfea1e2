"""The HTTP server the tests' stand-ins (agents, identity providers, Diffgram, webhooks) serve
on 127.0.0.1 with."""

from http.server import ThreadingHTTPServer


class LoopbackHTTPServer(ThreadingHTTPServer):
    """Threaded, and with an accept queue that holds a fleet's requests arriving together.
    Python's default queue of 5 drops the connections past it under load; the client's SYN is
    then sent again after 1 s and 3 s, and the console's 3-second connect timeout turns that into
    a transient failure left to the outbox sweeper (a test that waits on every push ending then
    waits in vain)."""

    daemon_threads = True
    request_queue_size = 1024
