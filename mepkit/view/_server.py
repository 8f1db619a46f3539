"""The live view's HTTP server: the page and its JSON, from ready-made bytes.

Standard library only (``http.server``). HTTP/1.0, one request per connection, at most
`MAX_CLIENTS` connections at once (more are closed at once), each socket timing out after
`SOCKET_TIMEOUT_S`. Errors are logged (debug) and end only their own connection.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from mepkit.view.live import MAX_CLIENTS, SOCKET_TIMEOUT_S

if TYPE_CHECKING:
    from mepkit.view.live import LiveView

__all__ = ["ViewServer"]

logger = logging.getLogger("mepkit.view")


class _Handler(BaseHTTPRequestHandler):
    timeout = SOCKET_TIMEOUT_S  # set on the socket by StreamRequestHandler.setup
    protocol_version = "HTTP/1.0"
    server_version = "mepkit-view"
    sys_version = ""
    server: "ViewServer"

    def _host_allowed(self) -> bool:
        """On a loopback address, only requests to a loopback name (a web page elsewhere
        that rebinds its own name to 127.0.0.1 cannot read the session: DNS rebinding)."""
        if not self.server.loopback:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[1:].partition("]")[0]
        else:
            name = host.rpartition(":")[0] if ":" in host else host
        return name in ("127.0.0.1", "localhost", "::1") or name.startswith("127.")

    def do_GET(self) -> None:  # noqa: N802 - http.server's spelling
        view = self.server.view
        view.n_requests += 1
        if not self._host_allowed():
            self._send(403, b'{"error":"this page answers to 127.0.0.1 or localhost only"}',
                       "application/json")
            return
        path, _, query = self.path.partition("?")
        if path in ("/", "/index.html"):
            from mepkit.view._page import page_bytes

            self._send(200, page_bytes(), "text/html; charset=utf-8")
        elif path == "/api/state":
            q = parse_qs(query)
            try:
                since = int(q.get("since", ["0"])[0])
                traces_since = int(q.get("traces_since", ["0"])[0])
            except ValueError:
                self._send(400, b'{"error":"since and traces_since must be integers"}',
                           "application/json")
                return
            self._send(200, view.state_json(since, traces_since), "application/json")
        elif path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._send(404, b'{"error":"not found"}', "application/json")

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(200 if self.path.partition("?")[0] in ("/", "/index.html") else 404, b"",
                   "text/html; charset=utf-8")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("live view: %s %s", self.address_string(), format % args)


class ViewServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that serves `LiveView`'s bytes to a bounded number of clients."""

    daemon_threads = True
    block_on_close = False  # stop() does not wait for a client that hangs
    request_queue_size = 32

    def __init__(self, address: tuple[str, int], view: "LiveView") -> None:
        import socket

        self.view = view
        self.loopback = address[0] in ("127.0.0.1", "localhost", "::1") or \
            address[0].startswith("127.")
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.view.n_refused += 1
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        self.view.n_client_errors += 1
        exc = sys.exc_info()[1]
        logger.debug("live view: client %s: %s: %s", client_address, type(exc).__name__, exc)
