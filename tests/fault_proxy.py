"""An HTTP proxy in front of an emulator that can make some of its calls unreachable.

While ``down`` is set, a request whose path matches ``fails`` gets its connection closed
without an answer: what a client sees when the service stops answering mid-call (requests
raises ConnectionError, the Google libraries retry it, then give up with RetryError).
Other requests are forwarded as they are. Tests use it to make Cloud Storage unreachable for
a while *after* a run's preflight check (bucket lookups pass, object calls fail), so that the
failure lands in the deliver task and its retry is what must deliver.
"""

from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

# hop-by-hop and length headers are the proxy's own business
_SKIP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
    "host",
    "date",
    "server",
}
# Cloud Storage JSON API calls on objects: metadata, uploads, downloads (not bucket lookups)
GCS_OBJECT_CALLS = re.compile(r"/b/[^/?]+/o(/|\?|$)")


class FaultProxy:
    """A threaded HTTP proxy to ``upstream`` on a free loopback port (``url``)."""

    def __init__(self, upstream: str, fails: re.Pattern[str] = GCS_OBJECT_CALLS) -> None:
        self.upstream = upstream.rstrip("/")
        self.fails = fails
        self.down = False
        self.dropped = 0  # requests left without an answer while down
        self.forwarded = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.down and proxy.fails.search(self.path):
                    proxy.dropped += 1
                    self.close_connection = True  # no answer: the connection just closes
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _SKIP}
                answer = requests.request(
                    self.command,
                    proxy.upstream + self.path,
                    headers=headers,
                    data=body,
                    stream=True,
                    allow_redirects=False,
                    timeout=60,
                )
                content = answer.raw.read(decode_content=False)
                proxy.forwarded += 1
                self.send_response(answer.status_code)
                for key, value in answer.raw.headers.items():
                    if key.lower() not in _SKIP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()
