"""A local HTTP server (127.0.0.1 only) that serves one archive, for the download tests."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field


@dataclass
class Server:
    """What the handler serves and what it saw."""

    body: bytes
    mode: str = "range"  # range (honours Range with 206) | full (always 200) | 404 | truncate
    ranges: list[str | None] = field(default_factory=list)
    url: str = ""


def _handler(server: Server) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # name fixed by http.server
            asked = self.headers.get("Range")
            server.ranges.append(asked)
            if server.mode == "404":
                self.send_error(404, "Not Found")
                return
            start = int(asked.removeprefix("bytes=").rstrip("-")) if asked and server.mode == "range" else 0
            payload = server.body[start:]
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(server.body) - 1}/{len(server.body)}")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if server.mode == "truncate":
                payload = payload[: len(payload) // 2]  # then the connection closes
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:  # signature of the base class
            pass

    return Handler


@contextlib.contextmanager
def serve(body: bytes, name: str) -> Iterator[Server]:
    """Serve ``body`` at ``http://127.0.0.1:PORT/NAME`` until the block ends."""
    state = Server(body=body)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/{name}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)
