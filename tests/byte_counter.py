"""A byte-counting HTTP proxy in front of the S3 endpoint: what a run really reads from storage.

Every request is forwarded to the endpoint as it came; the body bytes of each GET response are
added up per object key, so a test can say how many times over a recording was read.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit


class ByteCounter:
    """``with ByteCounter(endpoint) as proxy:`` point a client at ``proxy.url``; ``proxy.read(key)``
    is the GET response body bytes served for that object key so far."""

    def __init__(self, upstream: str):
        self.upstream = urlsplit(upstream)
        self.served: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        counter = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(counter.upstream.hostname, counter.upstream.port, timeout=120)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                if self.command == "GET":
                    key = unquote(urlsplit(self.path).path.lstrip("/"))  # "bucket/key", path-style
                    with counter._lock:
                        counter.served[key] += len(data)
                        counter.requests[key] += 1
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                # HEAD: the object's length, as the endpoint said; otherwise the body forwarded.
                length = response.getheader("Content-Length") if self.command == "HEAD" else len(data)
                self.send_header("Content-Length", str(length or 0))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def read(self, key: str) -> int:
        with self._lock:
            return self.served[key]

    def __enter__(self) -> "ByteCounter":
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
